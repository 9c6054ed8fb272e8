"""The grading package is laid out by stage, and no stage reaches into one it should not.

Every import in autograder/ (function-level ones included) is read from the source; each
stage may use only the stages listed for it. The README's stage table names the same folders.
"""
import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "autograder"
STAGES = ("intake", "execution", "scoring", "nbgrader_ext", "grading", "outputs")
SHARED = {"settings", "graded_metadata"}  # plain data and defaults, for every stage
# stage -> the stages (and third-party roots) it must not import
FORBIDDEN = {
    "intake": {"execution", "scoring", "nbgrader_ext", "grading", "outputs"},
    "execution": {"intake", "nbgrader_ext", "grading", "outputs", "graded_metadata", "nbgrader", "sqlalchemy"},
    "scoring": {"intake", "execution", "nbgrader_ext", "grading", "outputs", "graded_metadata", "nbgrader"},
    "nbgrader_ext": {"intake", "grading", "outputs"},
    "grading": set(),
    "outputs": set(),
    "shared": {"intake", "execution", "nbgrader_ext", "grading", "outputs", "nbgrader"},
    "commands": set(),  # __main__.py wires the stages
}
# The reports are written from rows: they need nothing of the run that made them.
FORBIDDEN_MODULES = {"outputs/reports.py": {"execution", "nbgrader_ext", "grading", "intake"},
                     "outputs/similarity.py": {"execution", "nbgrader_ext", "grading", "intake"}}


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def stage_of(path):
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if parts[0] in STAGES else "commands" if parts == ("__main__.py",) else "shared"


def imported(path):
    """Every name a module imports, as 'autograder.<...>' or a third-party root."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def reached(names):
    """The stages and third-party roots a set of imported names reaches."""
    out = set()
    for name in names:
        parts = name.split(".")
        if parts[0] == "autograder" and len(parts) > 1:
            out.add(parts[1])
        else:
            out.add(parts[0])
    return out


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_stage_reaches_into_one_it_should_not(path):
    relative = path.relative_to(PACKAGE).as_posix()
    banned = FORBIDDEN[stage_of(path)] | FORBIDDEN_MODULES.get(relative, set())
    assert not reached(imported(path)) & banned, f"{relative} imports {sorted(reached(imported(path)) & banned)}"


def test_the_check_helper_students_receive_needs_nothing_of_the_grader():
    names = imported(PACKAGE / "scoring" / "nbcheck.py")
    assert not [n for n in names if n.startswith("autograder")]
    allowed = set(sys.stdlib_module_names) | {"IPython", "nbformat", "nbclient"}
    assert {n.split(".")[0] for n in names} <= allowed


def test_a_layering_breach_is_caught(tmp_path):
    """The check above can fail: an executor module importing nbgrader is reported."""
    breach = tmp_path / "breach.py"
    breach.write_text("def f():\n    from nbgrader.api import Gradebook\n    from autograder.grading import course\n")
    assert reached(imported(breach)) & FORBIDDEN["execution"] == {"nbgrader", "grading"}


def test_the_readmes_stage_table_names_every_stage_folder():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| stage |"):readme.index("\n\n", readme.index("| stage |"))]
    named = set(re.findall(r"`autograder/(\w+)/`", table))
    assert named == set(STAGES), named
    listed = set(re.findall(r"`(\w+\.py)`", table))
    for stage in STAGES:
        for path in (PACKAGE / stage).glob("*.py"):
            if path.name != "__init__.py":
                assert path.name in listed, f"the README's stage table does not list {stage}/{path.name}"
