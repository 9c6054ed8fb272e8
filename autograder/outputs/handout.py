"""The students' hand-out: a folder to give them, with nothing of the grader in it.

``build(out)`` writes::

    README.md               set up, open JupyterLab, check your work, what to hand in
    requirements.txt        the course's exact pins of what students need (settings.STUDENT_PACKAGES
                            and every other pinned package those pull in); no nbgrader
    notebooks/*.ipynb       the lessons
    release/<assignment>/   each assignment's student version, with nbcheck.py

Only notebooks/ and release/ are read: the masters in source/ (solutions and hidden
tests), the grader and the gradebook never are.
"""
import json
import shutil
from pathlib import Path

from autograder import settings
from autograder.grading.course import REPO_ROOT
from autograder.outputs.gradescope import _closure, _name

TEMPLATE = Path(__file__).resolve().parent / "templates" / "handout_README.md"
SKIPPED = {"__pycache__", ".ipynb_checkpoints"}


def problem(out, course_root=REPO_ROOT):
    """Why the hand-out cannot be written to ``out`` (None when it can): one line."""
    out, root = Path(out), Path(course_root)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        return f"{out} already exists and is not an empty folder"
    for assignment in assignments(root):
        if not (root / "release" / assignment / "nbcheck.py").is_file():
            return f"release/{assignment}/ is missing or incomplete; generate it first (make release)"
    return None


def assignments(root):
    return sorted(p.name for p in (Path(root) / "source").iterdir() if p.is_dir())


def build(out, course_root=REPO_ROOT):
    """Write the hand-out into ``out`` (missing or empty); return its path."""
    root, out = Path(course_root).resolve(), Path(out)
    reason = problem(out, root)
    if reason:
        raise SystemExit(f"error: {reason}")
    lessons = sorted((root / "notebooks").glob("*.ipynb"))
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    for lesson in lessons:
        shutil.copyfile(lesson, out / "notebooks" / lesson.name)
    names = assignments(root)
    for assignment in names:
        shutil.copytree(root / "release" / assignment, out / "release" / assignment,
                        ignore=shutil.ignore_patterns(*SKIPPED))
    (out / "requirements.txt").write_text(requirements(root / "requirements.txt"))
    (out / "README.md").write_text(TEMPLATE.read_text().format(
        lessons="\n".join(f"- `notebooks/{p.name}`: {title(p)}" for p in lessons),
        assignments="\n".join(f"- `release/{a}/{n.name}`: {title(n)}" for a in names
                              for n in sorted((out / "release" / a).glob("*.ipynb")))))
    return out


def requirements(pins_file):
    """The pinned lines of what students need, in the course's order and with its pins."""
    pins = [line.strip() for line in Path(pins_file).read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    from packaging.requirements import Requirement
    needed = _closure([_name(p) for p in settings.STUDENT_PACKAGES], Requirement)
    missing = set(map(_name, settings.STUDENT_PACKAGES)) - {_name(p) for p in pins}
    if missing:
        raise SystemExit(f"error: {pins_file} pins no {', '.join(sorted(missing))}")
    return ("# Exact pins from the course's requirements.txt: what the lessons, the exercises and\n"
            "# their check helper need, and JupyterLab.\n" + "".join(f"{p}\n" for p in pins if _name(p) in needed))


def title(notebook):
    """The first heading of a notebook's first markdown cell."""
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return notebook.stem
