"""Gradescope: an autograder bundle that grades with the same core as ``grade``.

``build(assignment, output)`` writes a zip that follows Gradescope's autograder
specification (both scripts at the root of the archive)::

    setup.sh            run once when Gradescope builds the image: a Python >= 3.11, a
                        virtual environment with the pinned requirements, bubblewrap
    run_autograder      run for each submission: grades the notebook in
                        $AUTOGRADER_ROOT/submission/ and writes
                        $AUTOGRADER_ROOT/results/results.json (AUTOGRADER_ROOT: /autograder)
    requirements.txt    the course's pins, less what only development needs
    constraints.txt     every other package grading installs, at the version it had here
    gradescope.json     the assignment and the settings the bundle was built with
    autograder/  nbgrader_config.py  source/<assignment>/  release/<assignment>/

Gradescope unpacks the zip in /autograder/source, which is the course directory of the
run: ``run_autograder`` grades with ``grade.run`` (nbgrader's Autograde with our
preprocessors) in a throwaway work directory, and turns the student's row and autograded
notebook into results.json (``results_json``). One test entry per question: the public checks' messages, and for hidden
checks only whether they passed. Questions graded by a hidden check show after the
visibility chosen at build time (default ``after_published``); the others at once.
Questions graded by hand are listed with no points (they are not the autograder's). A
submission that cannot be graded, or a failure of the grader itself, still gives a valid
results.json with a score of 0 and an output that says why.
"""
import argparse
import importlib.metadata
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from pathlib import Path

import nbformat

from autograder import graded_metadata
from autograder.scoring import nbcheck
from autograder.execution import sandbox
from autograder import settings
from autograder.grading.course import REPO_ROOT, Course
from autograder.execution.sandbox import Limits

log = logging.getLogger(__name__)

CONFIG_NAME = "gradescope.json"
STUDENT = "student"  # the one student of a Gradescope run
# Pinned in the course's requirements.txt for development only: left out of the bundle
# unless a package that grading installs needs them (then they stay, pinned).
DEVELOPMENT_ONLY = {"jupyterlab", "playwright", "pytest", "pytest-xdist", "nbval"}
SKIPPED = {"__pycache__", ".ipynb_checkpoints", "gradebook.db", "feedback"}
ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed, so that the same inputs give the same zip
HIDDEN_LINE = re.compile(r"^\[(pass|fail)\] hidden test ")

TEMPLATES = Path(__file__).resolve().parent / "templates"  # the shell scripts the bundle ships
SETUP_SH = (TEMPLATES / "setup.sh").read_text()
RUN_AUTOGRADER = (TEMPLATES / "run_autograder").read_text()


# --- Building the bundle ---

def build(assignment, output, hidden_visibility=settings.HIDDEN_VISIBILITY, *, course_root=None,
          timeout=None, memory_mb=None):
    """``timeout``, ``memory_mb``: None leaves them to the course's nbgrader_config.py."""
    """Write the Gradescope autograder zip of ``assignment`` to ``output``; return its path."""
    if hidden_visibility not in settings.VISIBILITIES:
        raise ValueError(f"hidden_visibility must be one of {', '.join(settings.VISIBILITIES)}")
    root = Path(course_root or REPO_ROOT).resolve()
    master = Course(root=root).master(assignment)
    release = root / "release" / assignment / master.name
    if not release.exists():
        raise SystemExit(f"error: {release} is missing; generate the student version first (make release)")
    pins = root / "requirements.txt"
    requirements, constraints = bundle_requirements(pins if pins.exists() else REPO_ROOT / "requirements.txt")
    config = {"assignment": assignment, "notebook": master.name, "hidden_visibility": hidden_visibility,
              "timeout": timeout, "memory_mb": memory_mb}

    entries = {"setup.sh": (SETUP_SH, 0o755), "run_autograder": (RUN_AUTOGRADER, 0o755),
               "requirements.txt": (requirements, 0o644), "constraints.txt": (constraints, 0o644),
               CONFIG_NAME: (json.dumps(config, indent=2) + "\n", 0o644)}
    package = Path(__file__).resolve().parents[1]
    for path in _files(package):  # the grading package, its templates included
        entries[f"autograder/{path.relative_to(package).as_posix()}"] = (path.read_bytes(), 0o644)
    entries["nbgrader_config.py"] = ((root / "nbgrader_config.py").read_bytes(), 0o644)
    for folder in (root / "source" / assignment, root / "release" / assignment):
        for path in _files(folder):
            entries[path.relative_to(root).as_posix()] = (path.read_bytes(), 0o644)
    # The check helper ships beside each notebook (the Makefile copies it on release).
    for folder in ("source", "release"):
        entries.setdefault(f"{folder}/{assignment}/nbcheck.py", ((package / "scoring" / "nbcheck.py").read_bytes(), 0o644))

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            data, mode = entries[name]
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.create_system = 3  # Unix, so that unzip restores the modes
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    log.info("wrote %s (%d files) for %s", output, len(entries), assignment)
    return output


def _files(folder):
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and not SKIPPED & set(path.relative_to(folder).parts) and path.suffix != ".pyc":
            yield path


def _name(requirement):
    return re.split(r"[\s<>=!~;\[@]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def bundle_requirements(path):
    """(requirements.txt, constraints.txt) texts: the pins grading needs, and the rest locked."""
    from packaging.requirements import Requirement

    pins = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pins.append(line)
    kept = [p for p in pins if _name(p) not in DEVELOPMENT_ONLY]
    closure = _closure([_name(p) for p in kept], Requirement)
    needed = [p for p in pins if _name(p) in DEVELOPMENT_ONLY and _name(p) in closure]
    dropped = [_name(p) for p in pins if _name(p) in DEVELOPMENT_ONLY and _name(p) not in closure]
    closure |= _closure([_name(p) for p in needed], Requirement)
    head = ("# Exact pins from the course's requirements.txt, less what only development needs "
            f"({', '.join(dropped) or 'nothing'})"
            + (f"; kept because grading's packages need them: {', '.join(_name(p) for p in needed)}" if needed else "")
            + ".\n")
    requirements = head + "".join(f"{p}\n" for p in kept + needed)
    direct = {_name(p) for p in kept + needed}
    locked = []
    for name in sorted(closure - direct):
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        locked.append(f"{name}=={version.split('+')[0]}\n")
    constraints = ("# Every other package that grading installs, at the version it had where "
                   "this bundle was built.\n" + "".join(locked))
    return requirements, constraints


def _closure(names, Requirement):
    """Names of the installed distributions ``names`` need, themselves included."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name.lower().replace("_", "-"))
    return seen


# --- Grading one Gradescope submission ---

def run_autograder(root):
    """Grade ``root``/submission with the bundle in ``root``/source; write results.json."""
    started = time.monotonic()
    root = Path(root).resolve()
    bundle = root / "source"
    results_path = root / "results" / "results.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    config, master_nb = {}, None
    try:
        config = json.loads((bundle / CONFIG_NAME).read_text())
        master_nb = nbformat.read(bundle / "source" / config["assignment"] / config["notebook"], as_version=4)
        results = _grade(root, bundle, config, master_nb)
        code = 0
    except Exception:
        traceback.print_exc(file=sys.stdout)  # results/stdout: for the instructor only
        results = _results_for_failure(config, master_nb)
        code = 1
    results["execution_time"] = round(time.monotonic() - started)
    tmp = results_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(results_path)
    print(f"wrote {results_path}: score {results.get('score', 0):g}")
    return code


def _grade(root, bundle, config, master_nb):
    from autograder.grading import grade
    from autograder.outputs import reports

    assignment = config["assignment"]
    if not _sandbox_usable():
        _without_sandbox(root, bundle)
    with tempfile.TemporaryDirectory(prefix="gradescope-") as scratch:
        scratch = Path(scratch)
        staged = scratch / "submissions" / STUDENT
        if (root / "submission").is_dir():
            shutil.copytree(root / "submission", staged, symlinks=True)
        else:
            staged.mkdir(parents=True)
        course = Course(root=bundle, work=scratch / "work", timeout=config.get("timeout"),
                        memory_mb=config.get("memory_mb"), jobs=1, hidden=[str(root)])
        limits = course.limits()
        rows = grade.run(scratch / "submissions", assignment, scratch / "out", course=course, force=True,
                         lms_grades=False)
        row = rows[0]
        print(reports.grade_table(rows, grade.question_ids(master_nb)))
        for note in row.notes:
            print(f"note: {note}")
        graded_path = course.autograded_dir(assignment, row.student_id) / config["notebook"]
        graded_nb = None
        if graded_path.exists() and not row.status.startswith("grading failed"):
            graded_nb = nbformat.read(graded_path, as_version=4)
        return results_json(row, master_nb, graded_nb, config.get("hidden_visibility", settings.HIDDEN_VISIBILITY),
                            notebook=config["notebook"], limits=limits)


def _sandbox_usable():
    """bwrap on PATH is not enough: a container may forbid the namespaces it needs
    (``sandbox.bwrap_available`` tries it)."""
    if not sandbox.bwrap_available():
        print("bubblewrap is missing or cannot create its namespaces here: "
              "student code runs with resource limits and a user switch only")
        return False
    return True


def _without_sandbox(root, bundle):
    """No file-system sandbox: at least close the masters, the submission and the results
    to the unprivileged users the executor's children switch to (it does when run as root)."""
    if os.geteuid() != 0:
        return
    for path in (bundle / "source", root / "submission", root / "results"):
        if path.exists():
            os.chmod(path, 0o700)


# --- results.json ---

def _question_cells(nb):
    """{grade id: (cell, title)} of the cells with points, the title from the last heading before."""
    cells, title = {}, ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            headings = [line.lstrip("#").strip() for line in cell.source.splitlines() if line.startswith("#")]
            title = headings[0] if headings else title
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and "points" in meta:
            cells[meta["grade_id"]] = (cell, title)
    return cells


def _hidden_names(cell):
    try:
        return {spec.name for spec in nbcheck.parse_checks(cell.source) if spec.hidden}
    except nbcheck.TestCellError:
        return set()


def _verdict_text(cell):
    text = "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream")
    return [line for line in text.splitlines() if line.strip() and not HIDDEN_LINE.match(line)]


EXPLAINED = {  # the grading statuses of grade.StudentRow that a student may not understand
    "timeout": "A cell ran longer than the {timeout:g} s allowed to each cell and was stopped.",
    "memory limit": "A cell used more than the {memory_mb} MiB of memory allowed and was stopped.",
    "crashed": "The process running a cell died; the cells after it ran in a new one.",
    "needs manual grading": "Some answers are graded by hand.",
}


def results_json(row, master_nb, graded_nb, hidden_visibility=settings.HIDDEN_VISIBILITY, *, notebook="",
                 limits=Limits()):
    """Gradescope's results.json (as a dict) from a ``grade.StudentRow`` and the notebooks."""
    graded = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in graded_nb.cells} if graded_nb else {}
    tests, manual, hidden_questions = [], [], []
    questions = _question_cells(master_nb)
    for number, (gid, (cell, title)) in enumerate(questions.items(), start=1):
        points = float(cell.metadata.nbgrader["points"])
        name = f"{gid}: {title}" if title else gid
        if not nbcheck.is_test_cell(cell):
            manual.append(f"{gid} ({points:g} point{'s' if points != 1 else ''})")
            tests.append({"name": name, "number": str(number), "score": 0.0, "max_score": 0.0,
                          "output": f"Graded by hand ({points:g} point{'s' if points != 1 else ''}): your "
                                    "instructor grades this answer; its points are not part of the "
                                    "autograder's score.",
                          "visibility": "visible"})
            continue
        hidden = _hidden_names(cell)
        if hidden:
            hidden_questions.append(gid)
        score = row.questions.get(gid, 0.0)
        score = float(score) if not isinstance(score, str) else 0.0
        graded_cell = graded.get(gid)
        if graded_cell is None:
            lines = [f"Not graded: {row.status}." if row.status != "graded" else "Not graded: the cell was not found."]
        else:
            verdict = graded_metadata.cell_of(graded_cell).get("verdict")
            lines = _verdict_text(graded_cell) if verdict else ["No verdict was recorded for this question."]
            if verdict and hidden:
                failed = hidden & set(verdict.get("failed", []))
                lines.append("hidden tests failed" if failed else "hidden tests passed")
        tests.append({"name": name, "number": str(number), "score": score, "max_score": points,
                      "status": "passed" if score >= points else "failed", "output": "\n".join(lines),
                      "visibility": hidden_visibility if hidden else "visible"})

    auto_score = sum(t["score"] for t in tests)
    auto_max = sum(t["max_score"] for t in tests)
    limits = {"timeout": limits.timeout, "memory_mb": limits.memory_mb}
    summary = [f"{row.assignment}: {round(auto_score, 2):g} / {auto_max:g} points from the autograder."]
    if graded_nb is None:
        summary.append(f"Your submission could not be graded: {row.status}. Submit your notebook"
                       f"{' ' + notebook if notebook else ''} as a .ipynb file (save it first).")
    elif row.status != "graded":
        explained = [EXPLAINED[part].format(**limits) for part in row.status.split("; ") if part in EXPLAINED]
        summary.append(f"Status: {row.status}." + "".join(f" {text}" for text in explained))
    # Notes on a question repeat its test's output, which may only show later: leave them out.
    notes = [note for note in row.notes if note.split(":", 1)[0] not in questions]
    if notes:
        summary.append("Notes:\n" + "\n".join(f"- {note}" for note in notes))
    if manual:
        summary.append(f"Graded by hand, not included above: {', '.join(manual)}.")
    if hidden_questions and hidden_visibility != "visible":
        when = {"hidden": "are not shown to students",
                "after_due_date": "are shown after the due date",
                "after_published": "are shown when grades are published"}[hidden_visibility]
        summary.append(f"Questions with hidden tests ({', '.join(hidden_questions)}) {when}.")
    return {"score": auto_score, "output": "\n\n".join(summary), "output_format": "text",
            "test_output_format": "text", "visibility": "visible", "stdout_visibility": "hidden",
            "extra_data": {"assignment": row.assignment, "status": row.status},
            "tests": tests}


def _results_for_failure(config, master_nb):
    """results.json when the grader itself failed: every question at 0, and why."""
    tests = []
    if master_nb is not None:
        for number, (gid, (cell, title)) in enumerate(_question_cells(master_nb).items(), start=1):
            auto = nbcheck.is_test_cell(cell)
            tests.append({"name": f"{gid}: {title}" if title else gid, "number": str(number), "score": 0.0,
                          "max_score": float(cell.metadata.nbgrader["points"]) if auto else 0.0,
                          "output": "Not graded: the autograder failed.", "visibility": "visible"})
    return {"score": 0.0, "output": "The autograder failed while grading your submission: this is a fault "
                                    "of the course's autograder, not of your notebook. Your instructor can "
                                    "see the details.",
            "visibility": "visible", "stdout_visibility": "hidden",
            "extra_data": {"assignment": config.get("assignment", ""), "status": "autograder failed"},
            "tests": tests}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autograder.outputs.gradescope")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="grade a Gradescope submission (what run_autograder calls)")
    run.add_argument("--root", default=os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(message)s", stream=sys.stdout)
    logging.getLogger("autograder").setLevel(logging.INFO)
    warnings.filterwarnings("ignore", module="sqlalchemy")
    warnings.filterwarnings("ignore", message=".*not in session.*")
    # nbgrader runs `alembic` from PATH: make it this interpreter's.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return run_autograder(args.root)


if __name__ == "__main__":
    sys.exit(main())
