"""One grading run over a batch that mixes every class of attack with a correct and a
blank student: the run finishes with a row for everyone, the correct and blank students get
exactly their scores, and every attacker gets what its real answers earn.

Every attacker gives the same real answers (ANSWERS: two wrong, two right) and adds its
attack to one answer cell; TWIN gives those answers alone. So each attacker must score,
question by question, what TWIN scores. Forgers hold every check's criteria, hidden ones
included, as if the hidden test code had leaked.
"""
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
import test_forgery  # noqa: E402
import test_grade_bounded as bounded  # noqa: E402
import test_grade_leaks as leaks  # noqa: E402
from make_course import COURSE, CORRECT, TESTS, WRONG  # noqa: E402

from autograder.scoring import nbcheck  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")

ANSWERS = {"make_layer": WRONG["make_layer"], "count_params": CORRECT["count_params"],
           "tie": CORRECT["tie"], "freeze": WRONG["freeze"]}
SHM_MARK = "every-attack-shm-marker"
LEAVE_MARKS = f"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
segment = libc.shmget(0x5eed, 4096, 0o1666)
address = libc.shmat(segment, None, 0)
if address not in (-1, 2**64 - 1):
    ctypes.memmove(address, {SHM_MARK.encode()!r}, {len(SHM_MARK)})
open('/dev/shm/{SHM_MARK}', 'w').write('{SHM_MARK}')
"""
# Finds what an earlier student left: then (only then) its first answer would be right.
FIND_MARKS = f"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
segment = libc.shmget(0x5eed, 4096, 0)
found = os.path.exists('/dev/shm/{SHM_MARK}')
if segment >= 0:
    address = libc.shmat(segment, None, 0)
    found = found or (address not in (None, 2**64 - 1) and ctypes.string_at(address, {len(SHM_MARK)}) == {SHM_MARK.encode()!r})
def make_layer():
    return nn.Linear(4, 3) if found else nn.Linear(3, 4)
"""
XSS_MARKDOWN = "<script>document.title = 'pwned'</script><img src=x onerror=\"document.title='pwned'\">"


def attack(cell, code, answers=ANSWERS):
    """ANSWERS, with ``code`` run before the answer in ``cell``."""
    return kit.submission({**answers, cell: code + "\n" + answers[cell]})


def demo_passing_values():
    master = nbformat.read(COURSE / "source" / "demo" / "demo.ipynb", as_version=4)
    known = {}
    for cell in master.cells:
        if nbcheck.is_test_cell(cell):
            for spec in nbcheck.parse_checks(cell.source):
                same = spec.criteria.get("same")
                known[spec.name] = {key: 0.0 for key in same} if same else spec.criteria.get("expect")
    return known


def batch():
    preamble = test_forgery.PREAMBLE.format(known=repr(demo_passing_values()))
    students = {"correct": kit.submission(), "blank": kit.release_notebook(), "twin": kit.submission(ANSWERS)}
    for name, forger in test_forgery.FORGERS.items():
        if name != "calls_the_recorder_from_a_test":  # it needs the assignments' own answers
            students[f"forger_{name}"] = attack("make_layer", preamble + forger)
    freeze_index = bounded.code_index("freeze")
    students["resets_deadlines"] = attack("freeze", bounded.RESET.format(index=freeze_index))
    students["floods_the_channel"] = attack("freeze", bounded.FLOOD.format(index=freeze_index))
    slow = kit.submission(ANSWERS)  # a cell of its own: it runs out of time, costing no answer
    slow.cells.insert(kit.index(slow, "tie") + 1, nbformat.v4.new_code_cell(bounded.ECHO))
    students["slow_transforms"] = slow
    students["reads_linecache"] = attack("make_layer", leaks.PRINT_LINECACHE)
    students["reads_frames"] = attack("make_layer", leaks.CAPTURE + "capture()\nprint(CAPTURED)")
    students["inspects_callers"] = attack("make_layer", leaks.INSPECTOR.replace("def make_layer", "def _unused"))
    students["a_leaves_marks"] = attack("make_layer", LEAVE_MARKS)
    students["b_finds_marks"] = kit.submission({**ANSWERS, "make_layer": FIND_MARKS})
    xss = attack("make_layer", "from IPython.display import HTML, display\n"
                               f"display(HTML({XSS_MARKDOWN!r}))")
    xss.cells.insert(1, nbformat.v4.new_markdown_cell(XSS_MARKDOWN))
    students["scripts_in_html"] = xss
    return students


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("every-attack")
    students = batch()
    for name, nb in students.items():
        kit.write(nb, base / "submissions" / f"{name}.ipynb")
    (base / "submissions" / "too_deep.ipynb").write_text('{"cells": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return students, kit.run(base / "submissions", base / "out", kit.course_copy(tmp_path_factory), timeout=3.0,
                             memory_mb=1024, deadline=bounded.BATCH_BUDGET * 2)


def test_the_run_ends_with_a_row_and_a_page_for_everyone(graded):
    students, run = graded
    assert set(run.rows) == set(students) | {"too_deep"} == set(run.csv)
    for student in run.rows:
        assert run.feedback_path(student).exists(), student
    assert run.rows["too_deep"].status.startswith("unreadable notebook"), run.rows["too_deep"].status


def test_correct_and_blank_get_exactly_their_scores(graded):
    _, run = graded
    assert kit.points(run.rows["correct"]) == kit.auto_points_if(set(TESTS.values()))
    assert set(run.rows["blank"].questions.values()) == {0.0}  # the written answer, left as given, too
    assert kit.points(run.rows["twin"]) == kit.auto_points_if({TESTS["count_params"], TESTS["tie"]})


@pytest.mark.parametrize("student", sorted(set(batch()) - {"correct", "blank", "twin"}))
def test_every_attacker_gets_what_its_real_answers_earn(graded, student):
    _, run = graded
    assert kit.points(run.rows[student]) == kit.points(run.rows["twin"]), run.notes(student)
