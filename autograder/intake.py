"""Intake: from whatever an instructor downloaded to one readable notebook per student.

Accepted layouts (or a .zip of any of them): a folder of ``<student>.ipynb``; a folder
of ``<student>/`` folders holding notebooks; an nbgrader ``submitted/`` tree
(``<student>/<assignment>/*.ipynb``). Every problem becomes a note on the student, and a
submission that cannot be graded at all gets a status saying why; nothing raises.
"""
import hashlib
import json
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader import utils

MAX_NOTEBOOK_BYTES = 50 * 2**20
MAX_ZIP_BYTES = 2 * 2**30


@dataclass
class Submission:
    student_id: str
    path: str = ""  # the file graded, as named in the input
    notebook: nbformat.NotebookNode = None
    sha256: str = ""
    status: str = None  # None when gradable; otherwise why not
    notes: list = field(default_factory=list)


def student_id_from(name):
    """A safe nbgrader student id from a file or folder name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.@-]+", "_", name.strip()).strip("._")
    return cleaned or "unnamed"


def _candidates(root, assignment):
    """{student id: [(path, display name, mtime)]} found under a submissions folder."""
    found = {}

    def add(student, path):
        found.setdefault(student_id_from(student), []).append(path)

    for entry in sorted(root.iterdir()):
        if entry.name.startswith((".", "__MACOSX")):
            continue
        if entry.is_file() and entry.suffix.lower() == ".ipynb":
            add(entry.stem, entry)
        elif entry.is_dir():
            inner = entry / assignment if (entry / assignment).is_dir() else entry
            notebooks = sorted(p for p in inner.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            if notebooks:
                for notebook in notebooks:
                    add(entry.name, notebook)
            else:
                found.setdefault(student_id_from(entry.name), [])
    return found


def _extract(zip_path, into):
    with zipfile.ZipFile(zip_path) as archive:
        total = sum(info.file_size for info in archive.infolist())
        if total > MAX_ZIP_BYTES:
            raise ValueError(f"the zip would unpack to {total} bytes")
        for info in archive.infolist():
            target = (into / info.filename).resolve()
            if not target.is_relative_to(into.resolve()):
                continue  # a path that climbs out of the folder
            archive.extract(info, into)
    # A zip of one folder: look inside it.
    entries = [e for e in into.iterdir() if not e.name.startswith(("__MACOSX", "."))]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else into


def read_notebook(path):
    """(notebook or None, notes, status) for one file."""
    notes = []
    data = Path(path).read_bytes()
    if not data.strip():
        return None, notes, "empty file"
    if len(data) > MAX_NOTEBOOK_BYTES:
        return None, notes, f"file too large ({len(data) // 2**20} MiB)"
    try:
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
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        return None, notes, "not a notebook"
    try:
        nb = nbformat.reads(json.dumps(raw), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:
        nb = _repair(raw)
        if nb is None:
            return None, notes, f"unreadable notebook ({type(exc).__name__})"
        notes.append("notebook structure was invalid; outputs were dropped to read it")
    if not nb.cells:
        return None, notes, "empty notebook"
    return nb, notes, None


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


def _grade_ids(nb):
    return [c.metadata.nbgrader["grade_id"] for c in nb.cells
            if "nbgrader" in c.metadata and "grade_id" in c.metadata.get("nbgrader", {})]


def compare_with_release(nb, release):
    """Notes on how a submission's graded cells differ from the student version given out."""
    notes = []
    ours, theirs = _grade_ids(release), _grade_ids(nb)
    released = {c.metadata.nbgrader["grade_id"]: c for c in release.cells if "nbgrader" in c.metadata}
    duplicated = sorted({g for g in theirs if theirs.count(g) > 1})
    if duplicated:
        notes.append(f"cells duplicated: {', '.join(duplicated)} (the first copy was graded)")
    missing = [g for g in ours if g not in theirs]
    if missing:
        notes.append(f"cells deleted: {', '.join(missing)} (restored from the assignment)")
    order = [g for g in dict.fromkeys(theirs) if g in released]
    if order != [g for g in ours if g in order]:
        notes.append("graded cells reordered")
    seen = set()
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid not in released or gid in seen:
            continue
        seen.add(gid)
        given = released[gid]
        flags = ("grade", "solution", "locked", "points")
        if any(cell.metadata.nbgrader.get(k) != given.metadata.nbgrader.get(k) for k in flags):
            notes.append(f"cell metadata altered: {gid} (restored from the assignment)")
        elif utils.is_grade(given) and not utils.is_solution(given) and cell.source != given.source:
            notes.append(f"test cell altered: {gid} (restored from the assignment)")
    return notes


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def collect(submissions, assignment, release_nb):
    """All students found in ``submissions`` (a folder or a .zip), each with a notebook or a status."""
    submissions = Path(submissions)
    if not submissions.exists():
        raise FileNotFoundError(f"no such file or folder: {submissions}")
    scratch = tempfile.TemporaryDirectory(prefix="autograder-intake-")
    if submissions.is_file():
        if not zipfile.is_zipfile(submissions):
            raise ValueError(f"{submissions} is neither a folder nor a .zip file")
        root = _extract(submissions, Path(scratch.name))
    else:
        root = submissions
    if (root / "submitted").is_dir() and not any(root.glob("*.ipynb")):
        root = root / "submitted"
    wanted = {c.metadata.nbgrader["grade_id"] for c in release_nb.cells if "nbgrader" in c.metadata}
    results = []
    for student, paths in sorted(_candidates(root, assignment).items()):
        results.append(_one_student(student, paths, root, assignment, release_nb, wanted))
    scratch.cleanup()
    return results


def _one_student(student, paths, root, assignment, release_nb, wanted):
    sub = Submission(student)
    if not paths:
        sub.status = "no notebook submitted"
        return sub
    readable = []
    for path in paths:
        nb, notes, status = read_notebook(path)
        readable.append((path, nb, notes, status))
    good = [r for r in readable if r[1] is not None and wanted & set(_grade_ids(r[1]))]
    pool = good or [r for r in readable if r[1] is not None] or readable
    if len(paths) > 1:
        # Several files: the one named like the assignment's notebook, else the newest.
        pool.sort(key=lambda r: (Path(r[0]).stem == assignment, Path(r[0]).stat().st_mtime), reverse=True)
        others = ", ".join(str(Path(r[0]).relative_to(root)) for r in readable if r is not pool[0])
        sub.notes.append(f"{len(paths)} notebooks found; graded {Path(pool[0][0]).relative_to(root)}, "
                         f"ignored {others}")
    path, nb, notes, status = pool[0]
    sub.path, sub.sha256 = str(Path(path).relative_to(root)), _sha256(path)
    sub.notes.extend(notes)
    if status:
        sub.status = status
    elif not wanted & set(_grade_ids(nb)):
        sub.status = "not this assignment's notebook (none of its graded cells found)"
    else:
        sub.notebook = nb
        sub.notes.extend(compare_with_release(nb, release_nb))
    return sub
