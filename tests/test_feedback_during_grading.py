"""Feedback pages are written by grading processes that have no student left to grade,
while another still grades: one slow submission does not hold back everyone's page."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
from make_course import ASSIGNMENT, CORRECT  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")

QUICK = [f"quick{i}" for i in range(6)]


def test_pages_of_the_graded_are_written_while_a_slow_submission_runs(tmp_path, tmp_path_factory):
    subs = tmp_path / "subs"
    # First in line, so that the others are graded while it sits out its time limit.
    kit.write(kit.submission({"make_layer": CORRECT["make_layer"] + "\nwhile True:\n    pass"}),
              subs / "a_slow.ipynb")
    for student in QUICK:
        kit.write(kit.submission(), subs / f"{student}.ipynb")
    graded = kit.run(subs, tmp_path / "out", kit.course_copy(tmp_path_factory), timeout=3.0, jobs=2)

    slow_graded_at = graded.autograded("a_slow").stat().st_mtime
    for student in QUICK:
        page = graded.course.work / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
        assert page.stat().st_mtime < slow_graded_at, f"{student}'s page waited for the slow submission"
        assert graded.rows[student].score == graded.rows[student].max_score - 2  # the written answer is pending
    assert graded.feedback_path("a_slow").exists()
    assert all(graded.feedback_path(s).exists() for s in QUICK)


def test_pages_are_dealt_in_shares_ahead_of_the_students_still_to_grade():
    """The Dealer's order, as the grading processes take from the queue: a share of pages
    comes before the next student once it is ready, and what is left at the end is split."""
    import queue

    from autograder.grading.pipeline import FEEDBACK_SHARE, Dealer

    students = [f"s{i:02d}" for i in range(3 * FEEDBACK_SHARE)]
    tasks = queue.Queue()
    dealer = Dealer(tasks, 2, students, feedback=True)
    taken = []

    def take():
        taken.append(tasks.get_nowait())
        return taken[-1]

    graded = 0
    while graded < len(students):
        task = take()
        if isinstance(task, str):
            dealer.graded(task, success=True)
            graded += 1
    while not tasks.empty():
        take()
    shares = [(taken.index(t), t[1]) for t in taken if isinstance(t, tuple)]
    assert sorted(s for _, share in shares for s in share) == students  # every page, once
    first_share_at, first_share = shares[0]
    assert first_share == students[:FEEDBACK_SHARE]
    # Taken while most students were still to grade, not after them all.
    assert sum(isinstance(t, str) for t in taken[first_share_at:]) >= len(students) - FEEDBACK_SHARE - 4
    assert len(shares[-1][1]) <= FEEDBACK_SHARE
