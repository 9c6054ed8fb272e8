"""The bulk downloads of Canvas and Moodle, named exactly as each LMS names them (unpacked
and zipped), the roster that maps their ids to the course's, and the attempts of one
student. No code is run here; tests/test_lms_grading.py grades one download end to end."""
import os
import sys
import time
import zipfile
from pathlib import Path

import pytest

from autograder import intake
from autograder.intake import lms
from autograder.intake.roster import RosterError, Student, read_roster

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
from make_course import WRONG  # noqa: E402

RELEASE = kit.release_notebook()
HOUR = 3600


def collect(path, roster=None, file_times=False):
    return {s.student_id: s for s in intake.collect(path, "demo", RELEASE, roster=roster, file_times=file_times)}


def zipped(folder, archive):
    """A zip of the folder's contents, as the LMS sends it (no folder around them)."""
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(Path(folder).rglob("*")):
            z.write(path, path.relative_to(folder))
    return archive


def age(path, seconds):
    os.utime(path, (time.time() - seconds,) * 2)


def canvas_download(folder):
    """Canvas's "Download Submissions": <namekey>[_LATE]_<user id>_<attachment id>_<file name>."""
    kit.write(kit.submission(), folder / "doejane_12345_678901_demo.ipynb")
    kit.write(kit.submission(), folder / "smithbob_LATE_23456_678950_demo.ipynb")
    # Lee uploaded twice under one name: Canvas renamed the second upload demo-1.ipynb.
    kit.write(kit.submission(WRONG), folder / "leeann_34567_678990_demo.ipynb")
    kit.write(kit.submission(), folder / "leeann_34567_679010_demo-1.ipynb")
    age(folder / "leeann_34567_679010_demo-1.ipynb", HOUR)  # the upload order decides, not the file's time
    (folder / "kimsam_45678_679020_answers.pdf").write_bytes(b"%PDF-1.4")
    return folder


def moodle_download(folder):
    """Moodle's "Download all submissions", one folder per participant and plugin."""
    kit.write(kit.submission(), folder / "Jane Doe_1234567_assignsubmission_file_" / "demo.ipynb")
    (folder / "Jane Doe_1234567_assignsubmission_onlinetext_").mkdir()
    (folder / "Jane Doe_1234567_assignsubmission_onlinetext_" / "onlinetext.html").write_text("<p>see file</p>")
    # Moodle 4.1 and later drop the trailing underscore.
    kit.write(kit.submission(WRONG), folder / "Bob Smith_1234568_assignsubmission_file" / "demo.ipynb")
    kit.write(kit.submission(WRONG), folder / "Ann Lee_1234569_assignsubmission_file_" / "demo.ipynb")
    kit.write(kit.submission(), folder / "Ann Lee_1234569_assignsubmission_file_" / "demo (1).ipynb")
    age(folder / "Ann Lee_1234569_assignsubmission_file_" / "demo.ipynb", HOUR)
    return folder


@pytest.mark.parametrize("as_zip", [False, True], ids=["unpacked", "zip"])
def test_a_canvas_download_is_one_student_per_canvas_user(tmp_path, as_zip):
    path = canvas_download(tmp_path / "submissions")
    found = collect(zipped(path, tmp_path / "submissions.zip") if as_zip else path)
    assert sorted(found) == ["12345", "23456", "34567", "45678"]
    assert [(s.lms_id, s.name, s.late) for s in found.values()] == [
        ("12345", "doejane", False), ("23456", "smithbob", True), ("34567", "leeann", False),
        ("45678", "kimsam", False)]
    assert found["12345"].notebook is not None and found["12345"].notes == []
    assert found["45678"].status == "no notebook submitted"


@pytest.mark.parametrize("as_zip", [False, True], ids=["unpacked", "zip"])
def test_of_a_canvas_students_attempts_the_last_uploaded_is_graded(tmp_path, as_zip):
    path = canvas_download(tmp_path / "submissions")
    lee = collect(zipped(path, tmp_path / "submissions.zip") if as_zip else path)["34567"]
    assert lee.path == "leeann_34567_679010_demo-1.ipynb"
    assert kit.cell(lee.notebook, "make_layer").source != WRONG["make_layer"]
    assert lee.notes == ["2 attempts; graded the latest, leeann_34567_679010_demo-1.ipynb; "
                         "ignored leeann_34567_678990_demo.ipynb"]


def test_a_file_name_cannot_pass_for_another_canvas_user(tmp_path):
    """The student names only the end of the file; Canvas writes its owner's ids first."""
    kit.write(kit.submission(), tmp_path / "doejane_12345_678901_demo.ipynb")
    kit.write(kit.submission(WRONG), tmp_path / "malloryeve_66666_679999_doejane_12345_999999_demo.ipynb")
    found = collect(tmp_path)
    assert sorted(found) == ["12345", "66666"]
    assert kit.cell(found["12345"].notebook, "make_layer").source != WRONG["make_layer"]
    assert found["12345"].notes == []


def test_files_that_merely_look_like_canvas_names_stay_ordinary_students(tmp_path):
    kit.write(kit.submission(), tmp_path / "lab_1_2_final.ipynb")
    kit.write(kit.submission(), tmp_path / "alice.ipynb")
    found = collect(tmp_path)
    assert sorted(found) == ["alice", "lab_1_2_final"] and not any(s.lms_id for s in found.values())


@pytest.mark.parametrize("as_zip", [False, True], ids=["unpacked", "zip"])
def test_a_moodle_download_is_one_student_per_participant(tmp_path, as_zip):
    path = moodle_download(tmp_path / "submissions")
    found = collect(zipped(path, tmp_path / "submissions.zip") if as_zip else path, file_times=True)
    assert sorted(found) == ["1234567", "1234568", "1234569"]  # Jane's online text is not a second student
    assert [(s.name, s.status, s.late) for s in found.values()] == [
        ("Jane Doe", None, False), ("Bob Smith", None, False), ("Ann Lee", None, False)]
    ann = found["1234569"]
    assert ann.path == "Ann Lee_1234569_assignsubmission_file_/demo (1).ipynb"
    assert ann.notes == ["2 attempts; graded the latest, Ann Lee_1234569_assignsubmission_file_/demo (1).ipynb; "
                         "ignored Ann Lee_1234569_assignsubmission_file_/demo.ipynb"]
    assert ann.submitted_at.timestamp() > os.stat(path / "Ann Lee_1234569_assignsubmission_file_" / "demo.ipynb").st_mtime


def test_a_moodle_download_without_folders(tmp_path):
    kit.write(kit.submission(), tmp_path / "Jane Doe_1234567_assignsubmission_file_demo.ipynb")
    kit.write(kit.submission(), tmp_path / "Bob Smith_1234568_assignsubmission_file_demo.ipynb")
    found = collect(tmp_path)
    assert sorted(found) == ["1234567", "1234568"] and found["1234568"].name == "Bob Smith"


def test_a_moodle_zip_of_one_participant_is_not_taken_for_a_wrapping_folder(tmp_path):
    kit.write(kit.submission(), tmp_path / "one" / "Jane Doe_1234567_assignsubmission_file_" / "demo.ipynb")
    found = collect(zipped(tmp_path / "one", tmp_path / "one.zip"))
    assert list(found) == ["1234567"] and found["1234567"].notebook is not None


def test_the_collectors_serve_nbgraders_zip_collect_too():
    canvas = lms.CanvasCollector().collect("/extracted/smithbob_LATE_23456_678950_demo-2.ipynb")
    assert canvas == {"name": "smithbob", "late": True, "student_id": "23456", "file_id": "demo.ipynb",
                      "order": (678950, 2)}
    moodle = lms.MoodleCollector().collect("/extracted/Jane Doe_1234567_assignsubmission_file/demo.ipynb")
    assert (moodle["student_id"], moodle["file_id"], moodle["name"]) == ("1234567", "demo.ipynb", "Jane Doe")
    assert lms.CanvasCollector().collect("/extracted/smithbob_23456_678950_answers.pdf") is None


# --- the roster ------------------------------------------------------------------------------------

ROSTER = {"12345": Student("jdoe", "Doe, Jane"), "23456": Student("bsmith", "Bob Smith"),
          "34567": Student("alee"), "99999": Student("nobody", "Absent, Al")}


def test_the_roster_maps_lms_ids_to_the_courses_students(tmp_path):
    found = collect(canvas_download(tmp_path), roster=ROSTER)
    assert sorted(found) == ["45678", "alee", "bsmith", "jdoe", "nobody"]
    assert (found["jdoe"].lms_id, found["jdoe"].name, found["jdoe"].notebook is not None) == ("12345", "Doe, Jane",
                                                                                             True)
    assert found["alee"].name == "leeann"  # no name on the roster: the LMS's
    stranger = found["45678"]
    assert (stranger.status, stranger.lms_id, stranger.notebook) == ("not on roster", "45678", None)
    assert stranger.notes == ["LMS id 45678 (kimsam) is not on the roster; not graded"]
    absent = found["nobody"]
    assert (absent.status, absent.lms_id, absent.name) == ("no submission", "99999", "Absent, Al")


def test_with_files_named_by_student_the_roster_is_read_by_student_id(tmp_path):
    kit.write(kit.submission(), tmp_path / "jdoe.ipynb")
    kit.write(kit.submission(), tmp_path / "intruder.ipynb")
    found = collect(tmp_path, roster=ROSTER)
    assert found["jdoe"].notebook is not None and found["jdoe"].name == "Doe, Jane"
    assert found["intruder"].status == "not on roster" and found["bsmith"].status == "no submission"


def test_a_roster_file(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_bytes("\ufefflms_id,student_id,name,section\n12345,jdoe,\"Doe, Jane\",A\n23456,,Bob\n".encode())
    assert read_roster(roster) == {"12345": Student("jdoe", "Doe, Jane"), "23456": Student("23456", "Bob")}


@pytest.mark.parametrize("text, said", [
    ("student,id\nJane,1\n", "has no lms_id column"),
    ("lms_id,student_id\n1,a\n1,b\n", "line 3: lms_id '1' is on the roster twice"),
    ("lms_id,student_id\n1,a\n2,a\n", "line 3: student_id 'a' is on the roster twice"),
    ("lms_id,student_id\n1,../../etc\n", "line 2: student id '../../etc' may hold only"),
    ("lms_id,student_id\n,a\n", "line 2: no lms_id"),
    (b"lms_id\n\xff\xfe1\n", "is not UTF-8"),
])
def test_a_bad_roster_says_what_is_wrong_in_one_line(tmp_path, text, said):
    roster = tmp_path / "roster.csv"
    roster.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(RosterError, match=said) as caught:
        read_roster(roster)
    assert "\n" not in str(caught.value)
