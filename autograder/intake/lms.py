"""The bulk downloads of Canvas and Moodle: who each file belongs to, read from its name.

Canvas ("Download Submissions", lib/content_zipper.rb): one file per uploaded file,
``<namekey>[_LATE]_<user id>_<attachment id>_<file name>``; the name key is the sortable
name with everything but letters, digits and ``_`` removed, ``LATE`` marks late work, and
an anonymously graded assignment has ``anon_<anonymous id>`` for the user id. Canvas
renames a file uploaded again under a name the student already used (``name-1.ipynb``).

Moodle ("Download all submissions", mod/assign/classes/downloader.php): one folder per
participant, ``<Full Name>_<id>_assignsubmission_file[_]/`` (the trailing ``_`` before
Moodle 4.1), or with "Download submissions in folders" off, one file per upload,
``<Full Name>_<id>_assignsubmission_file_<file name>``; Moodle writes ``_`` in a name as a
space, and the id is the assignment's participant identifier.

Both are nbgrader collector plugins (``nbgrader zip_collect --collector=
autograder.intake.lms.CanvasCollector``), which ``grade`` uses on each top-level entry.
"""
import re
from dataclasses import dataclass

from nbgrader.plugins import FileNameCollectorPlugin
from traitlets import default

# The LMS, not the student, writes everything before the file name; the name key holds
# word characters only (a name that is all digits or has "_<digits>_" lost its underscores).
CANVAS = (r"(?:.*/)?(?:(?P<name>\w+?)_)??(?:(?P<late>(?i:LATE))_)?(?P<student_id>\d+|anon_[A-Za-z0-9]+)"
          r"_(?P<attachment>\d+)_(?P<file_id>[^/]+?)(?:-(?P<resubmission>\d+))?(?P<ext>\.[^./]*)?")
MOODLE = (r"(?:.*/)?(?P<name>[^/_]+)_(?P<student_id>\d+)_assignsubmission_(?P<plugin>[a-z]+)"
          r"(?:(?:_?/(?:[^/]+/)*|_)(?P<file_id>[^/]*))?")


class LmsCollector(FileNameCollectorPlugin):
    """nbgrader's collector, for the whole name only, with what the LMS says about the file."""

    def collect(self, submitted_file):
        return self.parse(submitted_file) if super().collect(submitted_file) else None

    def parse(self, path):
        """{student_id, file_id, name, late, order} read from the name, or None."""
        found = re.fullmatch(self.named_regexp, path)
        return self._read(found.groupdict()) if found else None


class CanvasCollector(LmsCollector):
    """A file of Canvas's download: its user id, name key, late mark and upload order."""

    @default("named_regexp")
    def _canvas(self):
        return CANVAS

    def _read(self, info):
        # Canvas numbers its files as they are uploaded, and a name reused gets "-1", "-2"...
        order = (int(info.pop("attachment")), int(info.pop("resubmission") or 0))
        info["file_id"] += info.pop("ext") or ""
        return {**info, "name": info["name"] or "", "late": info["late"] is not None, "order": order}


class MoodleCollector(LmsCollector):
    """A file or folder of Moodle's download: the participant's id and full name (a
    participant's online text comes in a folder of its own)."""

    @default("named_regexp")
    def _moodle(self):
        return MOODLE

    def _read(self, info):
        return {**info, "file_id": info["file_id"] or "", "late": False, "order": None}  # file times tell the order


@dataclass(frozen=True)
class LmsFile:
    lms: str  # "canvas" or "moodle"
    lms_id: str
    name: str  # as the LMS wrote it (Canvas: the name key)
    late: bool
    order: tuple = None  # Canvas's upload order; None: the file's time decides


def lms_files(names):
    """{name: LmsFile} when every top-level entry of a download is named by one LMS, else
    None: an ordinary folder whose files merely look alike stays an ordinary folder."""
    for lms, collector in (("canvas", CanvasCollector()), ("moodle", MoodleCollector())):
        parsed = {name: collector.parse(name) for name in names}
        if parsed and all(parsed.values()):
            return {name: LmsFile(lms, info["student_id"], info["name"].strip(), info["late"], info["order"])
                    for name, info in parsed.items()}
    return None
