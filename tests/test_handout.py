"""The students' hand-out (``make student``): complete, free of anything that grades, and its
README's commands work from inside it in a fresh virtual environment made from its own
requirements.txt."""
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from autograder.outputs import handout
from test_assignments import ASSIGNMENTS, secret_lines
from test_browser import free_port

ROOT = Path(__file__).resolve().parent.parent
GRADER_ONLY = {"nbgrader", "sqlalchemy", "pytest", "playwright", "nbval", "pytest-xdist"}
SERVER_START = 90  # seconds JupyterLab may take to answer on a loaded machine
PIP = 900  # seconds a fresh venv's install may take (torch included)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return handout.build(tmp_path_factory.mktemp("handout") / "student")


def files(folder):
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


def pins(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_it_holds_every_lesson_and_every_assignment_with_its_check_helper(built):
    lessons = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert len(lessons) == 5 and sorted(p.name for p in (built / "notebooks").iterdir()) == lessons
    for name in lessons:
        assert (built / "notebooks" / name).read_bytes() == (ROOT / "notebooks" / name).read_bytes()
    helper = (ROOT / "autograder" / "scoring" / "nbcheck.py").read_bytes()
    for assignment in ASSIGNMENTS:
        folder = built / "release" / assignment
        assert sorted(p.name for p in folder.iterdir()) == ["nbcheck.py", f"{assignment}.ipynb"]
        assert (folder / "nbcheck.py").read_bytes() == helper
        notebook = f"{assignment}.ipynb"
        assert (folder / notebook).read_bytes() == (ROOT / "release" / assignment / notebook).read_bytes()
    assert sorted(p.relative_to(built).as_posix() for p in files(built) if len(p.relative_to(built).parts) == 1) \
        == ["README.md", "requirements.txt"]


def test_its_requirements_are_the_courses_pins_of_what_students_need(built):
    course = pins((ROOT / "requirements.txt").read_text())
    theirs = pins((built / "requirements.txt").read_text())
    assert set(theirs) <= set(course)  # the very same pins, nothing new
    names = {re.split(r"[=<>!~ ]", line)[0].lower() for line in theirs}
    # What the lessons and exercises import, JupyterLab and the kernel, what check_notebook runs
    assert {"torch", "numpy", "matplotlib", "jupyterlab", "ipykernel", "nbformat", "nbclient"} <= names
    assert not names & GRADER_ONLY, names & GRADER_ONLY


def test_its_readme_names_every_notebook_and_how_to_check_and_hand_in(built):
    readme = (built / "README.md").read_text()
    for path in files(built):
        if path.suffix == ".ipynb":
            assert f"`{path.relative_to(built).as_posix()}`" in readme, path
    assert "pip install -r requirements.txt" in readme and "jupyter lab" in readme
    assert 'check_notebook("param_access.ipynb")' in readme and "What to hand in" in readme
    assert "{" not in readme  # every placeholder of the template was filled


def leaks(folder):
    """(line, file) for each line of a master's solution or hidden tests found in ``folder``.
    Lines the published lessons also hold are public already (a `loss.backward()`)."""
    public = {line.strip() for lesson in (ROOT / "notebooks").glob("*.ipynb")
              for cell in nbformat.read(lesson, as_version=4).cells for line in cell.source.splitlines()}
    hidden = {line for assignment in ASSIGNMENTS for line in secret_lines(assignment)} - public
    assert len(hidden) > 100
    found = []
    for path in files(folder):
        text = path.read_text(errors="replace")
        if path.suffix == ".ipynb":
            text += "\n" + "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
        found += [(line, path.name) for line in sorted(hidden & {t.strip() for t in text.splitlines()})]
    return found


def test_it_leaks_no_solution_hidden_test_master_or_grader_file(built):
    assert not leaks(built)
    nbcheck = (ROOT / "autograder" / "scoring" / "nbcheck.py").read_bytes()
    private = {p.read_bytes(): p for folder in ("source", "autograder") for p in files(ROOT / folder)
               if p.name != "nbcheck.py"}
    for path in files(built):
        assert path.read_bytes() not in private, f"{path} is {private.get(path.read_bytes())}"
        assert path.name not in {"nbgrader_config.py", "gradebook.db"}, path
    assert not {"source", "autograder", "tests"} & {p.name for p in built.rglob("*") if p.is_dir()}
    assert nbcheck in {p.read_bytes() for p in files(built)}


def test_a_solution_in_release_would_be_caught(tmp_path):
    """The leak check above can fail: a release notebook that kept a solution is reported."""
    folder = tmp_path / "student"
    shutil.copytree(ROOT / "release" / "param_access", folder)
    master = nbformat.read(ROOT / "source" / "param_access" / "param_access.ipynb", as_version=4)
    release = nbformat.read(folder / "param_access.ipynb", as_version=4)
    release.cells = master.cells
    nbformat.write(release, folder / "param_access.ipynb")
    assert leaks(folder)


def test_it_is_written_only_into_a_missing_or_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    assert "not an empty folder" in handout.problem(tmp_path)
    with pytest.raises(SystemExit):
        handout.build(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


# --- The README's commands, run as written from inside the hand-out, in a fresh venv ---

def readme_commands(readme):
    return [line.strip() for block in re.findall(r"```bash\n(.*?)```", readme, re.S)
            for line in block.splitlines() if line.strip()]


def run(command, cwd, env):
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=PIP)


def test_its_readme_commands_work_in_a_fresh_venv_of_its_own_requirements(built):
    """A real venv, installed from the hand-out's requirements.txt by pip as configured on this
    machine: it proves the pins resolve together and hold everything the notebooks need."""
    env = {k: v for k, v in os.environ.items() if k not in ("NBCHECK_MODE", "PYTHONPATH", "VIRTUAL_ENV")}
    # A plain `python3` on PATH, as a student has: not the grader's venv.
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if Path(p).resolve() != Path(sys.executable).parent.resolve())
    env["PATH"] = os.pathsep.join([str(Path(sys._base_executable).parent), env["PATH"]])
    commands = readme_commands((built / "README.md").read_text())
    assert commands[:3] == ["python3 -m venv .venv", ".venv/bin/python -m pip install -r requirements.txt",
                            ".venv/bin/jupyter lab"], commands
    for command in commands[:2]:
        done = run(command, built, env)
        assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    venv_python = built / ".venv" / "bin" / "python"
    for grader_module in ("nbgrader", "autograder", "sqlalchemy"):
        assert run(f"{venv_python} -c 'import {grader_module}'", "/", env).returncode != 0, grader_module

    check = commands[3]
    assert check.startswith("cd release/param_access && ") and len(commands) == 4, commands
    done = run(check, built, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 of 6 questions pass their public checks" in done.stdout and "NotImplementedError" in done.stdout, \
        done.stdout[-3000:] + done.stderr[-3000:]

    port, token = free_port(), secrets.token_hex(16)
    # How the test reaches the server it starts; root must say so (a student is not root).
    flags = f" --no-browser --ServerApp.port={port} --ServerApp.port_retries=0 --ServerApp.token={token}" \
            + (" --allow-root" if os.geteuid() == 0 else "")
    log = open(built.parent / "lab.log", "w")
    server = subprocess.Popen(["bash", "-c", f"exec {commands[2]}{flags}"], cwd=built, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True,
                              env=dict(env, JUPYTER_RUNTIME_DIR=str(built.parent / "runtime")))
    try:
        deadline, listing = time.monotonic() + SERVER_START, None
        while listing is None:
            try:
                url = f"http://127.0.0.1:{port}/api/contents/notebooks?token={token}"
                with urllib.request.urlopen(url, timeout=5) as reply:
                    listing = reply.read().decode()
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(built.parent / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        for lesson in (built / "notebooks").iterdir():
            assert f'"{lesson.name}"' in listing, listing[:2000]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()
