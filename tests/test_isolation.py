"""Submissions isolated from each other and bounded: attacks by one student that must
neither reach the next one nor take more than the limits give it.

Most run two submissions in sequence on one warm worker (as a grading run does); the
temporary-folder ones grade a whole batch."""
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
from make_course import TESTS  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")


# --- the temporary folder --------------------------------------------------------------------------

def unusual_tmpdirs():
    name = "ag-" + os.urandom(4).hex()
    return {"two levels below /tmp": Path("/tmp") / name / "b",
            "in the home directory": Path.home() / name / "tmp"}


@pytest.mark.parametrize("where", unusual_tmpdirs().items(), ids=lambda item: item[0])
def test_grading_works_wherever_the_temporary_folder_is(where, tmp_path_factory, monkeypatch):
    _, tmpdir = where
    base, course = tmp_path_factory.mktemp("tmpdir"), kit.course_copy(tmp_path_factory)
    kit.write(kit.submission(), base / "submissions" / "correct.ipynb")
    tmpdir.mkdir(parents=True)
    try:
        monkeypatch.setenv("TMPDIR", str(tmpdir))
        monkeypatch.setattr(tempfile, "tempdir", None)
        graded = kit.run(base / "submissions", base / "out", course)
    finally:
        shutil.rmtree(tmpdir.parent, ignore_errors=True)
    assert kit.points(graded.rows["correct"]) == kit.auto_points_if(set(TESTS.values())), graded.notes("correct")
