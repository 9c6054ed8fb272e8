"""The speedups (autograder/nbgrader_ext/speedups.py) keep nbgrader's verdicts: its cell-metadata check passes and fails
exactly what jsonschema does, with jsonschema's own error; its gradebook lookups find the
rows nbgrader's find the same way, or fail with nbgrader's message."""
import copy
import json
from pathlib import Path

import jsonschema
import nbgrader.nbgraderformat
import pytest
from nbgrader.api import Gradebook, MissingEntry

from autograder.nbgrader_ext import speedups

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((Path(nbgrader.nbgraderformat.__file__).parent / "v3.json").read_text())
VALID = {"schema_version": 3, "grade": True, "locked": False, "solution": False, "grade_id": "q_1",
         "points": 2}
CASES = [
    VALID,
    {**VALID, "points": 0.5, "checksum": "0" * 32, "cell_type": "code", "task": False},
    {**VALID, "schema_version": 3.0},  # draft 4: a float is not an integer
    {**VALID, "schema_version": True},
    {**VALID, "grade": 1},
    {**VALID, "points": -1},
    {**VALID, "points": False},
    {**VALID, "grade_id": "has space"},
    {**VALID, "checksum": "short"},
    {**VALID, "cell_type": "heading"},
    {**VALID, "extra": 1},
    {key: value for key, value in VALID.items() if key != "locked"},
    [],
    None,
]


def verdict(check, instance):
    """(message, path) of the error ``check(instance, SCHEMA)`` raises, or None."""
    try:
        check(instance, SCHEMA)
    except jsonschema.ValidationError as error:
        return error.message, list(error.path)
    return None


@pytest.mark.parametrize("instance", CASES, ids=lambda case: json.dumps(case)[:60])
def test_metadata_check_gives_jsonschemas_verdict_and_error(instance):
    checked = copy.deepcopy(instance)
    assert verdict(speedups.validate, checked) == verdict(jsonschema.validate, instance)
    assert checked == instance  # checked, not changed: no default written into it


def test_the_cases_include_valid_and_invalid_metadata():
    verdicts = [verdict(jsonschema.validate, case) for case in CASES]
    assert verdicts[:2] == [None, None]
    assert all(found is not None for found in verdicts[2:])


@pytest.mark.parametrize("name, keys", [("find_assignment", ["a1"]), ("find_student", ["st1"]),
                                        ("find_notebook", ["nb1", "a1"]), ("find_submission", ["a1", "st1"]),
                                        ("find_submission_notebook", ["nb1", "a1", "st1"])])
def test_lookups_built_once_answer_as_nbgraders_own(tmp_path, name, keys):
    speedups.apply()
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        gb.add_assignment("a1")
        gb.add_notebook("nb1", "a1")
        gb.add_student("st1")
        gb.add_submission("a1", "st1")
        ours = getattr(Gradebook, name)
        nbgraders = ours.__wrapped__
        assert ours is not nbgraders
        assert ours(gb, *keys) is nbgraders(gb, *keys) is not None
        assert ours(gb, **dict(zip(nbgraders.__code__.co_varnames[1:], keys))) is nbgraders(gb, *keys)
        for wrong in range(len(keys)):
            asked = [key + "x" if i == wrong else key for i, key in enumerate(keys)]
            with pytest.raises(MissingEntry) as mine:
                ours(gb, *asked)
            with pytest.raises(MissingEntry) as theirs:
                nbgraders(gb, *asked)
            assert str(mine.value) == str(theirs.value)


# Run in a fresh process: what nbgrader and SQLAlchemy hold before and after the course's
# configuration is loaded, as every nbgrader command loads it.
IDENTITIES = """
import inspect, json, sys
import nbgrader.api, nbgrader.nbgraderformat.common, sqlalchemy
def identities():
    found = {name: id(value) for name, value in vars(nbgrader.api).items()}
    found.update({f"Gradebook.{name}": id(value) for name, value in vars(nbgrader.api.Gradebook).items()})
    found["create_all"] = id(vars(nbgrader.api.Base.metadata).get("create_all"))
    found["jsonschema"] = id(nbgrader.nbgraderformat.common.jsonschema)
    found.update({f"sqlalchemy.{name}": id(value) for name, value in vars(sqlalchemy).items()})
    return found
before = identities()
from autograder.grading.course import Course
config = Course(root=sys.argv[1]).config()
assert config.Autograde.autograde_preprocessors, "the course configuration was not loaded"
after = identities()
print(json.dumps(sorted(name for name in before if after.get(name) != before[name])))
"""


def test_loading_the_course_configuration_leaves_nbgrader_as_installed():
    import subprocess
    import sys
    changed = subprocess.run([sys.executable, "-c", IDENTITIES, str(ROOT)], capture_output=True, text=True,
                             cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout) == []


def test_the_speedups_do_change_nbgrader_once_applied():
    """The check above can fail: applying the speedups changes what it compares."""
    import subprocess
    import sys
    script = IDENTITIES.replace("config = Course(root=sys.argv[1]).config()",
                                "config = Course(root=sys.argv[1]).config()\n"
                                "from autograder.nbgrader_ext import speedups; speedups.apply()")
    changed = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True,
                             cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert changed.returncode == 0, changed.stderr
    assert {"create_engine", "Gradebook.check_course", "Gradebook.find_grade", "jsonschema"} <= set(
        json.loads(changed.stdout))


def _submission_rows(gb, student):
    """Every row a submission of ``student`` holds, ids left out (each one is new)."""
    from nbgrader.api import Comment, Grade, SubmittedAssignment
    submission = gb.find_submission("a1", student)
    rows = [("submission", submission.assignment_id, str(submission.timestamp), submission.extension)]
    for notebook in submission.notebooks:
        rows.append(("notebook", notebook.notebook_id, notebook.flagged, notebook.late_submission_penalty))
        for table in (Grade, Comment):
            for row in gb.db.query(table).filter(table.notebook_id == notebook.id):
                columns = {c.name: getattr(row, c.name) for c in table.__table__.columns
                           if c.name not in ("id", "notebook_id")}
                rows.append((table.__name__, json.dumps(columns, sort_keys=True, default=str)))
    assert isinstance(submission, SubmittedAssignment)
    return sorted(rows, key=str)


def test_submissions_added_at_once_hold_the_rows_nbgrader_adds(tmp_path):
    """add_submission's grade and comment rows, made with one INSERT per table, are the rows
    nbgrader's own makes for every kind of cell; its errors are nbgrader's too."""
    from nbgrader.api import InvalidEntry
    speedups.apply()
    assert Gradebook.add_submission is speedups.add_submission
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        gb.add_assignment("a1")
        gb.add_notebook("nb1", "a1")
        gb.add_grade_cell("graded", "nb1", "a1", max_score=2, cell_type="code")
        gb.add_solution_cell("answer", "nb1", "a1")
        gb.add_grade_cell("answer", "nb1", "a1", max_score=1, cell_type="markdown")
        gb.add_task_cell("task", "nb1", "a1", max_score=3, cell_type="markdown")
        for student in ("ours", "nbgraders"):
            gb.add_student(student)
        submitted = gb.add_submission("a1", "ours", timestamp="2026-03-01 12:00:00 UTC")
        speedups._add_submission(gb, "a1", "nbgraders", timestamp="2026-03-01 12:00:00 UTC")
        assert submitted.student_id == "ours" and len(submitted.notebooks[0].grades) == 3
        assert _submission_rows(gb, "ours") == _submission_rows(gb, "nbgraders")
        assert len(_submission_rows(gb, "ours")) == 2 + 3 + 2  # the submission, its notebook, grades, comments
        with pytest.raises(MissingEntry) as mine:
            gb.add_submission("a1", "nobody")
        with pytest.raises(MissingEntry) as theirs:
            speedups._add_submission(gb, "a1", "nobody")
        assert str(mine.value) == str(theirs.value)
        with pytest.raises(InvalidEntry):
            gb.add_submission("a1", "ours", extension="not a time")
