"""The speedups change nothing but cost: the same submissions graded with them and with
nbgrader's own code in every step (each run in a process of its own, so that nothing
applied in one reaches the other) give the same gradebook rows, autograded notebooks and
feedback pages.

Two differences are allowed, and removed before comparing:
- the wall-clock seconds the grader writes into each autograded notebook's metadata, which
  differ between any two runs;
- the layout of the feedback page's markup: nbconvert parses and writes the whole page
  again with BeautifulSoup only to add alt text to images (feedback.py does that with a
  regular expression), so the pages are compared as BeautifulSoup reads them.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
from make_course import ASSIGNMENT, WRONG  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")

RUN = """
import json, sys
from autograder.grading import grade
from autograder.grading import pipeline
from autograder.grading.course import Course
course = Course(root=sys.argv[1], speedups=sys.argv[4] == "on", jobs=1, timeout=5)
grade.run(sys.argv[2], "demo", sys.argv[3], course=course, force=True)
scores = pipeline.gradebook_scores(course, "demo")
print(json.dumps({s: {q: [g.score, g.max_score, g.auto, g.needs_manual] for q, g in grades.items()}
                  for s, grades in scores.items()}))
"""


def submissions(folder):
    students = {"correct": kit.submission(), "wrong": kit.submission(WRONG),
                "half": kit.submission({"make_layer": WRONG["make_layer"], "tie": WRONG["tie"]}),
                "blank": kit.release_notebook(),
                "broken": kit.submission({"count_params": "def count_params(model)\n    return 1"})}
    deleted = kit.submission()
    deleted.cells.remove(kit.cell(deleted, "test_tie"))
    students["deleted_test"] = deleted
    for name, nb in students.items():
        kit.write(nb, folder / f"{name}.ipynb")
    return sorted(students)


def graded(tmp_path, subs, mode):
    course = tmp_path / mode / "course"
    shutil.copytree(ROOT / "tests" / "fixtures" / "course", course)
    out = tmp_path / mode / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT),  # nbgrader runs `alembic` from PATH
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    run = subprocess.run([sys.executable, "-c", RUN, str(course), str(subs), str(out), mode],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return course, out, json.loads(run.stdout.strip().splitlines()[-1])


def without_seconds(path):
    nb = json.loads(Path(path).read_text())
    for holder in [nb["metadata"], *(c["metadata"] for c in nb["cells"])]:
        holder.get("autograder", {}).pop("seconds", None)
    return nb


def as_parsed(page):
    return str(BeautifulSoup(Path(page).read_text(), "html.parser"))


def test_speedups_leave_rows_notebooks_and_pages_as_nbgrader_makes_them(tmp_path):
    subs = tmp_path / "submissions"
    students = submissions(subs)
    fast_course, fast_out, fast_rows = graded(tmp_path, subs, "on")
    own_course, own_out, own_rows = graded(tmp_path, subs, "off")
    assert sorted(fast_rows) == students and fast_rows == own_rows
    assert {s: sum(q[0] for q in r.values()) for s, r in fast_rows.items()}["correct"] > 0
    for student in students:
        notebook = Path("autograded") / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        assert without_seconds(fast_course / notebook) == without_seconds(own_course / notebook), student
        page = Path("feedback") / f"{student}.html"
        assert as_parsed(fast_out / page) == as_parsed(own_out / page), student
