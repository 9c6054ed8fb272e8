"""Broken submissions, end to end: every case is graded in ONE ``grade`` run, next to two
ordinary ("bystander") students, then each test reads its student's row, grades.csv
line and feedback page. The runs use a temporary copy of tests/fixtures/course/.

What a case must give: the points that its gradable part earns, a status or note that
says what was wrong, a feedback page that says it too, and no harm to anyone else.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
from make_course import AUTO_MAX, CORRECT, MAX_SCORE, POINTS, TESTS, WRONG  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")

TIMEOUT = 3.0  # seconds per cell in these runs
ALL = set(TESTS.values())
SLEEP_MARK = "4242.125"  # the argument of a `sleep` a hanging student leaves behind

# --- the submissions ---------------------------------------------------------------------

def other_assignment():
    """A notebook of another assignment of the course: none of this one's cells."""
    nb = nbformat.v4.new_notebook()
    for grade_id, source, flags in [("pa_setup", "import torch", {"locked": True}),
                                    ("layer_shapes", "def layer_shapes(net):\n    return {}", {"solution": True}),
                                    ("test_layer_shapes", "from nbcheck import check\ncheck('x', lambda: 1)",
                                     {"grade": True, "locked": True, "points": 2})]:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata.nbgrader = {"grade_id": grade_id, "grade": False, "solution": False, "locked": False,
                                  "schema_version": 3, **flags}
        nb.cells.append(cell)
    return nb


def without(nb, *grade_ids):
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in grade_ids]
    return nb


def split_solution():
    """Q1's answer split in two cells, each keeping the cell's metadata (as JupyterLab does)."""
    nb = kit.submission()
    first = kit.cell(nb, "make_layer")
    second = kit.deepcopy(first)
    first.source = "LAYER_SIZES = (4, 3)"
    second.source = "def make_layer():\n    return nn.Linear(*LAYER_SIZES)"
    second.id = "split-half"
    nb.cells.insert(nb.cells.index(first) + 1, second)
    return nb


def duplicated_test():
    nb = kit.submission()
    test = kit.cell(nb, "test_make_layer")
    copy = kit.deepcopy(test)
    copy.id = "pasted-copy"
    nb.cells.insert(nb.cells.index(test) + 1, copy)
    return nb


def reordered():
    """Question 4 (text, answer, test) moved above question 1."""
    nb = kit.submission()
    block = nb.cells[kit.index(nb, "freeze_text"):kit.index(nb, "test_freeze") + 1]
    rest = [c for c in nb.cells if c not in block]
    at = rest.index(kit.cell(nb, "make_layer_text"))
    nb.cells = rest[:at] + block + rest[at:]
    return nb


def edited_test():
    """A wrong answer, and its test cell edited to check nothing real."""
    nb = kit.submission({"make_layer": WRONG["make_layer"]})
    kit.cell(nb, "test_make_layer").source = (
        'from nbcheck import check\ncheck("weight shape", lambda: [3, 4], expect=[3, 4])\n'
        'check("bias shape", lambda: [3], expect=[3])')
    return nb


def emptied_test():
    nb = kit.submission()
    kit.cell(nb, "test_count_params").source = ""
    return nb


def solution_marked_as_test():
    nb = kit.submission()
    kit.cell(nb, "make_layer").metadata.nbgrader.update(grade=True, solution=False, points=5)
    return nb


def points_changed():
    nb = kit.submission()
    kit.cell(nb, "test_make_layer").metadata.nbgrader["points"] = 50
    kit.cell(nb, "explain").metadata.nbgrader["points"] = 20
    return nb


def null_metadata():
    """A test cell whose nbgrader metadata was replaced by null."""
    nb = kit.submission()
    kit.cell(nb, "test_freeze").metadata.nbgrader = None
    return nb


def foreign_cell():
    """A graded cell pasted in from another assignment (an id this one does not have)."""
    nb = kit.submission()
    pasted = other_assignment().cells[2]
    pasted.source = "print('a test of another assignment')"
    nb.cells.insert(kit.index(nb, "explain"), pasted)
    return nb


def with_extra(answers):
    """Correct answers, with code added in front of (or after) some of them."""
    return kit.submission({name: code.replace("{answer}", CORRECT[name]) for name, code in answers.items()})


INFINITE_LOOP = {
    "count_params": "while True:\n    pass\n{answer}",
    # a loop that swallows the interrupt: the process is killed and replaced
    "tie": "while True:\n    try:\n        pass\n    except BaseException:\n        pass\n{answer}",
}
MEMORY_BOMB = {
    "count_params": "def grow():\n    hoard = []\n    while True:\n        hoard.append(torch.empty(2**26))\n"
                    "grow()\n{answer}",
    "tie": "everything = torch.empty(2**34)\n{answer}",
}
SYS_EXIT = {"count_params": "import sys\nsys.exit('leaving early')\n{answer}"}
OS_EXIT = {"tie": "{answer}\nimport os\nos._exit(3)"}
SEGFAULT = {"freeze": "import ctypes\nctypes.string_at(0)\n{answer}"}
FLOOD = {"freeze": "{answer}\nimport sys\n"
                   "print('\\n'.join(['spam'] * 3_000_000))\n"
                   "for i in range(100_000):\n    print(i)\n"
                   "sys.stderr.write('noise\\n' * 1_000_000)"}
WARNINGS = {"make_layer": "import logging, sys, warnings\n"
                          "def make_layer():\n"
                          "    warnings.warn('this layer is deprecated', DeprecationWarning)\n"
                          "    warnings.warn('watch out', UserWarning)\n"
                          "    print('a message on stderr', file=sys.stderr)\n"
                          "    logging.getLogger('student').warning('a logged warning')\n"
                          "    return nn.Linear(4, 3)"}
HANG_ON_EXIT = {"make_layer": "{answer}\nimport atexit, subprocess, threading, time\n"
                              "atexit.register(time.sleep, 10**6)\n"
                              "threading.Thread(target=time.sleep, args=(10**6,)).start()\n"
                              f"left_behind = subprocess.Popen(['sleep', '{SLEEP_MARK}'])\n"
                              "print('left behind: process', left_behind.pid)"}
# Output that is not a stream: one huge rich display, and a huge value as the cell's result.
RICH_FLOOD = {"count_params": "{answer}\nfrom IPython.display import display\n"
                              "display({'text/plain': 'spam\\n' * 300_000}, raw=True)",
              "freeze": "{answer}\n'eggs ' * 300_000"}

LATIN = "# réponse de l'étudiant: ça marche, 20 °C\n"
LATIN_EXPLANATION = "Les paramètres partagés ne sont comptés qu'une fois (même objet)."


def build_broken(folder):
    """Write every broken case (and the bystanders) into ``folder``; return {student: what}."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    correct_json = nbformat.writes(kit.submission())
    (folder / "malformed.ipynb").write_text(correct_json[: len(correct_json) // 2])
    (folder / "pdf_as_notebook.ipynb").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\n")
    (folder / "json_not_notebook.ipynb").write_text(json.dumps({"name": "my answers", "cells": "all of them"}))
    (folder / "no_cells.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                       "nbformat_minor": 5}))
    (folder / "empty_file.ipynb").write_bytes(b"")
    latin = kit.submission({name: LATIN + body for name, body in CORRECT.items()}, explanation=LATIN_EXPLANATION)
    kit.write(latin, folder / "latin1.ipynb", encoding="latin-1")
    kit.write(other_assignment(), folder / "other_assignment.ipynb")
    (folder / "folder_without_notebook").mkdir()
    (folder / "folder_without_notebook" / "answers.pdf").write_bytes(b"%PDF-1.4\n")

    # two notebooks for one student: the one named like the assignment wins over a newer one
    kit.write(kit.submission(), folder / "two_files" / "demo.ipynb")
    kit.write(kit.submission(WRONG), folder / "two_files" / "Untitled.ipynb")
    os.utime(folder / "two_files" / "demo.ipynb", (time.time() - 3600,) * 2)
    # ... else the newest one
    kit.write(kit.submission(WRONG), folder / "two_drafts" / "draft.ipynb")
    kit.write(kit.submission(), folder / "two_drafts" / "final.ipynb")
    os.utime(folder / "two_drafts" / "draft.ipynb", (time.time() - 3600,) * 2)

    cases = {
        "deleted_test": without(kit.submission(), "test_count_params"),
        "deleted_answer": without(kit.submission(), "tie"),
        "deleted_question": without(kit.submission(), "tie", "test_tie"),
        "split_cell": split_solution(),
        "duplicated_test": duplicated_test(),
        "reordered": reordered(),
        "edited_test": edited_test(),
        "emptied_test": emptied_test(),
        "solution_as_test": solution_marked_as_test(),
        "points_changed": points_changed(),
        "null_metadata": null_metadata(),
        "foreign_cell": foreign_cell(),
        "infinite_loop": with_extra(INFINITE_LOOP),
        "memory_bomb": with_extra(MEMORY_BOMB),
        "sys_exit": with_extra(SYS_EXIT),
        "os_exit": with_extra(OS_EXIT),
        "segfault": with_extra(SEGFAULT),
        "flood": with_extra(FLOOD),
        "rich_flood": with_extra(RICH_FLOOD),
        "stderr_warnings": kit.submission(WARNINGS),
        "hang_on_exit": with_extra(HANG_ON_EXIT),
        "by_full": kit.BYSTANDERS["by_full"](),
    }
    for student, nb in cases.items():
        kit.write(nb, folder / f"{student}.ipynb")
    # a bystander in nbgrader's own per-student layout, inside the same folder
    kit.write(kit.BYSTANDERS["by_part"](), folder / "by_part" / "demo" / "demo.ipynb")
    return folder


# --- the runs -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def subs(tmp_path_factory):
    return build_broken(tmp_path_factory.mktemp("broken") / "submissions")


@pytest.fixture(scope="module")
def graded(subs, tmp_path_factory):
    base = tmp_path_factory.mktemp("broken-run")
    return kit.run(subs, base / "out", kit.course_copy(tmp_path_factory), timeout=TIMEOUT, memory_mb=512)


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    return kit.graded_alone(tmp_path_factory)


def check_row(graded, student, *, points=None, status=None, reason=None):
    """The student's row has these autograded points (and the csv says the same), this
    status, and ``reason`` in its notes or status and on its feedback page."""
    row = graded.rows[student]
    assert row.max_score == MAX_SCORE
    if points is not None:
        assert {q: row.questions[q] for q in TESTS.values()} == points
        assert row.score == sum(points.values())
        line = graded.csv[student]
        assert {q: float(line[q]) for q in points} == points
        assert float(line["score"]) == row.score and float(line["max_score"]) == MAX_SCORE
    if status is not None:
        assert status in row.status
    page = graded.feedback_path(student)
    assert page.exists()
    if reason is not None:
        assert reason in f"{row.status} | {graded.notes(student)}"
        assert reason in kit.visible_text(page.read_text())
    return row


def check_ungradable(graded, student, reason):
    row = check_row(graded, student, points={q: 0.0 for q in TESTS.values()}, reason=reason)
    assert row.status != "graded" and reason in row.status
    assert row.questions["explain"] == 0.0  # nothing to grade by hand either
    assert not graded.autograded(student).exists()


ALL_RIGHT = kit.auto_points_if(ALL)
CLEAN = "needs manual grading"  # the status of a gradable submission with nothing wrong


# --- the batch as a whole ------------------------------------------------------------------------

def test_the_batch_was_not_stopped(graded, subs):
    expected = {p.stem if p.is_file() else p.name for p in subs.iterdir()}
    assert set(graded.rows) == expected == set(graded.csv)
    assert {p.stem for p in (graded.out / "feedback").glob("*.html")} == expected
    report = (graded.out / "report.html").read_text()
    for student, row in graded.rows.items():
        assert row.max_score == MAX_SCORE and 0 <= row.score <= AUTO_MAX
        if row.status not in ("graded", CLEAN):
            assert student in report  # listed among the submissions that were not simply graded


def test_bystanders_get_the_grades_they_get_alone(graded, alone):
    for student, expected in kit.BYSTANDER_POINTS.items():
        assert kit.points(graded.rows[student]) == expected
        assert graded.rows[student].questions == alone.rows[student].questions
        assert graded.rows[student].score == alone.rows[student].score == sum(expected.values())
        assert graded.rows[student].status == alone.rows[student].status == CLEAN


# --- unreadable input ------------------------------------------------------------------------------

def test_malformed_json(graded):
    check_ungradable(graded, "malformed", "malformed JSON")


def test_a_pdf_named_like_a_notebook(graded):
    check_ungradable(graded, "pdf_as_notebook", "not a notebook")


def test_json_that_is_not_a_notebook(graded):
    check_ungradable(graded, "json_not_notebook", "not a notebook")


def test_a_notebook_without_cells(graded):
    check_ungradable(graded, "no_cells", "empty notebook")


def test_an_empty_file(graded):
    check_ungradable(graded, "empty_file", "empty file")


def test_a_folder_without_a_notebook(graded):
    check_ungradable(graded, "folder_without_notebook", "no notebook submitted")


def test_a_notebook_of_another_assignment(graded):
    check_ungradable(graded, "other_assignment", "not this assignment's notebook")


def test_latin1_bytes_still_get_full_marks(graded):
    check_row(graded, "latin1", points=ALL_RIGHT, status=CLEAN, reason="not UTF-8")
    graded_nb = graded.autograded_notebook("latin1")
    assert kit.cell(graded_nb, "explain").source == LATIN_EXPLANATION
    assert kit.cell(graded_nb, "make_layer").source.startswith(LATIN)


# --- several files ------------------------------------------------------------------------------

def test_two_files_the_one_named_like_the_assignment_is_graded(graded):
    check_row(graded, "two_files", points=ALL_RIGHT, status=CLEAN,
              reason="2 notebooks found; graded two_files/demo.ipynb, ignored two_files/Untitled.ipynb")


def test_two_files_else_the_newest_is_graded(graded):
    check_row(graded, "two_drafts", points=ALL_RIGHT, status=CLEAN,
              reason="2 notebooks found; graded two_drafts/final.ipynb, ignored two_drafts/draft.ipynb")


# --- cells deleted, split, duplicated, reordered ----------------------------------------------------

def test_a_deleted_test_cell_is_restored(graded):
    check_row(graded, "deleted_test", points=ALL_RIGHT, status=CLEAN,
              reason="cells deleted: test_count_params (restored from the assignment)")
    verdict = graded.verdict("deleted_test", "test_count_params")
    assert "[pass] linear 2x2" in verdict and "[pass] hidden test two layers" in verdict


def test_a_deleted_answer_cell_loses_its_question_only(graded):
    check_row(graded, "deleted_answer", points=kit.auto_points_if(ALL - {"test_tie"}), status=CLEAN,
              reason="answer cells deleted: tie")


def test_a_deleted_answer_and_test_lose_their_question_only(graded):
    # nbgrader alone cannot put back a test cell whose neighbour is gone too
    row = check_row(graded, "deleted_question", points=kit.auto_points_if(ALL - {"test_tie"}), status=CLEAN,
                    reason="cells deleted: test_tie (restored from the assignment)")
    assert "answer cells deleted: tie" in graded.notes("deleted_question")
    assert "[fail] shared storage" in graded.verdict("deleted_question", "test_tie")
    assert row.messages["test_tie"]


def test_a_split_answer_cell_is_graded_as_run(graded):
    check_row(graded, "split_cell", points=ALL_RIGHT, status=CLEAN, reason="cells duplicated: make_layer")


def test_a_duplicated_test_cell_counts_once(graded):
    check_row(graded, "duplicated_test", points=ALL_RIGHT, status=CLEAN, reason="cells duplicated: test_make_layer")
    graded_nb = graded.autograded_notebook("duplicated_test")
    graded_cells = [c for c in graded_nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_make_layer"]
    assert len(graded_cells) == 1


def test_reordered_questions_are_graded(graded):
    check_row(graded, "reordered", points=ALL_RIGHT, status=CLEAN, reason="graded cells reordered")


# --- test cells and metadata tampered with ----------------------------------------------------------

def test_an_edited_test_cannot_pass_a_wrong_answer(graded):
    row = check_row(graded, "edited_test", points=kit.auto_points_if(ALL - {"test_make_layer"}), status=CLEAN,
                    reason="test cell altered: test_make_layer (restored from the assignment)")
    assert "expected [3, 4], found [4, 3]" in " ".join(row.messages["test_make_layer"])
    source = kit.cell(graded.autograded_notebook("edited_test"), "test_make_layer").source
    assert "lambda: [3, 4]" not in source and "make_layer().weight.shape" in source


def test_an_emptied_test_cell_is_restored(graded):
    check_row(graded, "emptied_test", points=ALL_RIGHT, status=CLEAN,
              reason="test cell altered: test_count_params (restored from the assignment)")


def test_an_answer_cell_marked_as_a_test_with_points(graded):
    row = check_row(graded, "solution_as_test", points=ALL_RIGHT, status=CLEAN,
                    reason="cell metadata altered: make_layer (restored from the assignment)")
    assert "make_layer" not in row.questions


def test_changed_points_are_restored(graded):
    row = check_row(graded, "points_changed", points=ALL_RIGHT, status=CLEAN,
                    reason="cell metadata altered: test_make_layer (restored from the assignment)")
    assert "cell metadata altered: explain" in graded.notes("points_changed")
    assert row.questions["explain"] == "pending"


def test_null_nbgrader_metadata_does_not_stop_the_batch(graded):
    check_row(graded, "null_metadata", points=ALL_RIGHT, status=CLEAN,
              reason="nbgrader metadata of 1 cell(s) was not valid")
    assert "cells deleted: test_freeze (restored from the assignment)" in graded.notes("null_metadata")


def test_a_cell_pasted_from_another_assignment_earns_nothing(graded):
    row = check_row(graded, "foreign_cell", points=ALL_RIGHT, status=CLEAN,
                    reason="cells not in the assignment: test_layer_shapes")
    assert set(row.questions) == set(POINTS)


# --- code that misbehaves ------------------------------------------------------------------------

def test_an_infinite_loop_times_out_and_later_questions_are_graded(graded):
    row = check_row(graded, "infinite_loop", points=kit.auto_points_if({"test_make_layer", "test_freeze"}),
                    status="timeout", reason="count_params: timeout")
    assert "tie: timeout" in graded.notes("infinite_loop")  # the loop that swallowed the interrupt
    assert row.questions["explain"] == "pending"


def test_a_memory_bomb_hits_the_limit(graded):
    check_row(graded, "memory_bomb", points=kit.auto_points_if({"test_make_layer", "test_freeze"}),
              status="memory limit", reason="count_params: memory limit")
    assert "tie: memory limit" in graded.notes("memory_bomb")


def test_sys_exit_ends_only_its_cell(graded):
    check_row(graded, "sys_exit", points=kit.auto_points_if(ALL - {"test_count_params"}), status=CLEAN,
              reason="count_params: raised SystemExit: leaving early")


def test_os_exit_kills_only_its_cell(graded):
    check_row(graded, "os_exit", points=kit.auto_points_if(ALL - {"test_tie"}), status="crashed",
              reason="tie: crashed (the process running this cell died: it exited with code 3)")


def test_a_segfault_kills_only_its_cell(graded):
    check_row(graded, "segfault", points=kit.auto_points_if(ALL - {"test_freeze"}), status="crashed",
              reason="freeze: crashed (the process running this cell died: killed by signal SIGSEGV)")


def test_an_output_flood_keeps_feedback_and_notebook_small(graded):
    check_row(graded, "flood", points=ALL_RIGHT, status=CLEAN)
    assert graded.autograded("flood").stat().st_size < 1_000_000
    assert graded.feedback_path("flood").stat().st_size < 1_000_000
    flooded = kit.cell(graded.autograded_notebook("flood"), "freeze")
    assert "spam" in "".join(o.get("text", "") for o in flooded.outputs)  # it did flood


def test_a_flood_of_rich_output_keeps_feedback_and_notebook_small(graded):
    check_row(graded, "rich_flood", points=ALL_RIGHT, status=CLEAN)
    assert graded.autograded("rich_flood").stat().st_size < 1_000_000
    assert graded.feedback_path("rich_flood").stat().st_size < 1_000_000


def test_warnings_on_stderr_do_not_cost_points(graded):
    row = check_row(graded, "stderr_warnings", points=ALL_RIGHT, status=CLEAN)
    assert row.notes == []


def test_a_process_that_would_hang_on_exit_does_not_hold_the_run(graded):
    check_row(graded, "hang_on_exit", points=ALL_RIGHT, status=CLEAN)
    if os.geteuid() != 0:
        pytest.skip("what a student leaves running is swept by its own user, which needs the executor to be root")
    started = kit.cell(graded.autograded_notebook("hang_on_exit"), "make_layer")
    assert "left behind: process" in "".join(o.get("text", "") for o in started.outputs)
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert f"sleep {SLEEP_MARK}" not in processes


# --- input layouts (the bystanders' run on their own) ---------------------------------------------------

def test_a_zip_is_graded_and_its_debris_ignored(alone):
    assert set(alone.rows) == set(kit.BYSTANDERS)  # no "__MACOSX", no "escaped"
    for student, expected in kit.BYSTANDER_POINTS.items():
        assert kit.points(alone.rows[student]) == expected
        assert alone.feedback_path(student).exists()
    assert not Path(tempfile.gettempdir(), "escaped.ipynb").exists()  # where it would have climbed to


def test_an_nbgrader_submitted_tree_is_graded_without_its_checkpoints(alone):
    for student in kit.BYSTANDERS:
        row = alone.rows[student]
        assert not any("notebooks found" in note for note in row.notes)  # the checkpoint was not a candidate
        assert row.status == CLEAN
