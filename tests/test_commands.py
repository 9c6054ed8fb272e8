"""The command line: every mistake a user can make gets one clear line on stderr, exit
status 2, no traceback, and nothing created; one notebook file is graded as one student."""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "submissions" / "param_access"


def command(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT),  # nbgrader runs `alembic` from PATH
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return subprocess.run([sys.executable, "-m", "autograder", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


MISTAKES = {
    "no such folder": (["grade", "{tmp}/nowhere", "--assignment", "param_access", "--out", "{tmp}/out"],
                       "no such file or folder"),
    "no such assignment": (["grade", EXAMPLES, "--assignment", "param_acess", "--out", "{tmp}/out"],
                           "there are: param_access, save_and_freeze, tied_layers"),
    "not a zip": (["grade", ROOT / "README.md", "--assignment", "param_access", "--out", "{tmp}/out"],
                  "neither a folder, a notebook nor a .zip file"),
    "out is a file": (["grade", EXAMPLES, "--assignment", "param_access", "--out", ROOT / "README.md"],
                      "is a file, not a folder"),
    "timeout zero": (["grade", EXAMPLES, "--assignment", "param_access", "--out", "{tmp}/out", "--timeout", "0"],
                     "must be above 0"),
    "negative jobs": (["grade", EXAMPLES, "--assignment", "param_access", "--out", "{tmp}/out", "--jobs", "-1"],
                      "--jobs must be 0"),
    "roster not found": (["grade", EXAMPLES, "--assignment", "param_access", "--out", "{tmp}/out",
                          "--roster", "{tmp}/roster.csv"], "cannot read roster"),
    "roster without lms_id": (["grade", EXAMPLES, "--assignment", "param_access", "--out", "{tmp}/out",
                               "--roster", ROOT / "requirements.txt"], "has no lms_id column"),
    "due without a time zone": (["grade", EXAMPLES, "--assignment", "param_access", "--out", "{tmp}/out", "--due",
                                 "2025-03-01T23:59"], "not an ISO 8601 date and time with a time zone"),
    "due not a date": (["grade", EXAMPLES, "--assignment", "param_access", "--out", "{tmp}/out", "--due", "friday"],
                       "--due 'friday' is not an ISO 8601"),
    "similarity threshold above 1": (["grade", EXAMPLES, "--assignment", "param_access", "--out", "{tmp}/out",
                                      "--similarity-threshold", "75"], "is a share, at most 1"),
    "setting without a class": (["grade", EXAMPLES, "--assignment", "param_access", "--out", "{tmp}/out",
                                 "--set", "partial_credit=False"], "write it as CLASS.TRAIT=VALUE"),
    "check a missing notebook": (["check", "{tmp}/missing.ipynb"], "no such notebook"),
    "hand-out over a used folder": (["handout", "--out", ROOT / "notebooks"], "is not an empty folder"),
    "gradescope of a missing assignment": (["gradescope", "--assignment", "nosuch", "-o", "{tmp}/out/a.zip"],
                                           "no assignment 'nosuch'"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_mistake_is_one_line_exit_2_and_nothing_created(tmp_path, mistake):
    args, said = MISTAKES[mistake]
    done = command(*[str(a).format(tmp=tmp_path) for a in args], cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output folder, gradebook or work folder


def test_one_notebook_file_is_graded_as_one_student_named_after_it(tmp_path):
    notebook = tmp_path / "Ada Lovelace.ipynb"
    shutil.copyfile(EXAMPLES / "ada_full.ipynb", notebook)
    done = command("grade", notebook, "--assignment", "param_access", "--out", tmp_path / "out",
                   "--work", tmp_path / "work", "--jobs", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "out" / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["student_id"], r["score"]) for r in rows] == [("Ada_Lovelace", "12")]


def test_a_run_started_in_the_background_suspects_no_one(tmp_path):
    """A job started with `&` from a script inherits SIGINT ignored; the warden must not take
    the handler each submission's process sets for a student's doing."""
    notebook = tmp_path / "ada.ipynb"
    shutil.copyfile(EXAMPLES / "ada_full.ipynb", notebook)
    env = dict(os.environ, PYTHONPATH=str(ROOT),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    done = subprocess.run(["bash", "-c", '"$@" & wait $!', "bash", sys.executable, "-m", "autograder", "grade",
                           str(notebook), "--assignment", "param_access", "--out", str(tmp_path / "out"),
                           "--work", str(tmp_path / "work"), "--jobs", "1"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "out" / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["score"], r["status"], r["notes"]) for r in rows] == [("12", "graded", "")], rows


def test_a_command_ends_without_teardown_yet_runs_its_exit_handlers_and_flushes(tmp_path):
    """``leave`` skips the interpreter's teardown: what the exit handlers do (temporary
    folders removed, logs flushed) and everything printed must still happen."""
    marker = tmp_path / "handler-ran"
    script = ("import atexit, sys\n"
              "from autograder.__main__ import leave\n"
              f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
              "print('the table', end='')\n"  # piped: held in Python's buffer
              "sys.stderr.write('to stderr')\n"
              "leave(3)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as usual
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          env=dict(env, PYTHONPATH=str(ROOT)), timeout=60)
    assert done.returncode == 3
    assert done.stdout == "the table" and done.stderr == "to stderr"
    assert marker.read_text() == "ran"


def test_a_roster_run_with_nothing_gradable_ends_with_every_row(tmp_path):
    """No notebook to grade, so nothing made the work folder: the roster's names, which go
    into the gradebook there, must not stop the run."""
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "bob.ipynb").write_text("not a notebook")
    (tmp_path / "roster.csv").write_text("lms_id,student_id,name\n1001,bob,Bob Honest\n1002,eve,Eve Other\n")
    done = command("grade", tmp_path / "subs", "--assignment", "param_access", "--out", tmp_path / "out",
                   "--work", tmp_path / "new-work", "--roster", tmp_path / "roster.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "out" / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["student_id"], r["status"]) for r in rows] == [
        ("bob", "not a notebook (the file is not JSON)"), ("eve", "no submission")]
