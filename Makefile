# Quick start: `make demo` (grade the example submissions), `make test` (the whole suite).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# nbgrader calls `alembic` from PATH: the venv's bin/ must come first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
ASSIGNMENTS := $(notdir $(wildcard source/*))

.PHONY: install release demo test lab lessons bench student clean

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# `.venv/bin/python -m autograder` works from any folder: the venv finds this repository's package.
$(VENV)/.on-path: $(VENV)/.installed
	$(PY) -c 'import pathlib, sys, sysconfig; pathlib.Path(sysconfig.get_path("purelib"), "autograder_course.pth").write_text(sys.argv[1] + "\n")' "$(CURDIR)"
	touch $@

install: $(VENV)/.installed $(VENV)/.on-path

# Student versions are generated, never edited: the check helper is copied into each
# master, then nbgrader writes release/<assignment>/.
release: install
	@for a in $(ASSIGNMENTS); do \
	  cp autograder/scoring/nbcheck.py source/$$a/nbcheck.py; \
	  nbgrader generate_assignment $$a --force --log-level=WARN || exit 1; \
	done

demo: release
	@for a in $(ASSIGNMENTS); do \
	  $(PY) -m autograder grade examples/submissions/$$a --assignment $$a --out out/demo/$$a --force || exit 1; \
	done

test: install
	$(PY) -m pytest

# Jupyter refuses to run as root (a container, CI) unless told to.
lab: install
	$(VENV)/bin/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root)

# Re-execute the lessons in place after editing them (nbval then compares against these outputs).
lessons: install
	cd notebooks && ../$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace 0*.ipynb

bench: install
	$(PY) bench/bench.py

# The students' hand-out: lessons, release/, their own requirements.txt and README.
student: release
	rm -rf dist/student
	$(PY) -m autograder handout --out dist/student

clean:
	rm -rf submitted autograded feedback gradebook.db out test-artifacts dist
