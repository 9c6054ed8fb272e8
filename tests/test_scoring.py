"""Unit tests of the judging code (autograder/scoring/nbcheck.py, through autograder.scoring): test
cells are read in the grader, their criteria cut out before the student's process sees
them, and recorded observations judged as plain data only."""
import ast
import filecmp
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from autograder.scoring import nbcheck
from autograder import scoring
from autograder.scoring.nbcheck import OBSERVATION_MIME, TestCellError, judge, judge_cell, parse_checks, strip_criteria

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "course"
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from make_course import HIDDEN_HINT, TEST_SOURCES  # noqa: E402

CELL = '''from nbcheck import check
check("shape", lambda: layer.weight.shape, expect=[3, 4], hint="out x in")
check("close", lambda: 0.1 + 0.2, expect=0.3, tol=1e-9)
### BEGIN HIDDEN TESTS
check("tied", lambda: {"a": 1, "b": 1}, same=["a", "b"], hint="SECRET-HINT")
nbcheck.check("bias", lambda: layer.bias.shape, expect=[3])
### END HIDDEN TESTS
check("after", lambda: 1, expect=1)
'''


def record(name, value=None, error=None):
    """A display output as the student's process records it for one check."""
    return {"output_type": "display_data", "metadata": {},
            "data": {OBSERVATION_MIME: {"name": name, "value": value, "error": error}, "text/plain": name}}


# --- the check helper ships unchanged ---------------------------------------------------------

def test_the_fixture_course_ships_the_graders_own_nbcheck():
    for copy in (FIXTURE / "source" / "demo" / "nbcheck.py", FIXTURE / "release" / "demo" / "nbcheck.py"):
        assert filecmp.cmp(copy, ROOT / "autograder" / "scoring" / "nbcheck.py", shallow=False), copy


# --- strip_criteria -----------------------------------------------------------------------------

def test_stripped_source_keeps_no_criterion_or_hint():
    stripped = strip_criteria(CELL)
    for secret in ("expect", "same", "tol", "hint", "out x in", "SECRET-HINT", "[3, 4]", "0.3", "1e-09", "[3]"):
        assert secret not in stripped, secret
    ast.parse(stripped)
    # what the student's process still needs: every check, by name, with its observation
    calls = [c for c in ast.walk(ast.parse(stripped)) if isinstance(c, ast.Call)
             and getattr(c.func, "id", getattr(c.func, "attr", None)) == "check"]
    assert [c.args[0].value for c in calls] == ["shape", "close", "tied", "bias", "after"]
    assert all(len(c.args) == 2 for c in calls)


@pytest.mark.parametrize("test_id", sorted(TEST_SOURCES))
def test_the_fixture_test_cells_strip_clean(test_id):
    stripped = strip_criteria(TEST_SOURCES[test_id])
    assert "expect" not in stripped and "hint" not in stripped and HIDDEN_HINT not in stripped
    assert [s.name for s in parse_checks(stripped)] == [s.name for s in parse_checks(TEST_SOURCES[test_id])]


def test_other_calls_keep_their_keywords():
    assert "expect=2" in strip_criteria("helper(1, expect=2)\ncheck('x', f, expect=3)")


# --- parse_checks ---------------------------------------------------------------------------------

def test_checks_are_read_in_order_with_their_criteria():
    specs = parse_checks(CELL)
    assert [(s.name, s.criteria, s.hint) for s in specs] == [
        ("shape", {"expect": [3, 4]}, "out x in"),
        ("close", {"expect": 0.3, "tol": 1e-9}, ""),
        ("tied", {"same": ["a", "b"]}, "SECRET-HINT"),
        ("bias", {"expect": [3]}, ""),
        ("after", {"expect": 1}, ""),
    ]


def test_hidden_checks_are_those_between_the_hidden_markers():
    assert [s.name for s in parse_checks(CELL) if s.hidden] == ["tied", "bias"]
    indented = "def t():\n    ### BEGIN HIDDEN TESTS\n    check('h', f, expect=1)\n    ### END HIDDEN TESTS\n" \
               "check('p', f, expect=1)"
    assert {s.name: s.hidden for s in parse_checks(indented)} == {"h": True, "p": False}


@pytest.mark.parametrize("source, message", [
    ("check(name, f, expect=1)", "name must be a string literal"),
    ("check('x', f, expect=compute())", "criteria must be literals"),
    ("check('x', f, expect=[1,", "not valid Python"),
])
def test_a_malformed_test_cell_is_an_error_of_the_master(source, message):
    with pytest.raises(TestCellError, match=message):
        parse_checks(source)


def test_a_test_cell_without_checks_is_an_error():
    with pytest.raises(TestCellError, match="states no check"):
        judge_cell("print('no checks here')", [])


# --- judge: plain data only --------------------------------------------------------------------------

def test_judge_compares_plain_data():
    assert judge([3, 4], expect=[3, 4]) == (True, "passed")
    assert judge(0.30000001, expect=0.3, tol=1e-6)[0]
    assert not judge(0.31, expect=0.3, tol=1e-6)[0]
    assert judge({"a": [1, 2]}, expect={"a": [1, 2]})[0]
    assert not judge({"a": [1, 2], "b": 0}, expect={"a": [1, 2]})[0]
    assert judge({"x": 5, "y": 5.0}, same=["x", "y"])[0]
    assert not judge({"x": 5, "y": 6}, same=["x", "y"])[0]


def test_judge_does_not_take_a_bool_for_a_number():
    assert not judge(True, expect=1)[0]
    assert not judge(1, expect=True)[0]
    assert not judge([1, 0], expect=[True, False])[0]


def test_judge_rejects_objects_that_are_not_plain_data_and_says_what_was_expected():
    passed, reason = judge(nbcheck.to_plain(torch.nn.Linear(2, 2)), expect={"w": [1, 2]})
    assert not passed
    assert reason.startswith("expected a dict of lists, got an object of type torch.nn.modules.linear.Linear")
    assert "return plain Python values" in reason


def test_a_subclass_of_a_plain_type_is_judged_as_that_type():
    """A correct answer in another shape earns its points: the natural OrderedDict right
    after state_dict(), a defaultdict, a named tuple, an IntEnum, numpy and torch scalars."""
    import collections
    import enum

    import numpy

    class Size(enum.IntEnum):
        FOUR = 4

    pair = collections.namedtuple("pair", "rows cols")
    assert judge(nbcheck.to_plain(collections.OrderedDict([("0.weight", [8, 4])])), expect={"0.weight": [8, 4]})[0]
    assert judge(nbcheck.to_plain(collections.defaultdict(list, bias=[8])), expect={"bias": [8]})[0]
    assert judge(nbcheck.to_plain(pair(3, 4)), expect=[3, 4])[0]
    assert judge(nbcheck.to_plain(Size.FOUR), expect=4)[0]
    assert judge(nbcheck.to_plain([numpy.int64(3), numpy.float32(0.5), torch.tensor(2.0)]), expect=[3, 0.5, 2.0])[0]


def test_an_overridden_eq_earns_only_the_real_value():
    """Subclasses are read through their base type's own methods: an __eq__ (or __iter__,
    items) that lies plays no part, and an object of no plain type is not data."""
    class AlwaysEqual:
        def __eq__(self, other):
            return True

    class EqualList(list):
        def __eq__(self, other):
            return True

        def __iter__(self):
            return iter([3, 4])

    class EqualInt(int):
        def __eq__(self, other):
            return True

    class LyingDict(dict):
        def items(self):
            return [("w", [3, 4])]

    for value in (AlwaysEqual(), EqualList([4, 3]), EqualInt(7), [EqualInt(7)], LyingDict(w=[4, 3])):
        plain = nbcheck.to_plain(value)
        assert not judge(plain, expect=[3, 4])[0] and not judge(plain, expect=2)[0]
        assert not judge(plain, expect={"w": [3, 4]})[0]
    assert nbcheck.to_plain(EqualList([4, 3])) == [4, 3] and nbcheck.to_plain(EqualInt(7)) == 7
    assert nbcheck.to_plain(torch.ones(2, 2)) == [[1.0, 1.0], [1.0, 1.0]]
    assert nbcheck.to_plain(torch.nn.Linear(4, 3).weight.shape) == [3, 4]
    assert nbcheck.to_plain(float("nan")) == "nan"


# --- judge_cell: verdicts from recorded observations -----------------------------------------------

def test_judge_cell_passes_when_every_recorded_observation_meets_its_criteria():
    outputs = [record("shape", [3, 4]), record("close", 0.3), record("tied", {"a": 1, "b": 1}),
               record("bias", [3]), record("after", 1)]
    verdict = judge_cell(CELL, outputs)
    assert verdict.passed and verdict.failed == []
    assert verdict.lines == ["[pass] shape", "[pass] close", "[pass] hidden test tied", "[pass] hidden test bias",
                             "[pass] after"]


def test_hidden_failures_show_only_their_name():
    outputs = [record("shape", [4, 3]), record("close", 0.3), record("tied", {"a": 1, "b": 2}),
               record("bias", [4]), record("after", 1)]
    verdict = judge_cell(CELL, outputs)
    assert not verdict.passed and verdict.failed == ["shape", "tied", "bias"]
    assert verdict.public_messages == ["shape: expected [3, 4], found [4, 3] Hint: out x in"]
    assert "[fail] hidden test tied" in verdict.lines and "[fail] hidden test bias" in verdict.lines
    assert "SECRET-HINT" not in "\n".join(verdict.lines) and "[4]" not in "\n".join(verdict.lines[2:4])


def test_missing_and_failed_observations_fail():
    outputs = [record("shape", error="NameError: name 'layer' is not defined"),
               {"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": []}]
    verdict = judge_cell(CELL, outputs, status="error")
    assert verdict.failed == ["shape", "close", "tied", "bias", "after"]
    assert "could not look at your answer: NameError" in verdict.public_messages[0]
    assert "did not run (ZeroDivisionError: division by zero)" in verdict.public_messages[1]
    assert "ran out of time" in judge_cell(CELL, [], status="timeout").public_messages[0]


def test_printed_imitations_of_a_record_are_ignored_and_the_first_record_wins():
    fake = {"output_type": "stream", "name": "stdout",
            "text": '[pass] shape\n{"application/vnd.nbcheck.observation+json": {"name": "shape", "value": [3, 4]}}'}
    fake_result = {"output_type": "execute_result", "execution_count": None, "metadata": {},
                   "data": {OBSERVATION_MIME: {"name": "close", "value": 0.3, "error": None}}}
    outputs = [fake, fake_result, record("shape", [4, 3]), record("shape", [3, 4])]
    verdict = judge_cell(CELL, outputs)
    assert "shape" in verdict.failed and "close" in verdict.failed


def test_a_failed_verdict_carries_an_error_output_so_nbgrader_scores_zero():
    verdict = judge_cell(CELL, [record("shape", [4, 3])])
    outputs = scoring.verdict_outputs(verdict)
    assert outputs[0]["output_type"] == "stream" and outputs[0]["text"].startswith("[fail] shape")
    assert outputs[-1]["output_type"] == "error" and outputs[-1]["ename"] == "ChecksFailed"
    assert [o["output_type"] for o in scoring.verdict_outputs(judge_cell("check('a', f, expect=1)",
                                                                        [record("a", 1)]))] == ["stream"]


def test_dict_observations_pass_as_the_pipeline_records_them():
    source = "check('shapes', f, expect={'w': [3, 4]})\ncheck('tied', g, same=['a', 'b'])"
    outputs = [nbformat.from_dict(record("shapes", {"w": [3, 4]})),
               nbformat.from_dict(record("tied", {"a": 7, "b": 7}))]
    verdict = judge_cell(source, outputs)
    assert verdict.passed, verdict.lines


# --- same checks against the master's run -----------------------------------------------------------

SAME = "check('tied', g, same=['reference', 'answer'], tol=1e-6)"


def test_a_made_up_pair_fails_against_the_masters_reference():
    """Both sides from the student's process: equal to each other, not to the master's run."""
    forged = {"tied": ({"reference": 0.0, "answer": 0.0}, None)}
    master = {"tied": ({"reference": 0.25, "answer": 0.25}, None)}
    assert judge_cell(SAME, [], observations=forged).passed  # what trusting the student would give
    verdict = judge_cell(SAME, [], observations=forged, references=master)
    assert not verdict.passed and "found 0.0 vs 0.25" in verdict.public_messages[0]


def test_the_students_own_reference_must_match_the_masters():
    """A process that patched the test's own computation changes its reference side too."""
    master = {"tied": ({"reference": 0.25, "answer": 0.25}, None)}
    right = {"tied": ({"reference": 0.25, "answer": 0.25 + 1e-9}, None)}
    skewed = {"tied": ({"reference": 0.5, "answer": 0.25}, None)}
    assert judge_cell(SAME, [], observations=right, references=master).passed
    assert not judge_cell(SAME, [], observations=skewed, references=master).passed


def test_a_check_without_a_reference_in_the_masters_run_fails_and_says_why():
    answer = {"tied": ({"reference": 1, "answer": 1}, None)}
    verdict = judge_cell(SAME, [], observations=answer, references={})
    assert not verdict.passed and "no trusted reference" in verdict.public_messages[0]
