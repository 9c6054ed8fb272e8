"""Files built to stop intake, end to end: each is graded in a ``grade`` run next to a
correct bystander, once from a folder and once from a .zip of it. Each must become its
student's status (with a row, a csv line and a feedback page saying why), and the batch
must finish for everyone. The runs use a temporary copy of tests/fixtures/course/.
"""
import json
import random
import struct
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
from make_course import TESTS  # noqa: E402

from autograder import intake  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")

NESTED = '{"cells": ' + "[" * 100_000 + "]" * 100_000 + "}"
FULL_MARKS = kit.auto_points_if(set(TESTS.values()))


def with_metadata(value):
    """A correct submission with ``value`` (JSON text) in its first cell's metadata."""
    raw = json.loads(nbformat.writes(kit.submission()))
    raw["cells"][0]["metadata"]["extra"] = "PLACEHOLDER"
    return json.dumps(raw).replace('"PLACEHOLDER"', value)


def nested_to_the_limit():
    """The notebook, its cells, a cell, its metadata: 4 levels above the value."""
    levels = intake.MAX_NOTEBOOK_DEPTH - 4
    return with_metadata("[" * (levels - 1) + "[]" + "]" * (levels - 1))


# {student: (the file's bytes, what their status must say)}; None: graded in full.
CASES = {
    "nested": (NESTED.encode(), intake.TOO_DEEP),
    "nested_metadata": (with_metadata("{\"a\": " * 100_000 + "1" + "}" * 100_000).encode(), intake.TOO_DEEP),
    "long_number": (with_metadata("9" * 100_000).encode(), "unreadable notebook (invalid JSON"),
    "binary": (random.Random(7).randbytes(64 * 1024), "not a notebook"),
    "surrogate": (with_metadata(r'"\udc80"').encode(), None),
    "at_the_limit": (nested_to_the_limit().encode(), None),
    "by_full": (nbformat.writes(kit.submission()).encode(), None),
}
TOO_LARGE = "file too large"
LIAR = "damaged in the zip (Bad CRC-32"


def as_folder(base):
    folder = base / "submissions"
    folder.mkdir()
    for student, (data, _) in CASES.items():
        (folder / f"{student}.ipynb").write_bytes(data)
    with open(folder / "too_large.ipynb", "wb") as f:  # sparse: no disk used
        f.truncate(intake.MAX_NOTEBOOK_BYTES + 1)
    return folder


def as_zip(base):
    """The same files in a zip, with a first member that declares 100 bytes and holds more."""
    archive = base / "submissions.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("liar.ipynb", nbformat.writes(kit.submission()))
        for student, (data, _) in CASES.items():
            z.writestr(f"{student}.ipynb", data)
        z.writestr("too_large.ipynb", b" " * (intake.MAX_NOTEBOOK_BYTES + 1))
    raw = bytearray(archive.read_bytes())
    struct.pack_into("<I", raw, raw.index(b"PK\x01\x02") + 24, 100)  # the liar's uncompressed size
    archive.write_bytes(raw)
    return archive


@pytest.fixture(scope="module", params=[as_folder, as_zip], ids=["folder", "zip"])
def run(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"unreadable-{request.param.__name__}")
    expected = {student: status for student, (_, status) in CASES.items()}
    expected["too_large"] = TOO_LARGE
    if request.param is as_zip:
        expected["liar"] = LIAR
    graded = kit.run(request.param(base), base / "out", kit.course_copy(tmp_path_factory), timeout=3.0)
    return graded, expected


def test_the_batch_finishes_with_a_row_and_a_page_for_everyone(run):
    graded, expected = run
    assert set(graded.rows) == set(graded.csv) == set(expected)
    assert {p.stem for p in (graded.out / "feedback").glob("*.html")} == set(expected)
    assert (graded.out / "report.html").exists()


def test_each_unreadable_file_is_its_students_status(run):
    graded, expected = run
    for student, status in expected.items():
        if status is None:
            continue
        row = graded.rows[student]
        assert row.status.startswith(status), (student, row.status)
        assert graded.csv[student]["status"] == row.status
        assert row.score == 0 and set(row.questions.values()) == {0.0}
        assert row.status in kit.visible_text(graded.feedback_path(student).read_text())


def test_readable_notebooks_are_graded_in_full(run):
    graded, expected = run
    for student in (s for s, status in expected.items() if status is None):
        assert kit.points(graded.rows[student]) == FULL_MARKS, student
    assert "replaced by '?'" in graded.notes("surrogate")
