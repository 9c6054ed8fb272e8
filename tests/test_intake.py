"""Unit tests of intake (autograder/intake/): input layouts, student ids, the rule for
several notebooks, reading damaged files, and how a submission is compared with (and put
right against) the student version that was given out. No code is run here."""
import codecs
import hashlib
import json
import os
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import intake

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
from make_course import WRONG  # noqa: E402

RELEASE = kit.release_notebook()
HOUR = 3600


def collect(path):
    return {s.student_id: s for s in intake.collect(path, "demo", RELEASE)}


def zipped(folder, archive):
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(Path(folder).rglob("*")):
            z.write(path, path.relative_to(Path(folder).parent))
    return archive


def age(path, seconds):
    os.utime(path, (time.time() - seconds,) * 2)


# --- student ids ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("alice", "alice"),
    ("Jane Doe (2)", "Jane_Doe_2"),
    ("../../etc/passwd", "etc_passwd"),
    ("bob@uni.edu", "bob@uni.edu"),
    ("Zoë Ångström", "Zoe_Angstrom"),
    ("  .hidden.  ", "hidden"),
    ("???", "unnamed"),
    ("", "unnamed"),
])
def test_student_ids_are_safe(name, expected):
    assert intake.student_id_from(name) == expected


def test_names_that_clean_to_the_same_id_stay_different_students(tmp_path):
    kit.write(kit.submission(), tmp_path / "Zoë.ipynb")
    kit.write(kit.submission(WRONG), tmp_path / "Zoé.ipynb")
    found = collect(tmp_path)
    assert len(found) == 2 and all(s.startswith("Zoe-") for s in found)
    assert all(s.notebook is not None and not s.notes for s in found.values())


def test_a_name_that_is_the_id_keeps_it_against_lookalikes(tmp_path):
    kit.write(kit.submission(), tmp_path / "bob.ipynb")
    kit.write(kit.submission(WRONG), tmp_path / "bob!.ipynb")
    found = collect(tmp_path)
    assert sorted(found) == ["bob", f"bob-{hashlib.sha256(b'bob!').hexdigest()[:6]}"]
    assert Path(found["bob"].path).name == "bob.ipynb"


# --- layouts ---------------------------------------------------------------------------------------

def make_layouts(tmp_path):
    """The same two students in each accepted layout."""
    flat = tmp_path / "flat"
    kit.write(kit.submission(), flat / "alice.ipynb")
    kit.write(kit.submission(WRONG), flat / "bob.ipynb")
    (flat / "README.txt").write_text("downloaded from the LMS")
    folders = tmp_path / "folders"
    kit.write(kit.submission(), folders / "alice" / "demo.ipynb")
    kit.write(kit.submission(WRONG), folders / "bob" / "work" / "demo.ipynb")
    tree = tmp_path / "course" / "submitted"
    for student, answers in (("alice", None), ("bob", WRONG)):
        kit.write(kit.submission(answers), tree / student / "demo" / "demo.ipynb")
        kit.write(kit.submission(WRONG), tree / student / "demo" / ".ipynb_checkpoints" / "demo-checkpoint.ipynb")
        (tree / student / "demo" / "timestamp.txt").write_text("2026-01-01 10:00:00")
    return {"flat": flat, "folders": folders, "submitted tree": tree.parent}


@pytest.mark.parametrize("layout", ["flat", "folders", "submitted tree"])
@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_every_layout_finds_the_same_students(tmp_path, layout, as_zip):
    path = make_layouts(tmp_path)[layout]
    if as_zip:
        path = zipped(path, tmp_path / "download.zip")
    found = collect(path)
    assert sorted(found) == ["alice", "bob"]
    for student in found.values():
        assert student.status is None and student.notes == [] and student.notebook is not None
    assert kit.cell(found["bob"].notebook, "make_layer").source == WRONG["make_layer"]


def test_a_zip_with_debris_and_a_path_that_climbs_out(tmp_path):
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("alice.ipynb", nbformat.writes(kit.submission()))
        z.writestr("__MACOSX/._alice.ipynb", b"\x00\x05\x16\x07")
        z.writestr(".DS_Store", b"\x00")
        z.writestr("../../escaped.ipynb", nbformat.writes(kit.submission()))
    assert sorted(collect(archive)) == ["alice"]
    assert not (tmp_path / "escaped.ipynb").exists() and not (tmp_path.parent / "escaped.ipynb").exists()


def test_a_zip_that_would_unpack_too_large_is_refused(tmp_path, monkeypatch):
    archive = zipped(make_layouts(tmp_path)["flat"], tmp_path / "download.zip")
    monkeypatch.setattr(intake, "MAX_ZIP_BYTES", 1000)
    with pytest.raises(ValueError, match="would unpack"):
        intake.collect(archive, "demo", RELEASE)


def test_input_that_is_neither_folder_nor_zip(tmp_path):
    with pytest.raises(FileNotFoundError):
        intake.collect(tmp_path / "missing", "demo", RELEASE)
    (tmp_path / "grades.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="neither a folder, a notebook nor a .zip"):
        intake.collect(tmp_path / "grades.csv", "demo", RELEASE)


def test_a_student_folder_without_a_notebook(tmp_path):
    (tmp_path / "carol").mkdir()
    (tmp_path / "carol" / "answers.pdf").write_bytes(b"%PDF-1.4")
    carol = collect(tmp_path)["carol"]
    assert carol.notebook is None and carol.status == "no notebook submitted"


# --- several notebooks for one student ------------------------------------------------------------

def test_the_notebook_named_like_the_assignment_wins_over_a_newer_one(tmp_path):
    kit.write(kit.submission(), tmp_path / "alice" / "demo.ipynb")
    kit.write(kit.submission(WRONG), tmp_path / "alice" / "Untitled.ipynb")
    age(tmp_path / "alice" / "demo.ipynb", HOUR)
    alice = collect(tmp_path)["alice"]
    assert alice.path == "alice/demo.ipynb"
    assert alice.notes == ["2 notebooks found; graded alice/demo.ipynb, ignored alice/Untitled.ipynb"]


def test_otherwise_the_newest_notebook_wins(tmp_path):
    kit.write(kit.submission(), tmp_path / "alice" / "final.ipynb")
    kit.write(kit.submission(WRONG), tmp_path / "alice" / "draft.ipynb")
    age(tmp_path / "alice" / "draft.ipynb", HOUR)
    assert collect(tmp_path)["alice"].path == "alice/final.ipynb"


def test_in_a_zip_the_newest_is_told_by_the_dates_in_the_zip(tmp_path):
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as z:  # the newer one first: extraction order must not decide
        z.writestr(zipfile.ZipInfo("alice/final.ipynb", (2026, 3, 2, 12, 0, 0)), nbformat.writes(kit.submission()))
        z.writestr(zipfile.ZipInfo("alice/draft.ipynb", (2026, 3, 1, 12, 0, 0)),
                   nbformat.writes(kit.submission(WRONG)))
        z.writestr("bob.ipynb", nbformat.writes(kit.submission()))
    assert collect(archive)["alice"].path == "alice/final.ipynb"


def test_a_readable_notebook_of_this_assignment_wins_over_broken_or_foreign_ones(tmp_path):
    kit.write(kit.submission(), tmp_path / "alice" / "a.ipynb")
    (tmp_path / "alice" / "b.ipynb").write_text("{ not json")
    kit.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), tmp_path / "alice" / "c.ipynb")
    age(tmp_path / "alice" / "a.ipynb", HOUR)
    alice = collect(tmp_path)["alice"]
    assert alice.path == "alice/a.ipynb" and alice.notebook is not None and "3 notebooks found" in alice.notes[0]


def test_a_flat_file_and_a_folder_of_one_name_are_one_student(tmp_path):
    kit.write(kit.submission(WRONG), tmp_path / "alice.ipynb")
    kit.write(kit.submission(), tmp_path / "alice" / "demo.ipynb")
    found = collect(tmp_path)
    assert list(found) == ["alice"] and found["alice"].path == "alice/demo.ipynb"


# --- reading damaged files --------------------------------------------------------------------------

def read(tmp_path, data):
    path = tmp_path / "x.ipynb"
    path.write_bytes(data)
    return intake.read_notebook(path)


def test_encodings(tmp_path):
    text = nbformat.writes(kit.submission(explanation="Les paramètres liés: ça compte une fois."))
    for data, note in [(text.encode("utf-8"), None), (codecs.BOM_UTF8 + text.encode("utf-8"), None),
                       (text.encode("latin-1"), "file is not UTF-8; read as Windows-1252"),
                       (text.encode("utf-16"), "file is UTF-16; read as such")]:
        nb, notes, status = read(tmp_path, data)
        assert status is None and kit.cell(nb, "explain").source.startswith("Les paramètres liés: ça")
        assert notes == ([note] if note else [])


@pytest.mark.parametrize("data, status", [
    (b"", "empty file"),
    (b"  \n\t ", "empty file"),
    (b"%PDF-1.4\n", "not a notebook (the file is not JSON)"),
    (b'{"cells": [', "unreadable notebook (malformed JSON"),
    (b"[1, 2, 3]", "not a notebook"),
    (b'{"name": "x"}', "not a notebook"),
    (b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', "empty notebook"),
    (b'{"cells": [1, 2], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', "unreadable notebook"),
])
def test_what_cannot_be_read_says_why(tmp_path, data, status):
    nb, _, found = read(tmp_path, data)
    assert nb is None and found.startswith(status)


def test_a_notebook_with_invalid_outputs_is_repaired(tmp_path):
    raw = json.loads(nbformat.writes(kit.submission()))
    raw["cells"][3]["outputs"] = [{"output_type": "nonsense"}]
    nb, notes, status = read(tmp_path, json.dumps(raw).encode())
    assert status is None and notes == ["notebook structure was invalid; outputs were dropped to read it"]
    assert kit.cell(nb, "make_layer").source == kit.submission().cells[3].source


def test_invalid_nbgrader_metadata_is_ignored(tmp_path):
    raw = json.loads(nbformat.writes(kit.submission()))
    raw["cells"][4]["metadata"]["nbgrader"] = None
    raw["cells"][6]["metadata"]["nbgrader"] = {"grade_id": ["not", "a", "string"]}
    raw["cells"][7]["metadata"]["nbgrader"] = {"grade": False, "solution": False}  # no id: meaningless
    nb, notes, status = read(tmp_path, json.dumps(raw).encode())
    assert status is None and notes == ["nbgrader metadata of 2 cell(s) was not valid and was ignored"]
    assert all("nbgrader" not in nb.cells[i].metadata for i in (4, 6, 7))


# --- compared with the release, and put right ------------------------------------------------------

def grade_ids(nb):
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]


def test_the_language_of_the_feedback_page_is_the_releases():
    nb = kit.submission()
    nb.metadata["language_info"] = {"name": "scala", "pygments_lexer": "scala"}
    assert intake.compare_with_release(nb, RELEASE) == []
    assert nb.metadata["language_info"] == RELEASE.metadata["language_info"]


def test_an_untouched_submission_has_no_notes():
    nb = kit.submission()
    assert intake.compare_with_release(nb, RELEASE) == [] and grade_ids(nb) == grade_ids(RELEASE)


def test_duplicates_keep_their_metadata_on_the_first_copy_only():
    nb = kit.submission()
    copy = kit.deepcopy(kit.cell(nb, "test_tie"))
    copy.id = "again"
    nb.cells.append(copy)
    notes = intake.compare_with_release(nb, RELEASE)
    assert notes == ["cells duplicated: test_tie (the first copy was graded; the other copies ran as ordinary cells)"]
    assert grade_ids(nb) == grade_ids(RELEASE) and nb.cells[-1].source == copy.source


def test_cells_of_another_assignment_lose_their_metadata():
    nb = kit.submission()
    stranger = nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade_id": "q9", "grade": True,
                                                                          "points": 10, "solution": False}})
    nb.cells.append(stranger)
    assert intake.compare_with_release(nb, RELEASE) == ["cells not in the assignment: q9 (ran as ordinary cells)"]
    assert "nbgrader" not in nb.cells[-1].metadata


def test_altered_metadata_is_put_back_as_released():
    nb = kit.submission()
    kit.cell(nb, "make_layer").metadata.nbgrader.update(grade=True, solution=False, points=5)
    kit.cell(nb, "test_freeze").metadata.nbgrader["points"] = 100
    notes = intake.compare_with_release(nb, RELEASE)
    assert notes == ["cell metadata altered: make_layer (restored from the assignment)",
                     "cell metadata altered: test_freeze (restored from the assignment)"]
    for gid in ("make_layer", "test_freeze"):
        assert kit.cell(nb, gid).metadata.nbgrader == kit.cell(RELEASE, gid).metadata.nbgrader


def test_edited_locked_cells_are_noted():
    nb = kit.submission()
    kit.cell(nb, "test_count_params").source = "pass"
    kit.cell(nb, "setup").source = "import torch"
    assert intake.compare_with_release(nb, RELEASE) == [
        "locked cell altered: setup (restored from the assignment)",
        "test cell altered: test_count_params (restored from the assignment)"]


def test_deleted_cells_are_put_back_where_they_were_except_answers():
    nb = kit.submission()
    nb.cells = [c for c in nb.cells if c.get("id") not in ("setup", "tie", "test_tie", "explain")]
    notes = intake.compare_with_release(nb, RELEASE)
    assert notes == ["cells deleted: setup, test_tie, explain (restored from the assignment)",
                     "answer cells deleted: tie (not restored: their tests ran without them)"]
    assert grade_ids(nb) == [g for g in grade_ids(RELEASE) if g != "tie"]
    assert kit.cell(nb, "test_tie").source == kit.cell(RELEASE, "test_tie").source


def test_reordered_cells_are_noted():
    nb = kit.submission()
    nb.cells.append(nb.cells.pop(kit.index(nb, "make_layer")))
    assert intake.compare_with_release(nb, RELEASE) == ["graded cells reordered"]


def test_a_notebook_without_this_assignments_cells_is_not_graded(tmp_path):
    foreign = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "x = 1", metadata={"nbgrader": {"grade_id": "q1", "grade": False, "solution": True, "locked": False}})])
    kit.write(foreign, tmp_path / "dave.ipynb")
    dave = collect(tmp_path)["dave"]
    assert dave.notebook is None and dave.status.startswith("not this assignment's notebook")


# --- hostile files: each one is its student's problem, never the batch's ----------------------------

def nested(levels, leaf="[]"):
    """JSON of lists nested ``levels`` deep (the leaf counted as one level)."""
    return "[" * (levels - 1) + leaf + "]" * (levels - 1)


def with_metadata(value):
    """A correct submission with ``value`` in a cell's metadata, as JSON text."""
    raw = json.loads(nbformat.writes(kit.submission()))
    raw["cells"][0]["metadata"]["extra"] = "PLACEHOLDER"
    return json.dumps(raw).replace('"PLACEHOLDER"', value)


def graded_next_to_a_correct_one(tmp_path, name, data):
    """The students found in a folder holding ``name`` (these bytes) and a correct bob."""
    (tmp_path / name).write_bytes(data)
    kit.write(kit.submission(), tmp_path / "bob.ipynb")
    found = collect(tmp_path)
    assert found["bob"].status is None and found["bob"].notebook is not None
    return found


@pytest.mark.parametrize("text", [
    '{"cells": ' + nested(100_000) + "}",  # deeper than the JSON parser recurses
    with_metadata(nested(100_000)),
    with_metadata(nested(intake.MAX_NOTEBOOK_DEPTH - 3)),  # one level past the limit, 4 being above it
], ids=["cells", "metadata", "just past the limit"])
def test_a_notebook_nested_too_deeply_is_refused(tmp_path, text):
    alice = graded_next_to_a_correct_one(tmp_path, "alice.ipynb", text.encode())["alice"]
    assert alice.notebook is None and alice.status == intake.TOO_DEEP


def test_a_notebook_nested_up_to_the_limit_is_read(tmp_path):
    # the notebook, its cells, a cell, its metadata: the value starts 5 levels deep
    text = with_metadata(nested(intake.MAX_NOTEBOOK_DEPTH - 4))
    assert intake._nesting(json.loads(text)) == intake.MAX_NOTEBOOK_DEPTH
    nb, _, status = read(tmp_path, text.encode())
    assert status is None and nb is not None


def test_a_number_too_long_to_convert_is_a_status(tmp_path):
    alice = graded_next_to_a_correct_one(tmp_path, "alice.ipynb", with_metadata("1" * 5000).encode())["alice"]
    assert alice.notebook is None and alice.status.startswith("unreadable notebook (invalid JSON: Exceeds the limit")


def test_half_a_surrogate_pair_is_replaced(tmp_path):
    """An escaped lone surrogate reads as a character no UTF-8 file can hold, and grading
    writes the notebook as UTF-8."""
    nb, notes, status = read(tmp_path, with_metadata(r'"I \ud800 think"').encode())
    assert status is None and notes == ["notebook held invalid Unicode (half of a surrogate pair); replaced by '?'"]
    assert nb.cells[0].metadata["extra"] == "I ? think"
    json.dumps(nb, ensure_ascii=False).encode("utf-8")


def test_a_folder_named_like_a_notebook_is_a_status(tmp_path):
    (tmp_path / "alice" / "demo.ipynb").mkdir(parents=True)
    kit.write(kit.submission(), tmp_path / "bob.ipynb")
    found = collect(tmp_path)
    assert found["alice"].status == "not a regular file" and found["bob"].status is None


READ_UNDER_A_MEMORY_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
from autograder import intake
print(intake.read_notebook(sys.argv[1])[2])
"""


def test_a_file_larger_than_the_limit_is_refused_before_it_is_read(tmp_path):
    """A sparse file of 8 GiB, read under a 2 GiB memory limit: reading it whole fails."""
    huge = tmp_path / "alice.ipynb"
    with open(huge, "wb") as f:
        f.truncate(8 * 2**30)
    done = subprocess.run([sys.executable, "-c", READ_UNDER_A_MEMORY_LIMIT, str(huge)], capture_output=True,
                          text=True, cwd=kit.make_course.REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "file too large (8192 MiB; the limit is 50 MiB)"


def lying_zip(archive, name, data, declared):
    """A zip holding ``name`` whose central directory declares ``declared`` bytes for it, and a correct bob."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
        z.writestr("bob.ipynb", nbformat.writes(kit.submission()))
    raw = bytearray(archive.read_bytes())
    entry = raw.index(b"PK\x01\x02")  # the first member's central directory record
    struct.pack_into("<I", raw, entry + 24, declared)  # its uncompressed size
    archive.write_bytes(raw)
    return archive


def test_a_zip_member_that_lies_about_its_size_is_a_status(tmp_path):
    archive = lying_zip(tmp_path / "download.zip", "alice.ipynb", nbformat.writes(kit.submission()), 100)
    found = collect(archive)
    assert found["alice"].notebook is None and found["alice"].status.startswith("damaged in the zip (Bad CRC-32")
    assert found["bob"].status is None


def test_a_zip_member_declared_larger_than_the_limit_is_not_unpacked(tmp_path):
    archive = lying_zip(tmp_path / "download.zip", "alice.ipynb", nbformat.writes(kit.submission()),
                        intake.MAX_NOTEBOOK_BYTES + 1)
    found = collect(archive)
    assert found["alice"].status == "file too large (51 MiB; the limit is 50 MiB)" and found["bob"].status is None
