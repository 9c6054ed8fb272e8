"""Intake: from whatever an instructor downloaded to one readable notebook per student.

Accepted layouts (or a .zip of any of them): a folder of ``<student>.ipynb``; a folder
of ``<student>/`` folders holding notebooks; an nbgrader ``submitted/`` tree
(``<student>/<assignment>/*.ipynb``); the bulk download of Canvas or Moodle (``lms.py``).
Every problem becomes a note on the student, and a submission that cannot be graded at
all gets a status saying why; nothing raises.
"""
import codecs
import copy
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import nbformat
from nbgrader import utils

from autograder.intake import timestamps
from autograder.intake.lms import lms_files

MAX_NOTEBOOK_BYTES = 50 * 2**20
MAX_ZIP_BYTES = 2 * 2**30
# How deeply lists and objects may nest in a notebook's JSON (under 10 in a real one): the
# later steps that walk a notebook (nbformat's checks, copies, nbgrader) recurse.
MAX_NOTEBOOK_DEPTH = 64
TOO_DEEP = f"unreadable notebook (nested more than {MAX_NOTEBOOK_DEPTH} levels deep)"
# What reading a zip member that cannot be unpacked raises: damaged or lying about its size
# (BadZipFile, zlib.error, EOFError, OSError), compressed in an unknown way or encrypted
# (RuntimeError).
UNPACK_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, OSError)


@dataclass
class Submission:
    student_id: str
    path: str = ""  # the file graded, as named in the input
    notebook: nbformat.NotebookNode = None
    sha256: str = ""
    status: str = None  # None when gradable; otherwise why not
    notes: list = field(default_factory=list)
    lms_id: str = ""  # the id the LMS's download named the student by
    name: str = ""  # from the roster, else as the LMS wrote it
    late: bool = False  # the LMS marked the graded file late (Canvas)
    # When it was handed in (timezone-aware; None: not known) and where that came from; an
    # intake that knows better (an LMS's own record) sets these.
    submitted_at: datetime = None
    time_source: str = ""


NOT_ON_ROSTER = "not on roster"
NO_SUBMISSION = "no submission"


@dataclass
class Candidate:
    """One student's files, before any is read."""
    paths: list
    lms: object = None  # the LmsFile of the LMS's name, for a student of a bulk download
    order: dict = field(default_factory=dict)  # {path: the LMS's upload order}, where the LMS numbers them


def student_id_from(name):
    """A safe nbgrader student id from a file or folder name (accents dropped: Zoë -> Zoe)."""
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9_.@-]+", "_", name.strip()).strip("._")
    return cleaned or "unnamed"


def _entries(root):
    return [e for e in sorted(root.iterdir()) if not e.name.startswith((".", "__MACOSX"))]


def _notebooks_in(folder, assignment):
    inner = folder / assignment if (folder / assignment).is_dir() else folder
    # Hidden files and folders (.ipynb_checkpoints, macOS "._" forks) are no submission.
    return sorted(p for p in inner.rglob("*.ipynb")
                  if not any(part.startswith(".") for part in p.relative_to(inner).parts))


def _candidates(root, assignment):
    """{student id or LMS id: Candidate} found under a submissions folder, and whether the
    keys are LMS ids."""
    entries = _entries(root)
    lms = lms_files([e.name for e in entries])
    if lms:
        found = {}
        for entry in entries:
            named = lms[entry.name]
            candidate = found.setdefault(named.lms_id, Candidate([], named))
            paths = _notebooks_in(entry, "") if entry.is_dir() else [entry] if entry.suffix.lower() == ".ipynb" else []
            candidate.paths.extend(paths)
            candidate.order.update({p: named.order for p in paths if named.order is not None})
            if named.late:
                candidate.lms = named
        return found, True
    by_name = {}  # the file or folder name a student's work came under -> its notebooks
    for entry in entries:
        if entry.is_file() and entry.suffix.lower() == ".ipynb":
            by_name.setdefault(entry.stem, []).append(entry)
        elif entry.is_dir():
            by_name.setdefault(entry.name, []).extend(_notebooks_in(entry, assignment))
    # Names that differ only in what an id cannot hold ("Zoë", "Zoé") are different students;
    # a name that is the id itself keeps it: "bob!" must not take "bob" from bob.
    names = {}
    for name in by_name:
        names.setdefault(student_id_from(name), []).append(name)
    found = {}
    for student, same in names.items():
        for name in same:
            suffix = f"-{hashlib.sha256(name.encode()).hexdigest()[:6]}" if len(same) > 1 and name != student else ""
            found[student + suffix] = Candidate(by_name[name])
    return found, False


def _extract(zip_path, into):
    """Unpack a zip's notebooks into ``into``; other files become empty placeholders, as
    only their names matter (a folder holding no notebook is still a student). Return the
    folder to look in and {path: why its member could not be unpacked}."""
    into = into.resolve()
    damaged = {}
    with zipfile.ZipFile(zip_path) as archive:
        total = sum(info.file_size for info in archive.infolist())
        if total > MAX_ZIP_BYTES:
            raise ValueError(f"the zip would unpack to {total} bytes")
        for info in archive.infolist():
            target = (into / info.filename).resolve()
            if not target.is_relative_to(into):
                continue  # a path that climbs out of the folder
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.name == timestamps.NAME and info.file_size <= timestamps.MAX_BYTES:
                _unpack(archive, info, target)  # unreadable: empty, and noted as such
                continue
            if target.suffix.lower() != ".ipynb":
                target.touch()
                continue
            problem = _unpack(archive, info, target)
            if problem:
                damaged[target] = problem
            # Keep the dates: "the newest notebook" must mean the same as unzipped.
            stamp = time.mktime(info.date_time + (0, 0, -1))
            os.utime(target, (stamp, stamp))
    # A zip of one folder: look inside it (unless it is the one participant of Moodle's download).
    entries = _entries(into)
    inside = len(entries) == 1 and entries[0].is_dir() and not lms_files([entries[0].name])
    return (entries[0] if inside else into), damaged


def _unpack(archive, info, target):
    """Write one member, its declared size checked first; None, or why it could not be."""
    problem, data = _too_large(info.file_size), b""
    if not problem:
        try:
            with archive.open(info) as member:
                data = member.read(MAX_NOTEBOOK_BYTES)  # zipfile stops at the declared size and checks the CRC
        except UNPACK_ERRORS as exc:
            problem = f"damaged in the zip ({exc})"
    target.write_bytes(data)  # empty if it could not be unpacked: the student is still found
    return problem


def _too_large(size):
    if size > MAX_NOTEBOOK_BYTES:
        return f"file too large ({-(-size // 2**20)} MiB; the limit is {MAX_NOTEBOOK_BYTES // 2**20} MiB)"
    return None


def read_file(path):
    """(its bytes, None) or (None, why not): a regular file's size is checked before it is
    read, and no more is read than a notebook may hold."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return None, "not a regular file"
        size = info.st_size
        if size <= MAX_NOTEBOOK_BYTES:
            with open(path, "rb") as f:
                data = f.read(MAX_NOTEBOOK_BYTES + 1)  # it may have grown since
            size = len(data)
    except OSError as exc:
        return None, f"unreadable file ({exc.strerror})"
    problem = _too_large(size)
    return (None, problem) if problem else (data, None)


def read_notebook(path):
    """(notebook or None, notes, status) for one file."""
    data, status = read_file(path)
    return (None, [], status) if status else parse_notebook(data)


def parse_notebook(data):
    """(notebook or None, notes, status) for a file's bytes."""
    notes = []
    if not data.strip():
        return None, notes, "empty file"
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Windows Notepad's "Unicode"
            text = data.decode("utf-16")
            notes.append("file is UTF-16; read as such")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
        notes.append("file is not UTF-8; read as Windows-1252")
    if not text.lstrip().startswith("{"):
        return None, notes, "not a notebook (the file is not JSON)"
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, notes, f"unreadable notebook (malformed JSON: {exc.msg} at line {exc.lineno})"
    except ValueError as exc:  # a number of more digits than Python converts
        return None, notes, f"unreadable notebook (invalid JSON: {str(exc).split(';')[0]})"
    except RecursionError:
        return None, notes, TOO_DEEP
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        return None, notes, "not a notebook"
    if _nesting(raw) > MAX_NOTEBOOK_DEPTH:
        return None, notes, TOO_DEEP
    text = json.dumps(raw, ensure_ascii=False)
    # An escaped half of a UTF-16 pair ("\\ud800") reads as a character no UTF-8 file can hold.
    valid = text.encode("utf-8", "replace").decode("utf-8")
    if valid != text:
        text, raw = valid, json.loads(valid)
        notes.append("notebook held invalid Unicode (half of a surrogate pair); replaced by '?'")
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:
        nb = _repair(raw)
        if nb is None:
            return None, notes, f"unreadable notebook ({type(exc).__name__})"
        notes.append("notebook structure was invalid; outputs were dropped to read it")
    if not nb.cells:
        return None, notes, "empty notebook"
    invalid = _drop_invalid_nbgrader_metadata(nb)
    if invalid:
        notes.append(f"nbgrader metadata of {invalid} cell(s) was not valid and was ignored")
    return nb, notes, None


def _nesting(value):
    """How deeply lists and objects nest in ``value``: counted without recursion, which is
    what a notebook nested too deeply defeats; stops once past the limit."""
    deepest, todo = 0, [(value, 1)]
    while todo and deepest <= MAX_NOTEBOOK_DEPTH:
        item, depth = todo.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            todo.extend((child, depth + 1) for child in children)
    return deepest


def _drop_invalid_nbgrader_metadata(nb):
    """Remove nbgrader metadata without a string grade id, on which nbgrader would fail;
    return how many cells had some that was not even well formed (null, a list...)."""
    invalid = 0
    for cell in nb.cells:
        if "nbgrader" not in cell.metadata:
            continue
        meta = cell.metadata["nbgrader"]
        if not isinstance(meta, dict) or not isinstance(meta.get("grade_id"), str):
            invalid += not isinstance(meta, dict) or "grade_id" in meta
            del cell.metadata["nbgrader"]
    return invalid


def _repair(raw):
    """Keep each cell's type, source and metadata; drop what made the notebook invalid."""
    try:
        nb = nbformat.v4.new_notebook(metadata=raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {})
        for cell in raw["cells"]:
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}.get(
                cell.get("cell_type"), nbformat.v4.new_raw_cell)
            new = make(source)
            if isinstance(cell.get("metadata"), dict):
                new.metadata = nbformat.from_dict(cell["metadata"])
            nb.cells.append(new)
        nbformat.validate(nb)
        return nb
    except Exception:
        return None


def _grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _grade_ids(nb):
    return [_grade_id(c) for c in nb.cells if _grade_id(c) is not None]


def compare_with_release(nb, release):
    """Notes on how a submission's graded cells differ from the student version given out.

    What nbgrader cannot grade is also put right here, in ``nb``, as the notes say (nbgrader
    stops with an error on a duplicated or unknown grade id, on a solution cell marked as a
    test, and on a deleted test cell whose neighbour is deleted too): of duplicated cells
    only the first copy keeps its nbgrader metadata; metadata of cells not in the
    assignment is dropped; altered metadata is put back as released; deleted test, locked
    and hand-graded cells are put back from the release. A deleted answer cell is not:
    the student may have moved the answer to a cell of their own.
    """
    notes = []
    # The release's language: it names the lexer that highlights the student's code on the
    # feedback page, which is not the student's to choose (some lexers backtrack for minutes).
    nb.metadata["language_info"] = copy.deepcopy(release.metadata.get("language_info", {"name": "python"}))
    released = {_grade_id(c): c for c in release.cells if _grade_id(c) is not None}
    ours, theirs = list(released), _grade_ids(nb)
    duplicated = sorted({g for g in theirs if theirs.count(g) > 1})
    unknown = sorted({g for g in theirs if g not in released})
    seen = set()
    for cell in nb.cells:
        gid = _grade_id(cell)
        if gid is not None and (gid in seen or gid not in released):
            del cell.metadata["nbgrader"]
        seen.add(gid)
    if duplicated:
        notes.append(f"cells duplicated: {', '.join(duplicated)} (the first copy was graded; "
                     "the other copies ran as ordinary cells)")
    if unknown:
        notes.append(f"cells not in the assignment: {', '.join(unknown)} (ran as ordinary cells)")
    order = [g for g in dict.fromkeys(theirs) if g in released]
    if order != [g for g in ours if g in order]:
        notes.append("graded cells reordered")

    for cell in nb.cells:
        gid = _grade_id(cell)
        if gid is None:
            continue
        given = released[gid]
        flags = ("grade", "solution", "locked", "points")
        if any(cell.metadata.nbgrader.get(k) != given.metadata.nbgrader.get(k) for k in flags):
            cell.metadata["nbgrader"] = copy.deepcopy(given.metadata["nbgrader"])
            notes.append(f"cell metadata altered: {gid} (restored from the assignment)")
        if utils.is_locked(given) and cell.source != given.source:
            kind = "test cell" if utils.is_grade(given) else "locked cell"
            notes.append(f"{kind} altered: {gid} (restored from the assignment)")

    present = set(_grade_ids(nb))
    missing = [g for g in ours if g not in present]
    restored = [g for g in missing if utils.is_grade(released[g]) or utils.is_locked(released[g])]
    ids = {c.get("id") for c in nb.cells}
    for gid in restored:
        anchor = next((g for g in reversed(ours[:ours.index(gid)]) if g in present), None)
        at = 0 if anchor is None else next(i for i, c in enumerate(nb.cells) if _grade_id(c) == anchor) + 1
        cell = copy.deepcopy(released[gid])
        if cell.get("id") in ids:
            cell.id = nbformat.v4.nbbase.random_cell_id()
        nb.cells.insert(at, cell)
        present.add(gid)
    if restored:
        notes.append(f"cells deleted: {', '.join(restored)} (restored from the assignment)")
    lost = [g for g in missing if g not in restored]
    if lost:
        notes.append(f"answer cells deleted: {', '.join(lost)} (not restored: their tests ran without them)")
    return notes


def collect(submissions, assignment, release_nb, roster=None, file_times=False):
    """All students found in ``submissions`` (a folder or a .zip), each with a notebook or a
    status, and the time it was handed in if known (``file_times``: the notebook's
    modification time when its folder holds no timestamp.txt). ``roster``, {LMS id (for an
    LMS's download) or student id: roster.Student}: who is in the course; a submission of
    someone else is not graded, and a student on it without one is listed as such."""
    submissions = Path(submissions)
    if not submissions.exists():
        raise FileNotFoundError(f"no such file or folder: {submissions}")
    with tempfile.TemporaryDirectory(prefix="autograder-intake-") as scratch:
        damaged = {}  # zip members that could not be unpacked, and why
        if submissions.is_file() and submissions.suffix.lower() == ".ipynb":  # one student, named after it
            root = Path(scratch)
            shutil.copyfile(submissions, root / submissions.name)
            os.utime(root / submissions.name, ns=(0, os.stat(submissions).st_mtime_ns))  # --file-times reads it
        elif submissions.is_file():
            if not zipfile.is_zipfile(submissions):
                raise ValueError(f"{submissions} is neither a folder, a notebook nor a .zip file")
            root, damaged = _extract(submissions, Path(scratch))
        else:
            root = submissions
        if (root / "submitted").is_dir() and not any(root.glob("*.ipynb")):
            root = root / "submitted"
        wanted = {c.metadata.nbgrader["grade_id"] for c in release_nb.cells if "nbgrader" in c.metadata}
        found, by_lms_id = _candidates(root, assignment)
        if roster is not None and not by_lms_id:  # files named by student: the roster's student ids
            roster = {entry.student_id: entry for entry in roster.values()}
        subs = []
        for key, candidate in sorted(found.items()):
            entry = None if roster is None else roster.get(key)
            if roster is not None and entry is None:
                subs.append(_not_on_roster(key, candidate, by_lms_id))
                continue
            student = entry.student_id if entry else student_id_from(key)
            sub = _one_student(student, candidate, root, assignment, release_nb, wanted, damaged, file_times)
            sub.name = entry.name if entry and entry.name else candidate.lms.name if candidate.lms else ""
            sub.lms_id = key if by_lms_id else ""
            subs.append(sub)
        missing = [(key, entry) for key, entry in (roster or {}).items() if key not in found]
        subs.extend(Submission(entry.student_id, status=NO_SUBMISSION, name=entry.name,
                               lms_id=key if by_lms_id else "") for key, entry in missing)
        return subs


def _not_on_roster(key, candidate, by_lms_id):
    named = candidate.lms
    who = f"LMS id {key}" + (f" ({named.name})" if named and named.name else "") if by_lms_id else key
    return Submission(student_id_from(key), status=NOT_ON_ROSTER, lms_id=key if by_lms_id else "",
                      name=named.name if named else "", notes=[f"{who} is not on the roster; not graded"])


def _read(path, damaged):
    """(path, notebook or None, notes, status, the file's sha256) of one candidate file."""
    data, status = (None, damaged[path]) if path in damaged else read_file(path)
    if status:
        return path, None, [], status, ""
    return path, *parse_notebook(data), hashlib.sha256(data).hexdigest()


def _one_student(student, candidate, root, assignment, release_nb, wanted, damaged, file_times):
    paths = candidate.paths
    sub = Submission(student, late=bool(candidate.lms and candidate.lms.late))
    if not paths:
        sub.status = "no notebook submitted"
        return sub
    readable = [_read(path, damaged) for path in paths]
    good = [r for r in readable if r[1] is not None and wanted & set(_grade_ids(r[1]))]
    pool = good or [r for r in readable if r[1] is not None] or readable
    if candidate.lms:
        # Attempts: the LMS's upload order where it numbers them (Canvas), else the file's time.
        latest = lambda r: candidate.order.get(r[0]) or (Path(r[0]).stat().st_mtime,)  # noqa: E731
        pool.sort(key=latest, reverse=True)
        if len(paths) > 1:
            newest = max(readable, key=latest)
            which = "the latest" if pool[0] is newest else "the latest readable notebook of this assignment"
            others = ", ".join(str(Path(r[0]).relative_to(root)) for r in readable if r is not pool[0])
            sub.notes.append(f"{len(paths)} attempts; graded {which}, {Path(pool[0][0]).relative_to(root)}; "
                             f"ignored {others}")
    elif len(paths) > 1:
        # Several files: the one named like the assignment's notebook, else the newest.
        pool.sort(key=lambda r: (Path(r[0]).stem == assignment, Path(r[0]).stat().st_mtime), reverse=True)
        others = ", ".join(str(Path(r[0]).relative_to(root)) for r in readable if r is not pool[0])
        sub.notes.append(f"{len(paths)} notebooks found; graded {Path(pool[0][0]).relative_to(root)}, "
                         f"ignored {others}")
    path, nb, notes, status, sub.sha256 = pool[0]
    sub.path = str(Path(path).relative_to(root))
    sub.notes.extend(notes)
    own_folder = root / Path(sub.path).parts[0] if len(Path(sub.path).parts) > 1 else None
    sub.submitted_at, sub.time_source, notes = timestamps.submission_time(Path(path), own_folder, file_times)
    sub.notes.extend(notes)
    if status:
        sub.status = status
    elif not wanted & set(_grade_ids(nb)):
        sub.status = "not this assignment's notebook (none of its graded cells found)"
    else:
        sub.notebook = nb
        sub.notes.extend(compare_with_release(nb, release_nb))
    return sub
