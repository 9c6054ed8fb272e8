"""Partial credit: a test cell's points are shared among its checks (hidden ones included),
equally or by ``weight=``; a course can switch back to all or nothing.

The unit tests judge cells directly and hand the outputs to nbgrader's own ``determine_grade``;
the end-to-end tests grade the test course with two of its test cells rewritten (three checks
in Q1, a weighted pair in Q2), as a whole grading run does, with partial credit on and off."""
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.utils import determine_grade

from autograder import graded_metadata, scoring
from autograder.grading.course import Course
from autograder.nbgrader_ext import JudgeChecks
from autograder.scoring.nbcheck import TestCellError, judge_cell, parse_checks, strip_criteria

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
import make_course  # noqa: E402
from make_course import ASSIGNMENT, CORRECT  # noqa: E402

THREE = '''from nbcheck import check
check("a", f, expect=1)
check("b", f, expect=2)
### BEGIN HIDDEN TESTS
check("c", f, expect=3)
### END HIDDEN TESTS'''


def observed(**values):
    return {name: (value, None) for name, value in values.items()}


def nbgrader_score(verdict, points):
    """What nbgrader's own SaveAutoGrades reads from the outputs the grader writes."""
    cell = nbformat.v4.new_code_cell("", metadata={"nbgrader": {"grade": True, "solution": False,
                                                                "grade_id": "t", "points": points}})
    cell.outputs = [nbformat.from_dict(o) for o in scoring.verdict_outputs(verdict)]
    return determine_grade(cell)[0]


# --- judging ----------------------------------------------------------------------------------

def test_one_failed_check_of_three_costs_a_third_of_the_points():
    verdict = judge_cell(THREE, [], observations=observed(a=1, b=0, c=3), points=2)
    assert verdict.score == 4 / 3 and nbgrader_score(verdict, 2) == 4 / 3
    assert verdict.lines == ["[pass] a (0.67 / 0.67 points)", "[fail] b: expected 2, found 0 (0 / 0.67 points)",
                             "[pass] hidden test c (0.67 / 0.67 points)"]


def test_a_failed_hidden_check_costs_its_share_and_shows_only_its_name():
    verdict = judge_cell(THREE, [], observations=observed(a=1, b=2, c=0), points=3)
    assert verdict.score == 2 and nbgrader_score(verdict, 3) == 2
    assert verdict.lines[-1] == "[fail] hidden test c (0 / 1 points)" and verdict.public_messages == []


def test_weights_share_the_points_and_never_reach_the_student():
    source = THREE.replace('expect=2)', 'expect=2, weight=2)')
    assert [spec.weight for spec in parse_checks(source)] == [1, 2, 1]
    assert "weight" not in strip_criteria(source)
    verdict = judge_cell(source, [], observations=observed(a=1, b=0, c=3), points=2)
    assert verdict.score == 1 and [(c.earned, c.share) for c in verdict.checks] == [(0.5, 0.5), (0, 1), (0.5, 0.5)]


@pytest.mark.parametrize("weight", ["0", "-1", "'2'", "float('inf')", "w"])
def test_a_weight_must_be_a_literal_number_above_zero(weight):
    with pytest.raises(TestCellError, match="weight|literals"):
        parse_checks(f"check('a', f, expect=1, weight={weight})")


def test_nine_shares_of_two_points_add_up_to_exactly_two_and_show_two_decimals():
    source = "\n".join(f"check('c{i}', f, expect={i})" for i in range(9))
    everything = observed(**{f"c{i}": i for i in range(9)})
    verdict = judge_cell(source, [], observations=everything, points=2)
    assert verdict.score == 2.0 and nbgrader_score(verdict, 2) == 2.0
    assert verdict.lines[0] == "[pass] c0 (0.22 / 0.22 points)"
    one_wrong = judge_cell(source, [], observations={**everything, "c8": (0, None)}, points=2)
    assert one_wrong.score == 2 * 8 / 9 and nbgrader_score(one_wrong, 2) == 2 * 8 / 9


def test_a_check_that_never_recorded_earns_nothing():
    """An error before any check ran, or records dropped for tampering: no observations."""
    verdict = judge_cell(THREE, [{"output_type": "error", "ename": "NameError", "evalue": "x", "traceback": []}],
                         status="error", observations={}, points=2)
    assert verdict.score == 0 and nbgrader_score(verdict, 2) == 0
    assert [c.earned for c in verdict.checks] == [0, 0, 0]


@pytest.mark.parametrize("status", ["timeout", "memory", "crashed"])
def test_a_cell_stopped_before_its_end_earns_nothing_for_the_checks_it_recorded(status):
    verdict = judge_cell(THREE, [], status=status, observations=observed(a=1, b=2), points=2)
    assert verdict.score == 0 and nbgrader_score(verdict, 2) == 0
    assert verdict.lines[0] == "[pass] a (0 / 0.67 points)"


def test_all_or_nothing_scores_a_failed_check_zero_and_shows_no_shares():
    verdict = judge_cell(THREE, [], observations=observed(a=1, b=0, c=3), points=2, partial=False)
    assert verdict.score == 0 and nbgrader_score(verdict, 2) == 0
    assert verdict.lines[0] == "[pass] a"
    assert judge_cell(THREE, [], observations=observed(a=1, b=2, c=3), points=2, partial=False).score == 2


def test_partial_credit_is_on_unless_the_course_or_the_run_turns_it_off(tmp_path):
    assert JudgeChecks(config=Course().config()).partial_credit is True
    assert JudgeChecks(config=Course(overrides=["JudgeChecks.partial_credit=False"]).config()).partial_credit is False
    shutil.copy(Course().root / "nbgrader_config.py", tmp_path)
    with open(tmp_path / "nbgrader_config.py", "a") as f:
        f.write("\nc.JudgeChecks.partial_credit = False\n")
    assert JudgeChecks(config=Course(root=tmp_path).config()).partial_credit is False


# --- a grading run ----------------------------------------------------------------------------

Q1_THREE_CHECKS = '''from nbcheck import check
check("weight shape", lambda: make_layer().weight.shape, expect=[3, 4])
check("in features", lambda: make_layer().in_features, expect=4)
### BEGIN HIDDEN TESTS
check("bias shape", lambda: make_layer().bias.shape, expect=[3])
### END HIDDEN TESTS'''
Q2_WEIGHTED = '''from nbcheck import check
check("linear 2x2", lambda: count_params(nn.Linear(2, 2)), expect=6, weight=3)
### BEGIN HIDDEN TESTS
check("two layers", lambda: count_params(nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))), expect=11)
### END HIDDEN TESTS'''
# make_layer() is called once per check: the third call is the hidden check's.
THIRD_CALL = "calls = []\ndef make_layer():\n    calls.append(1)\n    if len(calls) == 3:\n{}\n    return nn.Linear(4, 3)"
STUDENTS = {
    "correct": {},
    "no_bias": {"make_layer": "def make_layer():\n    return nn.Linear(4, 3, bias=False)"},  # Q1: 2 of 3 checks
    "shallow": {"count_params": "def count_params(model):\n"  # Q2: the weighted check only, 3/4
                                "    return sum(p.numel() for p in model.parameters(recurse=False))"},
    # Q1's first two checks recorded and passed, then the cell ran out of time
    "slow": {"make_layer": THIRD_CALL.format("        while True:\n            pass")},
    # ... or the student's code called a check itself: no record of the cell is taken
    "forger": {"make_layer": THIRD_CALL.format("        from nbcheck import check\n"
                                               "        check('bias shape', lambda: [3])")},
    # Q3's test calls tie() before its first check: an error there leaves nothing recorded
    "tie_raises": {"tie": "def tie(first, second):\n    raise RuntimeError('not yet')"},
}


def graded_course(tmp_path_factory, name, *, partial, students=tuple(STUDENTS)):
    """The test course with Q1 and Q2 rewritten, these students graded in it."""
    root = tmp_path_factory.mktemp(name) / "course"
    shutil.copytree(make_course.COURSE, root)
    master = root / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = nbformat.read(master, as_version=4)
    kit.cell(nb, "test_make_layer").source = Q1_THREE_CHECKS
    kit.cell(nb, "test_count_params").source = Q2_WEIGHTED
    nbformat.write(nb, master)
    if not partial:
        with open(root / "nbgrader_config.py", "a") as f:
            f.write("\nc.JudgeChecks.partial_credit = False\n")
    subs = root.parent / "subs"
    for student in students:
        kit.write(kit.submission({**CORRECT, **STUDENTS[student]}), subs / f"{student}.ipynb")
    return kit.run(subs, root.parent / "out", root, timeout=2.0)


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    return graded_course(tmp_path_factory, "partial", partial=True)


@pytest.fixture(scope="module")
def all_or_nothing(tmp_path_factory):
    return graded_course(tmp_path_factory, "all_or_nothing", partial=False, students=("correct", "no_bias", "shallow"))


FULL = kit.auto_points_if(set(make_course.TESTS.values()))


def test_a_cell_with_one_failed_check_of_three_earns_two_thirds(partial):
    assert kit.points(partial.rows["correct"]) == FULL
    # the gradebook's exact number, in the rows; two decimals in grades.csv
    assert kit.points(partial.rows["no_bias"]) == {**FULL, "test_make_layer": 2 * 2 / 3}
    assert partial.csv["no_bias"]["test_make_layer"] == "1.33" and partial.csv["no_bias"]["score"] == "5.33"


def test_a_weighted_check_earns_its_weight(partial):
    assert kit.points(partial.rows["shallow"]) == {**FULL, "test_count_params": 0.75}
    verdict = partial.verdict("shallow", "test_count_params")
    assert "[pass] linear 2x2 (0.75 / 0.75 points)" in verdict
    assert "[fail] hidden test two layers (0 / 0.25 points)" in verdict


def test_a_timeout_tampering_or_an_error_before_the_checks_earns_nothing(partial):
    assert kit.points(partial.rows["slow"]) == {**FULL, "test_make_layer": 0.0}
    assert "timeout" in partial.rows["slow"].status
    assert kit.points(partial.rows["forger"]) == {**FULL, "test_make_layer": 0.0}
    assert "tampering suspected" in partial.rows["forger"].status
    assert kit.points(partial.rows["tie_raises"]) == {**FULL, "test_tie": 0.0}


def test_the_verdict_and_the_feedback_carry_each_checks_points(partial):
    nb = partial.autograded_notebook("no_bias")
    graded_metadata.validate(nb)
    verdict = graded_metadata.cell_of(kit.cell(nb, "test_make_layer"))["verdict"]
    assert verdict["score"] == 2 * 2 / 3
    assert [(c["name"], c["passed"], c["earned"], c["share"]) for c in verdict["checks"]] == [
        ("weight shape", True, 2 / 3, 2 / 3), ("in features", True, 2 / 3, 2 / 3), ("bias shape", False, 0, 2 / 3)]
    page = kit.visible_text(partial.feedback_path("no_bias").read_text())
    assert "[pass] weight shape (0.67 / 0.67 points)" in page
    assert "[fail] hidden test bias shape (0 / 0.67 points)" in page
    assert "1.3333" not in page  # the exact number stays in the gradebook


def test_all_or_nothing_course_scores_a_failed_check_zero(all_or_nothing):
    assert kit.points(all_or_nothing.rows["correct"]) == FULL
    assert kit.points(all_or_nothing.rows["no_bias"]) == {**FULL, "test_make_layer": 0.0}
    assert kit.points(all_or_nothing.rows["shallow"]) == {**FULL, "test_count_params": 0.0}
    assert "[pass] weight shape\n" in all_or_nothing.verdict("no_bias", "test_make_layer")
    nb = all_or_nothing.autograded_notebook("no_bias")
    verdict = graded_metadata.cell_of(kit.cell(nb, "test_make_layer"))["verdict"]
    assert verdict["score"] == 0 and [(c["earned"], c["share"]) for c in verdict["checks"]] == [(0, 2 / 3)] * 3
