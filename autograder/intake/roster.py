"""``--roster CSV``: the students of the course, and the ids an LMS knows them by.

A header row, then one row per student; ``lms_id`` is required, ``student_id`` (the id
in grades.csv and the gradebook; default: the LMS id) and ``name`` ("Last, First" or
"First Last") are optional; other columns are ignored. The LMS id is Canvas's user id,
or Moodle's participant id (the number in its download's folder names).
"""
import csv
import io
from dataclasses import dataclass

from autograder.intake import student_id_from

MAX_ROSTER_BYTES = 16 * 2**20
COLUMNS = ("lms_id", "student_id", "name")


@dataclass(frozen=True)
class Student:
    student_id: str
    name: str = ""


class RosterError(ValueError):
    """What is wrong with a roster file, in one line."""


def read_roster(path):
    """{LMS id: Student}; RosterError says what is wrong with the file."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_ROSTER_BYTES + 1)
    except OSError as exc:
        raise RosterError(f"cannot read roster {path}: {exc.strerror}") from None
    if len(data) > MAX_ROSTER_BYTES:
        raise RosterError(f"roster {path} is larger than {MAX_ROSTER_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError:
        raise RosterError(f"roster {path} is not UTF-8 text") from None
    try:
        return _parse(path, text)
    except csv.Error as exc:
        raise RosterError(f"roster {path} is not a readable CSV file ({exc})") from None


def _parse(path, text):
    reader = csv.DictReader(io.StringIO(text, newline=""), restval="")
    reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
    if "lms_id" not in reader.fieldnames:
        raise RosterError(f"roster {path} has no lms_id column (its header must name {', '.join(COLUMNS)})")
    roster, students = {}, {}
    for line, row in enumerate(reader, start=2):
        lms_id, name = row["lms_id"].strip(), row.get("name", "").strip()
        student = row.get("student_id", "").strip() or lms_id
        if not lms_id:
            raise RosterError(f"roster {path}, line {line}: no lms_id")
        if student != student_id_from(student):
            raise RosterError(f"roster {path}, line {line}: student id {student!r} may hold only letters, digits "
                              "and _ . @ - (and not start or end with . or _)")
        for seen, value, what in ((roster, lms_id, "lms_id"), (students, student, "student_id")):
            if value in seen:
                raise RosterError(f"roster {path}, line {line}: {what} {value!r} is on the roster twice")
        roster[lms_id] = students[student] = Student(student, name)
    return roster
