"""The root README says what is true: every repository path it names in backticks exists
(once the demo has written its outputs), the commands it gives run the venv's interpreter,
`check` works from outside the repository, and `make lab` works as root."""
import fnmatch
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from autograder.outputs import handout

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
# Placeholders of the README's commands, checked against what the demo uses in their place.
PLACEHOLDERS = {"OUTDIR": "out/demo/*", "SUBMISSIONS": "examples/submissions/*"}
FILE_TYPES = ("py", "ipynb", "csv", "html", "db", "json", "toml", "txt", "md", "zip", "sh")
SKIPPED_DIRS = {".git", ".venv", "__pycache__", ".ipynb_checkpoints", "node_modules"}
SUBMISSION_FILES = {"timestamp.txt"}  # files of a student's submission folder, not of the repository


def inline_code(text):
    return re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))


def repo_paths(text):
    """The backticked words that name a file or folder of the repository (or its outputs)."""
    found = set()
    for word in inline_code(text):
        if re.search(r"[\s(=\[$]", word) or word.startswith(("/", "~", "-")) or word in SUBMISSION_FILES:
            continue  # a command, a call, a system or home path, an option, a submission's file
        if "/" in word or re.fullmatch(rf"[\w<>-][\w<>.-]*\.({'|'.join(FILE_TYPES)})", word):
            found.add(word)
    return sorted(found)


def names_under(*folders):
    """(relative paths, is a folder) of everything under the folders, tools' caches left out."""
    found = set()
    for folder in folders:
        for top, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
            relative = Path(top).relative_to(folder)
            found |= {((relative / d).as_posix(), True) for d in dirs}
            found |= {((relative / f).as_posix(), False) for f in files}
    return found


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """What `make demo` and `make student` write, in a folder of their own: one example graded
    into out/demo/param_access/ with nbgrader's folders beside it, and the hand-out."""
    out = tmp_path_factory.mktemp("generated")
    env = dict(os.environ, PYTHONPATH=str(ROOT),  # nbgrader runs `alembic` from PATH
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    done = subprocess.run([sys.executable, "-m", "autograder", "grade",
                           ROOT / "examples" / "submissions" / "param_access" / "ada_full.ipynb",
                           "--assignment", "param_access", "--out", out / "out" / "demo" / "param_access",
                           "--work", out, "--jobs", "1"], cwd=out, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    handout.build(out / "dist" / "student")
    return out


def missing_paths(text, generated):
    everything = names_under(ROOT, generated)
    missing = []
    for word in repo_paths(text):
        pattern = re.sub(r"<\w+>", "*", word)
        first, _, rest = pattern.partition("/")
        pattern = f"{PLACEHOLDERS[first]}/{rest}" if first in PLACEHOLDERS else pattern
        folder = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        if "/" not in pattern:
            pattern = f"*{pattern}" if pattern.startswith("*") else f"*/{pattern}"
        if not any((fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(f"./{path}", pattern))
                   and (is_dir or not folder) for path, is_dir in everything):
            missing.append(word)
    return missing


def test_every_path_the_readme_names_exists(generated):
    assert len(repo_paths(README)) > 40
    assert not missing_paths(README, generated)


def test_a_wrong_path_would_be_caught(generated):
    """The check above can fail: the demo's outputs named where they are not written are reported."""
    wrong = "writes `out/demo/grades.csv`, `OUTDIR/gradebook.csv` and `notebooks/06_nothing.ipynb`"
    assert missing_paths(wrong, generated) == ["OUTDIR/gradebook.csv", "notebooks/06_nothing.ipynb",
                                               "out/demo/grades.csv"]


def test_the_commands_to_type_run_the_venvs_interpreter():
    """A bare `python` is whatever the shell finds first, seldom the one with the course's packages."""
    to_type = README[:README.index("## How grading works")] + README[README.index("## For CI"):]
    assert ".venv/bin/python -m autograder check" in to_type
    assert ".venv/bin/python -m autograder gradescope" in to_type
    bare = re.findall(r"(?<![\w/.-])python3?\s+(?:-m\s+\w+|\S+\.py)", to_type)
    assert not bare, bare


@pytest.fixture
def venv(tmp_path):
    """A venv as `make install` leaves it, minus the copying: the course's packages come from
    this interpreter's site-packages."""
    folder = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", folder], check=True, timeout=120)
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(subprocess.run([folder / "bin" / "python", "-c", where], capture_output=True, text=True,
                               check=True).stdout.strip())
    (site / "course_packages.pth").write_text(f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n")
    (folder / ".installed").touch()
    return folder


def make(*args, venv):
    return subprocess.run(["make", "-s", "-C", ROOT, f"VENV={venv}", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")
def test_check_works_from_outside_the_repository(venv, tmp_path):
    done = make(f"{venv}/.on-path", venv=venv)
    assert done.returncode == 0, done.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NBCHECK_MODE")}
    notebook = ROOT / "release" / "param_access" / "param_access.ipynb"
    done = subprocess.run([venv / "bin" / "python", "-m", "autograder", "check", notebook], cwd="/", env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]  # a blank notebook fails its checks
    assert "0 of 6 questions pass their public checks" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]


def test_make_lab_says_allow_root_exactly_when_root(venv):
    (venv / ".on-path").touch()
    done = make("-n", "lab", venv=venv)
    assert done.returncode == 0, done.stderr
    command = [line for line in done.stdout.splitlines() if "jupyter lab" in line]
    assert len(command) == 1, done.stdout
    assert ("--allow-root" in command[0]) == (os.geteuid() == 0), command
