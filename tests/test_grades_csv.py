"""grades.csv is for machines: notes are never cut, and an answer left as released reads
"not answered" rather than the error its stub raised."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")

HINT = "count numbers (numel), not tensors"  # the public check's hint, at the end of its note
LONG = "many words " * 45  # an error long enough that a note cut at 400 characters would lose the hint


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("csv")
    kit.write(kit.release_notebook(), base / "subs" / "blank.ipynb")
    kit.write(kit.submission({"count_params": f"def count_params(model):\n    raise ValueError({LONG!r})"}),
              base / "subs" / "long.ipynb")
    return kit.run(base / "subs", base / "out", kit.course_copy(tmp_path_factory))


def test_an_untouched_answer_reads_not_answered(graded):
    notes = graded.csv["blank"]["notes"]
    for answer, test in [("make_layer", "test_make_layer"), ("count_params", "test_count_params")]:
        assert f"{answer}: not answered" in notes and f"{test}: not answered" in notes
    assert "NotImplementedError" not in notes


def test_notes_are_never_cut(graded):
    note = next(n for n in graded.csv["long"]["notes"].split(" | ") if n.startswith("test_count_params:"))
    assert note.rstrip().endswith(f"Hint: {HINT}"), note[-200:]
    assert len(note) > 400
