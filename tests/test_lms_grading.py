"""A Canvas download graded end to end with a roster: the grade table keeps every student
of the download and the roster, and the grade files for the LMS are what nbgrader's own
``nbgrader export`` writes with our export plugins, byte for byte."""
import csv
import os
import subprocess
import sys
from pathlib import Path

from nbgrader.api import Gradebook

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
import make_course  # noqa: E402
from make_course import WRONG  # noqa: E402

ROSTER = ("lms_id,student_id,name\n"
          "12345,jdoe,\"Doe, Jane\"\n"
          "23456,bsmith,Bob Smith\n"
          "99999,aabsent,\"Absent, Al\"\n")
STUDENTS = ["jdoe", "bsmith", "aabsent"]  # who grade sends to the LMS: the roster's students


def graded_canvas_download(tmp_path_factory):
    base = tmp_path_factory.mktemp("canvas")
    download = base / "download"
    kit.write(kit.submission(), download / "doejane_12345_678901_demo.ipynb")
    kit.write(kit.submission(WRONG), download / "smithbob_LATE_23456_678950_demo.ipynb")
    kit.write(kit.submission(), download / "kimsam_45678_679020_demo.ipynb")
    (base / "roster.csv").write_text(ROSTER)
    return kit.run(download, base / "out", kit.course_copy(tmp_path_factory), jobs=1, roster=base / "roster.csv")


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def nbgrader_export(course, exporter, to):
    env = dict(os.environ, PYTHONPATH=str(make_course.REPO),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", "export", f"--exporter=autograder.outputs.lms_export.{exporter}",
         f"--to={to}", "--assignment=demo", *[f"--ExportPlugin.student={s}" for s in STUDENTS]],
        cwd=course.root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(to).read_bytes()


def test_a_canvas_download_graded_with_a_roster(tmp_path_factory, tmp_path):
    graded = graded_canvas_download(tmp_path_factory)
    full, wrong = sum(make_course.POINTS.values()) - make_course.POINTS["explain"], 0
    assert {s: (r["score"], r["status"]) for s, r in graded.csv.items()} == {
        "jdoe": (f"{full:g}", "needs manual grading"), "bsmith": (f"{wrong:g}", "needs manual grading"),
        "45678": ("0", "not on roster"), "aabsent": ("0", "no submission")}
    assert "LMS id 45678 (kimsam) is not on the roster; not graded" in graded.notes("45678")

    with Gradebook(graded.course.db_url) as gb:
        jane = gb.find_student("jdoe")
        assert (jane.first_name, jane.last_name, jane.lms_user_id) == ("Jane", "Doe", "12345")
        assert gb.find_student("aabsent").lms_user_id == "99999"

    canvas = read_csv(graded.out / "canvas_grades.csv")
    assert canvas[:2] == [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "demo"],
                          ["Points Possible", "", "", "", "", f"{sum(make_course.POINTS.values()):g}"]]
    assert sorted(canvas[2:]) == sorted([["Doe, Jane", "12345", "", "", "", f"{full:g}"],
                                         ["Smith, Bob", "23456", "", "", "", "0"],
                                         ["Absent, Al", "99999", "", "", "", ""]])
    lms_rows = read_csv(graded.out / "lms_grades.csv")
    assert lms_rows[0] == ["student_id", "lms_id", "name", "assignment", "points", "max_points"]
    assert ["jdoe", "12345", "Doe, Jane", "demo", f"{full:g}", f"{sum(make_course.POINTS.values()):g}"] in lms_rows

    for exporter, name in (("CanvasExportPlugin", "canvas_grades.csv"), ("LmsExportPlugin", "lms_grades.csv")):
        assert nbgrader_export(graded.course, exporter, tmp_path / name) == (graded.out / name).read_bytes()


def test_the_canvas_column_is_named_in_the_config_and_late_penalties_are_taken_off(tmp_path, monkeypatch):
    from traitlets.config import Config

    from autograder.outputs import lms_export

    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))  # alembic
    db = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(db) as gb:
        gb.add_assignment("demo")
        gb.add_notebook("demo", "demo")
        gb.add_grade_cell("q", "demo", "demo", max_score=4, cell_type="code")
        gb.add_student("jdoe", first_name="Jane", last_name="Doe", lms_user_id="12345")
        gb.add_submission("demo", "jdoe")
        gb.find_grade("q", "demo", "demo", "jdoe").auto_score = 3.5
        gb.find_submission_notebook("demo", "demo", "jdoe").late_submission_penalty = 1.25
        gb.db.commit()
    config = Config()
    config.CanvasExportPlugin.columns = {"demo": "Parameter access (4821)"}
    lms_export.write(config, db, "demo", ["jdoe"], tmp_path)
    assert read_csv(tmp_path / "canvas_grades.csv") == [
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Parameter access (4821)"],
        ["Points Possible", "", "", "", "", "4"],
        ["Doe, Jane", "12345", "", "", "", "2.25"]]
