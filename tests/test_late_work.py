"""Late work: the course's policy (each rule with numbers), the submission time read from
a student's hostile timestamp.txt, and two grading runs whose grades.csv and feedback pages
show how late each submission was and the points it lost."""
import os
import shutil
import sys
import threading
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from nbgrader.preprocessors import AssignLatePenalties
from traitlets.config import Config

from autograder import intake, settings
from autograder.grading.course import Course
from autograder.nbgrader_ext.late_policy import LatePolicy
from autograder.outputs import reports

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
import make_course  # noqa: E402

HOUR, DAY = 3600, 86400
SCORE = 6.0


def policy(**rules):
    return LatePolicy(config=Config({"LatePolicy": rules}))


# --- the policy ------------------------------------------------------------------------------------

def test_the_defaults_take_ten_percent_per_day_begun():
    assert (settings.LATE_PERCENT, settings.LATE_PER) == (10.0, "day")
    assert policy().late_submission_penalty("s", SCORE, 2 * HOUR) == 0.6  # 10% of 6: one day begun
    assert policy().late_submission_penalty("s", SCORE, DAY + 3 * HOUR) == 1.2  # two days begun


def test_per_hour():
    hourly = policy(percent=5.0, per="hour", grace_hours=0.0)
    assert hourly.percent_off(30 * 60) == 5.0
    assert hourly.percent_off(2.5 * HOUR) == 15.0  # three hours begun
    assert hourly.late_submission_penalty("s", SCORE, 2.5 * HOUR) == 0.9


def test_the_grace_period_forgives_then_the_clock_runs_from_the_due_date():
    assert settings.LATE_GRACE_HOURS == 1.0
    assert policy().percent_off(59 * 60) == 0.0
    assert policy().percent_off(HOUR) == 0.0
    assert policy().percent_off(HOUR + 1) == 10.0
    assert policy(per="hour", grace_hours=2.0).percent_off(2 * HOUR + 60) == 30.0  # third hour begun


def test_the_cap():
    assert settings.LATE_CAP_PERCENT == 50.0
    assert policy().percent_off(4 * DAY + 1) == 50.0  # five days begun: 50
    assert policy().percent_off(6 * DAY + 1) == 50.0  # seven days begun: 70, capped
    assert policy(cap_percent=25.0).late_submission_penalty("s", SCORE, 6 * DAY) == 1.5


def test_zero_after_the_cut_off():
    assert settings.LATE_ZERO_AFTER_DAYS == 7.0
    assert policy().late_submission_penalty("s", SCORE, 7 * DAY) == 3.0  # capped, not yet zero
    assert policy().late_submission_penalty("s", SCORE, 7 * DAY + 1) == SCORE
    assert policy(zero_after_days=0.0).late_submission_penalty("s", SCORE, 300 * DAY) == 3.0  # 0: never


def test_nbgraders_own_step_uses_the_policy_the_course_configures(tmp_path):
    root = tmp_path / "course"
    shutil.copytree(make_course.COURSE, root)
    with open(root / "nbgrader_config.py", "a") as f:
        f.write("\nc.LatePolicy.percent = 5\nc.LatePolicy.per = 'hour'\n")
    step = AssignLatePenalties(config=Course(root=root).config())
    step.init_plugin()
    assert isinstance(step.plugin_inst, LatePolicy)
    assert (step.plugin_inst.percent, step.plugin_inst.per, step.plugin_inst.cap_percent) == (5, "hour", 50)


@pytest.mark.parametrize("seconds, said", [(40, "40 s"), (30 * 60, "30 min"),
                                           (DAY + 3 * HOUR + 5 * 60, "1 d 3 h 5 min"), (2 * DAY, "2 d")])
def test_durations_read_as_people_write_them(seconds, said):
    assert reports.duration(seconds) == said


# --- the submission time ----------------------------------------------------------------------------

def tree_with(tmp_path, content, student="alice"):
    """An nbgrader submitted/ tree of one student whose timestamp.txt holds ``content``
    (bytes, or a function making the file)."""
    folder = tmp_path / "submitted" / student / "demo"
    kit.write(kit.submission(), folder / "demo.ipynb")
    if callable(content):
        content(folder / "timestamp.txt")
    elif content is not None:
        (folder / "timestamp.txt").write_bytes(content)
    return tmp_path


def collected(path, **options):
    return intake.collect(path, "demo", kit.release_notebook(), **options)[0]


@pytest.mark.parametrize("line, utc", [
    (b"2025-03-01 23:59:00.123456 Europe/Paris\n", datetime(2025, 3, 1, 22, 59, 0, 123456, timezone.utc)),
    (b"2025-03-01 23:59:00.000000 UTC", datetime(2025, 3, 1, 23, 59, tzinfo=timezone.utc)),
    (b"2025-03-01T23:59:00-05:00", datetime(2025, 3, 2, 4, 59, tzinfo=timezone.utc)),
    (b"2025-03-01 23:59:00", datetime(2025, 3, 1, 23, 59, tzinfo=timezone.utc)),  # no zone: UTC, as nbgrader
], ids=["nbgrader", "utc", "iso", "naive"])
def test_timestamp_txt_gives_the_submission_time(tmp_path, line, utc):
    alice = collected(tree_with(tmp_path, line))
    assert (alice.submitted_at, alice.time_source, alice.notes) == (utc, "timestamp.txt", [])


def fifo(path):
    os.mkfifo(path)


def link_to_dev_zero(path):
    path.symlink_to("/dev/zero")


def folder(path):
    path.mkdir()


ATTACKS = {
    "not a date": b"whenever",
    "an abbreviation nbgrader would take as UTC": b"2025-03-01 23:59:00.000000 CEST",
    "a zone that climbs out of the zone folder": b"2025-03-01 23:59:00 ../../../../etc/passwd",
    "a date out of range": b"0001-01-01 00:00:00+14:00",
    "not text": b"\xff\xfe\x00\x01",
    "empty": b"",
    "too long": b"2025-03-01 23:59:00 UTC" + b" " * 1000,
    "a fifo": fifo,
    "a link to a device": link_to_dev_zero,
    "a folder": folder,
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_hostile_timestamp_txt_is_a_note_and_no_time(tmp_path, attack):
    found = []
    reader = threading.Thread(target=lambda: found.append(collected(tree_with(tmp_path, ATTACKS[attack]))),
                              daemon=True)
    reader.start()
    reader.join(30)
    assert found, "intake blocked on timestamp.txt"
    alice = found[0]
    assert alice.status is None and alice.notebook is not None
    assert alice.submitted_at is None
    assert len(alice.notes) == 1 and alice.notes[0].startswith("timestamp.txt"), alice.notes


def test_a_timestamp_txt_beside_notebooks_handed_in_alone_belongs_to_no_one(tmp_path):
    kit.write(kit.submission(), tmp_path / "alice.ipynb")
    (tmp_path / "timestamp.txt").write_text("2025-03-01 23:59:00 UTC")
    assert collected(tmp_path).submitted_at is None


def test_a_zip_keeps_timestamp_txt(tmp_path):
    tree_with(tmp_path / "download", b"2025-03-01 23:59:00 UTC")
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted((tmp_path / "download").rglob("*")):
            z.write(path, path.relative_to(tmp_path / "download"))
    assert collected(archive).submitted_at == datetime(2025, 3, 1, 23, 59, tzinfo=timezone.utc)


def test_file_times_only_when_asked(tmp_path):
    tree_with(tmp_path, None)
    notebook = tmp_path / "submitted" / "alice" / "demo" / "demo.ipynb"
    os.utime(notebook, (1740873540, 1740873540))
    assert collected(tmp_path).submitted_at is None
    alice = collected(tmp_path, file_times=True)
    assert (alice.submitted_at, alice.time_source) == (datetime(2025, 3, 1, 23, 59, tzinfo=timezone.utc), "file time")
    one = kit.write(kit.submission(), tmp_path / "bob.ipynb")  # one notebook, graded on its own
    os.utime(one, (1740873540, 1740873540))
    assert collected(one, file_times=True).submitted_at == datetime(2025, 3, 1, 23, 59, tzinfo=timezone.utc)


# --- grading runs ------------------------------------------------------------------------------------

DUE = datetime(2025, 3, 1, 23, 59, tzinfo=timezone(timedelta(hours=1)))
HANDED_IN = {  # student -> how long after the due date (None: no timestamp.txt)
    "ontime": -timedelta(hours=1), "grace": timedelta(minutes=30), "late": timedelta(days=1, hours=3),
    "cutoff": timedelta(days=8), "notime": None}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs in a course of their own (a due date stays in the gradebook): one with the
    due date above; then, grading only what changed, the due date two days later and the
    late student's timestamp.txt gone."""
    base = tmp_path_factory.mktemp("late")
    root = base / "course"
    shutil.copytree(make_course.COURSE, root)
    subs = base / "subs"
    for student, after in HANDED_IN.items():
        folder = subs / student / "demo"
        kit.write(kit.submission(), folder / "demo.ipynb")
        if after is not None:
            stamp = (DUE + after).astimezone(ZoneInfo("America/New_York"))
            (folder / "timestamp.txt").write_text(stamp.strftime("%Y-%m-%d %H:%M:%S.%f") + " America/New_York\n")
    first = kit.run(subs, base / "out1", root, due=DUE)
    (subs / "late" / "demo" / "timestamp.txt").unlink()
    second = kit.run(subs, base / "out2", root, due=DUE + timedelta(days=2), force=False)
    return first, second


def test_grades_csv_says_how_late_and_the_penalty(runs):
    first, _ = runs
    said = {s: (r["late_by"], r["penalty"], r["score"]) for s, r in first.csv.items()}
    assert said == {"ontime": ("0", "0", "6"), "grace": ("30 min", "0", "6"), "late": ("1 d 3 h", "1.2", "4.8"),
                    "cutoff": ("8 d", "6", "0"), "notime": ("", "0", "6")}
    assert [q for q in first.csv["late"] if q in make_course.POINTS] == list(make_course.POINTS)
    assert "handed in 1 d 3 h late (2025-03-03 01:59 UTC, timestamp.txt; due 2025-03-01 22:59 UTC): " \
           "1.2 points off for late work" in first.notes("late")
    assert "no submission time known: not checked against the due date" in first.notes("notime")
    assert "30 min late" in first.notes("grace") and "no points off" in first.notes("grace")
    assert first.notes("ontime") == ""


def test_the_feedback_page_says_it(runs):
    first, _ = runs
    late = kit.visible_text(first.feedback_path("late").read_text())
    assert "handed in 1 d 3 h late" in late and "1.2 points off for late work" in late
    assert "Late submission penalty (Score: -1.2)" in late  # nbgrader's own line, from its gradebook
    assert "(Score: 4.8 / 6.0)" in late  # the written answer awaits grading: out of the total for now
    assert "no submission time known" in kit.visible_text(first.feedback_path("notime").read_text())


def test_a_new_due_date_grades_again(runs):
    _, second = runs
    assert (second.csv["cutoff"]["late_by"], second.csv["cutoff"]["penalty"]) == ("6 d", "3")  # capped, not zero
    assert second.csv["grace"]["late_by"] == "0"


def test_a_resubmission_without_time_is_not_judged_by_the_old_one(runs):
    _, second = runs
    assert (second.csv["late"]["late_by"], second.csv["late"]["penalty"], second.csv["late"]["score"]) == ("", "0", "6")
    assert "no submission time known" in second.notes("late")
