"""One source of every default: the command line, the course's nbgrader_config.py, the
student's check and the Gradescope bundle agree, and a flag wins over the course config,
which wins over the defaults in autograder/settings.py."""
import json
import shutil
import zipfile
from pathlib import Path

from autograder import __main__ as cli
from autograder.grading import check
from autograder.outputs import gradescope
from autograder.scoring import nbcheck
from autograder import settings
from autograder.grading.course import Course
from autograder.execution.sandbox import Limits

ROOT = Path(__file__).resolve().parent.parent


def course_with(tmp_path, lines):
    root = tmp_path / "course"
    root.mkdir()
    config = (ROOT / "nbgrader_config.py").read_text() + "".join(f"\n{line}" for line in lines) + "\n"
    (root / "nbgrader_config.py").write_text(config)
    return root


def test_without_flag_or_course_setting_the_defaults_apply(tmp_path):
    assert Course(root=course_with(tmp_path, [])).limits() == Limits()
    assert Limits().timeout == settings.TIMEOUT == nbcheck.CELL_TIMEOUT
    assert Limits().memory_mb == settings.MEMORY_MB


def test_the_course_configuration_wins_over_the_defaults(tmp_path):
    root = course_with(tmp_path, ["c.ExecuteSandboxed.timeout = 3", "c.ExecuteSandboxed.memory_mb = 700"])
    limits = Course(root=root).limits()
    assert (limits.timeout, limits.memory_mb) == (3, 700)
    assert Course(root=root).config().ExecuteSandboxed.timeout == 3  # what nbgrader's Autograde is given


def test_a_flag_wins_over_the_course_configuration(tmp_path):
    root = course_with(tmp_path, ["c.ExecuteSandboxed.timeout = 3"])
    assert Course(root=root, timeout=7, memory_mb=900).limits() == Limits(timeout=7, memory_mb=900)


def parsed(argv, monkeypatch):
    seen = {}
    monkeypatch.setattr(check, "main", lambda notebook, timeout: seen.update(timeout=timeout) or 0)
    monkeypatch.setattr(gradescope, "build", lambda *a, **k: seen.update(k) or None)
    cli.main(argv)
    return seen


def test_the_command_line_leaves_unset_limits_to_the_course(monkeypatch):
    master = ROOT / "source" / "param_access" / "param_access.ipynb"
    assert parsed(["check", str(master)], monkeypatch)["timeout"] == settings.TIMEOUT
    built = parsed(["gradescope", "--assignment", "param_access"], monkeypatch)
    assert built["timeout"] is None and built["memory_mb"] is None
    assert built["hidden_visibility"] == settings.HIDDEN_VISIBILITY


def test_the_gradescope_bundle_takes_the_course_limits_unless_given(tmp_path):
    course = ROOT / "tests" / "fixtures" / "course"
    root = tmp_path / "course"
    shutil.copytree(course, root)
    (root / "nbgrader_config.py").write_text((ROOT / "nbgrader_config.py").read_text()
                                             + "\nc.ExecuteSandboxed.timeout = 4\n")
    bundle = gradescope.build("demo", tmp_path / "a.zip", course_root=root)
    with zipfile.ZipFile(bundle) as archive:
        config = json.loads(archive.read(gradescope.CONFIG_NAME))
        assert (config["timeout"], config["memory_mb"]) == (None, None)
        assert "c.ExecuteSandboxed.timeout = 4" in archive.read("nbgrader_config.py").decode()
    given = gradescope.build("demo", tmp_path / "b.zip", course_root=root, timeout=2)
    with zipfile.ZipFile(given) as archive:
        assert json.loads(archive.read(gradescope.CONFIG_NAME))["timeout"] == 2
