"""The gradebook on a real PostgreSQL server (``grade --db postgresql+psycopg://...``): a
full run, a re-run that grades only what changed, two runs of different assignments at
once into one fresh database, and a manual grade entered through nbgrader's API.

The server is a throwaway cluster started for this module (tests/fixtures/postgres_server.py).
"""
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from nbgrader.api import Gradebook

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
import make_course  # noqa: E402
import postgres_server  # noqa: E402
from make_course import ASSIGNMENT, AUTO_MAX, WRONG  # noqa: E402

OTHER = "demo2"  # a second assignment of the course: the demo under another name
FULL = {q: float(p) for q, p in make_course.POINTS.items() if q != "explain"}


@pytest.fixture(scope="module")
def server():
    bindir = postgres_server.binaries()
    if bindir is None:
        if os.environ.get("REQUIRE_POSTGRES"):
            pytest.fail("REQUIRE_POSTGRES is set but PostgreSQL's server programs are not installed")
        pytest.skip("PostgreSQL's server programs (initdb, postgres) are not installed")
    started = postgres_server.Server(bindir).start()
    yield started
    started.stop()


def course_with_two_assignments(folder):
    """A copy of the test course with a second assignment, ``demo2``, a copy of ``demo``."""
    root = Path(folder) / "course"
    shutil.copytree(make_course.COURSE, root)
    for stage in ("source", "release"):
        shutil.copytree(root / stage / ASSIGNMENT, root / stage / OTHER)
        (root / stage / OTHER / f"{ASSIGNMENT}.ipynb").rename(root / stage / OTHER / f"{OTHER}.ipynb")
    return root


def submissions(folder, **notebooks):
    for student, nb in notebooks.items():
        kit.write(nb, Path(folder) / f"{student}.ipynb")
    return Path(folder)


def server_scores(url, assignment):
    """{student: autograded points} as the server's tables hold them (no ORM in between)."""
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as db:
        rows = db.execute(
            "SELECT student.id, sum(grade.auto_score) FROM grade"
            " JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id"
            " JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id"
            " JOIN assignment ON submitted_assignment.assignment_id = assignment.id"
            " JOIN student ON submitted_assignment.student_id = student.id"
            " WHERE assignment.name = %s GROUP BY student.id", [assignment]).fetchall()
    return {student: float(score or 0) for student, score in rows}


@pytest.fixture(scope="module")
def first_run(server, tmp_path_factory):
    """alice (right) and bob (wrong) graded into a database of their own."""
    base = tmp_path_factory.mktemp("pg")
    course = course_with_two_assignments(base)
    url = server.create_database("first_run")
    subs = submissions(base / "subs", alice=kit.submission(), bob=kit.submission(WRONG))
    graded = kit.run(subs, base / "out", course, db_url=url, force=False)
    return {"url": url, "course": course, "subs": subs, "base": base, "graded": graded}


def test_a_full_run_writes_its_grades_into_the_server(first_run):
    graded = first_run["graded"]
    assert kit.points(graded.rows["alice"]) == FULL
    assert kit.points(graded.rows["bob"]) == dict.fromkeys(FULL, 0.0)
    assert float(graded.csv["alice"]["score"]) == AUTO_MAX and graded.csv["alice"]["explain"] == "pending"
    assert graded.csv["alice"]["status"] == "needs manual grading"
    assert server_scores(first_run["url"], ASSIGNMENT) == {"alice": AUTO_MAX, "bob": 0.0}
    assert not (first_run["course"] / "gradebook.db").exists()  # the server holds the gradebook


def test_b_a_rerun_regrades_only_the_changed_submission(first_run):
    base = first_run["base"]
    subs = Path(shutil.copytree(first_run["subs"], base / "subs_b"))
    submissions(subs, bob=kit.submission())  # bob corrects his answers
    alice_graded = first_run["graded"].autograded("alice")
    alice_before = alice_graded.stat().st_mtime_ns
    bob_before = first_run["graded"].autograded("bob").stat().st_mtime_ns

    again = kit.run(subs, base / "out_b", first_run["course"], db_url=first_run["url"], force=False)

    assert alice_graded.stat().st_mtime_ns == alice_before  # not graded again
    assert again.autograded("bob").stat().st_mtime_ns != bob_before
    assert kit.points(again.rows["bob"]) == FULL and kit.points(again.rows["alice"]) == FULL
    assert server_scores(first_run["url"], ASSIGNMENT) == {"alice": AUTO_MAX, "bob": AUTO_MAX}


def test_c_two_runs_of_different_assignments_at_once_into_one_fresh_database(server, tmp_path):
    course = course_with_two_assignments(tmp_path)
    url = server.create_database("two_at_once")
    students = {"carol": kit.submission(), "dave": kit.submission(WRONG), "erin": kit.submission()}
    runs = {assignment: (submissions(tmp_path / f"subs_{assignment}", **students), tmp_path / f"out_{assignment}")
            for assignment in (ASSIGNMENT, OTHER)}
    # Both runs reach the empty database at the same moment: the server takes no connection
    # until each run has asked for one.
    with ThreadPoolExecutor(len(runs)) as pool:
        with server.held_back():
            futures = {assignment: pool.submit(kit.run, subs, out, course, db_url=url, assignment=assignment,
                                               jobs=1)
                       for assignment, (subs, out) in runs.items()}
            deadline = time.monotonic() + kit.RUN_DEADLINE
            while server.connections_queued() < len(runs) and time.monotonic() < deadline:
                if any(future.done() for future in futures.values()):
                    break
                time.sleep(0.05)
        graded = {assignment: future.result() for assignment, future in futures.items()}

    expected = {"carol": AUTO_MAX, "dave": 0.0, "erin": AUTO_MAX}
    for assignment in runs:
        assert {s: float(r["score"]) for s, r in graded[assignment].csv.items()} == expected, assignment
        assert {r["status"] for r in graded[assignment].csv.values()} == {"needs manual grading"}
        assert server_scores(url, assignment) == expected, assignment


def test_d_a_manual_grade_entered_through_nbgrader_appears_in_the_next_grades_csv(first_run):
    """Only the score is set, as a script would; the grade keeps nbgrader's needs-grading flag."""
    with Gradebook(first_run["url"]) as gb:
        gb.find_grade("explain", ASSIGNMENT, ASSIGNMENT, "alice").manual_score = 1.5
        gb.db.commit()

    again = kit.run(first_run["subs"], first_run["base"] / "out_d", first_run["course"], db_url=first_run["url"],
                    force=False)

    assert again.csv["alice"]["explain"] == "1.5"
    assert float(again.csv["alice"]["score"]) == AUTO_MAX + 1.5
    assert again.csv["alice"]["status"] == "graded"
    assert again.csv["bob"]["explain"] == "pending"
