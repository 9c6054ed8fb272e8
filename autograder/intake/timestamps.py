"""When a student handed in: nbgrader's ``timestamp.txt`` in their folder, else, if the
instructor trusts them, the notebook file's modification time.

``timestamp.txt`` is one line, written by nbgrader's exchange on the student's side
(``2025-03-01 23:59:00.123456 Europe/Paris``), or ISO 8601; without a time zone it is
UTC, as nbgrader reads it. It is read as hostile: a regular file of a few bytes only; a
zone name nbgrader would silently take as UTC (unknown, or an abbreviation such as CEST)
makes it unreadable rather than a guess. The grader then writes the time for nbgrader in
nbgrader's own UTC form, so that nbgrader never reads the student's line.
"""
import os
import stat
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

NAME = "timestamp.txt"
MAX_BYTES = 256  # nbgrader's line is under 50 bytes
# What a line that is no date, or a date out of range, or no known zone, raises.
UNREADABLE = (ValueError, OverflowError, LookupError, OSError)


def parse(text):
    """The moment a timestamp line names, in UTC (aware); ValueError, OverflowError,
    LookupError or OSError if it names none for sure."""
    text = text.strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        stamp, _, zone = text.rpartition(" ")
        when = datetime.fromisoformat(stamp).replace(tzinfo=ZoneInfo(zone))
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def read(path):
    """(the time, None) or (None, why not) of one timestamp.txt."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
            return None, f"{NAME} ignored: not a regular file of at most {MAX_BYTES} bytes"
        with open(path, "rb") as f:
            text = f.read(MAX_BYTES).decode("utf-8")
        if not text.strip():
            return None, f"{NAME} is empty"
        return parse(text), None
    except (UnicodeDecodeError, *UNREADABLE):
        return None, f"{NAME} unreadable (not a date and time in a known time zone)"


def submission_time(notebook, folder, file_times=False):
    """(time or None, where it came from, notes) of the notebook a student handed in:
    the nearest timestamp.txt from the notebook's folder up to the student's ``folder``
    (None for a notebook handed in alone), else its modification time if ``file_times``."""
    notes, place = [], notebook.parent
    while folder is not None and place.is_relative_to(folder):
        if (place / NAME).exists() or (place / NAME).is_symlink():
            when, problem = read(place / NAME)
            if when is not None:
                return when, NAME, notes
            notes.append(problem)
            break
        place = place.parent
    if file_times:
        try:
            return datetime.fromtimestamp(os.stat(notebook).st_mtime, timezone.utc), "file time", notes
        except UNREADABLE:  # gone, or dated beyond what a datetime holds
            notes.append("the notebook's modification time is unreadable")
    return None, "", notes
