"""The student's own check (``python -m autograder check``): the same executor and warden
as grading, public checks only."""
import shutil
import sys
from pathlib import Path

import pytest

from autograder.grading import check

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")


def copy_of(kind, tmp_path):
    folder = tmp_path / kind
    shutil.copytree(ROOT / kind / "param_access", folder)
    return folder / "param_access.ipynb"


def test_the_master_passes_every_public_check(tmp_path, capsys):
    assert check.main(copy_of("source", tmp_path), timeout=10) == 0
    printed = capsys.readouterr().out
    assert "6 of 6 questions pass their public checks" in printed and "FAIL" not in printed


def test_the_blank_release_passes_none_and_says_why(tmp_path, capsys):
    assert check.main(copy_of("release", tmp_path), timeout=10) == 1
    printed = capsys.readouterr().out
    assert "0 of 6 questions pass" in printed and "NotImplementedError" in printed
