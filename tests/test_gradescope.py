"""The Gradescope bundle: built, unpacked as Gradescope unpacks it, and run as Gradescope
runs it (``run_autograder`` as a subprocess with AUTOGRADER_ROOT set), on the master, the
blank release, a wrong answer and broken submissions. Every results.json must follow the
specification's schema, and its scores must be those of the grading core for the same
notebooks. setup.sh is not run (this venv has the packages); it is checked statically.

The course is the repository's ``param_access`` when it is there, otherwise a small demo
course made in a temporary folder (``demo_course``), which test_browser.py uses too.
"""
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder.outputs import gradescope
from autograder.scoring import nbcheck
from autograder.grading import pipeline
from autograder.grading.course import Course

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((Path(__file__).parent / "gradescope_results.schema.json").read_text())
RUN_TIMEOUT = 600  # seconds one run_autograder may take on a loaded machine
PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.!+_-]+$")

# Wrong answers, by solution cell: one fails a public check, one passes the public checks
# but fails hidden ones (so its output may only say "hidden tests failed").
WRONG = {
    "param_access": {
        "layer_shapes": "def layer_shapes(net):\n"
                        "    return {name: list(param.shape)[::-1] for name, param in net.named_parameters()}\n",
        "count_params": "def count_params(model):\n"
                        "    return int(sum(t.numel() for t in model.state_dict().values()))\n",
    },
    "demo": {
        "q1_answer": "def make_net():\n    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))\n",
        "q2_answer": "def count_params(model):\n    return len(list(model.parameters()))\n",
    },
}


# --- The course: the repository's param_access, or a demo course ---

def _meta(grade_id, *, grade=False, solution=False, locked=True, points=None):
    meta = {"grade": grade, "solution": solution, "locked": locked, "grade_id": grade_id,
            "schema_version": 3, "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def demo_course(root):
    """A one-assignment course ``demo`` in ``root``: master, release, config, check helper.

    Question 1 has a public and a hidden check (2 points), question 2 a public check
    (1 point), question 3 is answered in prose and graded by hand (1 point)."""
    root = Path(root)
    master_dir = root / "source" / "demo"
    master_dir.mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    shutil.copy(REPO / "autograder" / "scoring" / "nbcheck.py", master_dir / "nbcheck.py")
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}})
    nb.cells = [
        new_markdown_cell("# Demo assignment", metadata=_meta("intro")),
        new_code_cell("import torch\nfrom torch import nn\nfrom nbcheck import check", metadata=_meta("imports")),
        new_markdown_cell("## Question 1: build a network", metadata=_meta("q1_text")),
        new_code_cell("def make_net():\n    ### BEGIN SOLUTION\n"
                      "    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))\n"
                      "    ### END SOLUTION", metadata=_meta("q1_answer", solution=True, locked=False)),
        new_code_cell('net = make_net()\n'
                      'check("first_weight_shape", lambda: net[0].weight.shape, expect=[8, 4], hint="Linear(4, 8)")\n'
                      '### BEGIN HIDDEN TESTS\n'
                      'check("parameter_count_hidden", lambda: sum(p.numel() for p in net.parameters()), expect=49)\n'
                      '### END HIDDEN TESTS', metadata=_meta("q1_net", grade=True, points=2)),
        new_markdown_cell("## Question 2: count parameters", metadata=_meta("q2_text")),
        new_code_cell("def count_params(model):\n    ### BEGIN SOLUTION\n"
                      "    return sum(p.numel() for p in model.parameters())\n    ### END SOLUTION",
                      metadata=_meta("q2_answer", solution=True, locked=False)),
        new_code_cell('check("count_linear_3_2", lambda: count_params(nn.Linear(3, 2)), expect=8, '
                      'hint="weights and biases")', metadata=_meta("q2_count", grade=True, points=1)),
        new_markdown_cell("## Question 3: explain\nWhy do biases count as parameters?", metadata=_meta("q3_text")),
        new_markdown_cell("YOUR ANSWER HERE", metadata=_meta("q3_explain", grade=True, solution=True,
                                                             locked=False, points=1)),
    ]
    nbformat.write(nb, master_dir / "demo.ipynb")
    # The student version, as `make release` generates it.
    (root / ".work").mkdir()
    config = Course(root=root, work=root / ".work").config()
    config.CourseDirectory.release_directory = str(root / "release")
    from nbgrader.apps import NbGraderAPI
    result = NbGraderAPI(config=config).generate_assignment("demo", force=True, create=True)
    assert result["success"], result.get("error")
    shutil.rmtree(root / ".work", ignore_errors=True)
    return root


@dataclass
class CourseUnderTest:
    root: Path
    assignment: str
    master: nbformat.NotebookNode
    release: nbformat.NotebookNode
    notebook: str  # file name of the assignment's notebook


def course_under_test(tmp_factory):
    """The repository's param_access when present, otherwise the demo course in a temp dir."""
    masters = sorted((REPO / "source" / "param_access").glob("*.ipynb"))
    if masters and (REPO / "release" / "param_access" / masters[0].name).exists():
        root, assignment = REPO, "param_access"
    else:
        root, assignment = demo_course(tmp_factory.mktemp("democourse")), "demo"
    master = next((root / "source" / assignment).glob("*.ipynb"))
    return CourseUnderTest(root, assignment, nbformat.read(master, as_version=4),
                           nbformat.read(root / "release" / assignment / master.name, as_version=4), master.name)


def cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def solution_text(source):
    """A master solution cell as a student would write it: the solution, no markers."""
    return "\n".join(line for line in source.splitlines()
                     if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))


PROSE_ANSWER = "Each parameter tensor is learned, biases included, so each counts once."


def answered(course, overrides=None):
    """The release with every answer filled in: code correctly unless overridden, and a
    sentence in each answer graded by hand."""
    nb = nbformat.from_dict(json.loads(json.dumps(course.release)))
    for master_cell in course.master.cells:
        meta = master_cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            cell(nb, meta["grade_id"]).source = (solution_text(master_cell.source)
                                                 if master_cell.cell_type == "code" else PROSE_ANSWER)
    for grade_id, source in (overrides or {}).items():
        cell(nb, grade_id).source = source
    return nb


# --- Running the bundle as Gradescope does ---

def unpack(bundle, into):
    """Extract like unzip does: with the modes stored in the archive."""
    with zipfile.ZipFile(bundle) as archive:
        for info in archive.infolist():
            target = Path(archive.extract(info, into))
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(target, mode)


def gradescope_root(bundle, base, files):
    """/autograder as Gradescope lays it out: source/ (the bundle), submission/, results/."""
    root = Path(base)
    unpack(bundle, root / "source")
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")  # as the image build does
    (root / "submission").mkdir()
    (root / "results").mkdir()
    for name, data in files.items():
        (root / "submission" / name).write_bytes(data)
    return root


def run_autograder(root, python=sys.executable, path_first=()):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NBCHECK_MODE")}
    path = [*map(str, path_first), str(Path(sys.executable).parent), env.get("PATH", "")]
    env.update(AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=python, PATH=os.pathsep.join(path))
    proc = subprocess.run([str(root / "run_autograder")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)
    results_file = root / "results" / "results.json"
    assert results_file.exists(), f"no results.json\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc, json.loads(results_file.read_text())


def notebook_bytes(nb):
    return nbformat.writes(nb).encode()


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return course_under_test(tmp_path_factory)


@pytest.fixture(scope="module")
def bundle(course, tmp_path_factory):
    return gradescope.build(course.assignment, tmp_path_factory.mktemp("bundle") / "autograder.zip",
                            course_root=course.root)


def first_answer_cell(course):
    return next(c for c in course.master.cells
                if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution"))


@pytest.fixture(scope="module")
def notebooks(course):
    looping = first_answer_cell(course)  # never ends, before its definitions
    stuck = {looping.metadata.nbgrader["grade_id"]: "while True:\n    pass\n" + solution_text(looping.source)}
    return {"master": course.master, "blank": course.release,
            "wrong": answered(course, WRONG.get(course.assignment, {})), "timeout": answered(course, stuck)}


@pytest.fixture(scope="module")
def runs(course, bundle, notebooks, tmp_path_factory):
    """Every Gradescope run of the module, started together, beside the core's own grading."""
    cases = {name: {course.notebook: notebook_bytes(nb)} for name, nb in notebooks.items()}
    cases["broken"] = {course.notebook: b"%PDF-1.7 a PDF saved under the notebook's name"}
    cases["empty"] = {}
    roots = {name: gradescope_root(bundle, tmp_path_factory.mktemp(f"gs-{name}"), files)
             for name, files in cases.items()}
    # A bundle whose master is gone: the grader fails, results.json must still be valid.
    broken_bundle = gradescope_root(bundle, tmp_path_factory.mktemp("gs-faulty"), cases[next(iter(notebooks))])
    shutil.rmtree(broken_bundle / "source" / "source")
    roots["faulty"] = broken_bundle
    with ThreadPoolExecutor(len(roots)) as pool:
        futures = {name: pool.submit(run_autograder, root) for name, root in roots.items()}
        futures["no python"] = pool.submit(run_autograder, gradescope_root(
            bundle, tmp_path_factory.mktemp("gs-nopython"), cases["master"]), "/bin/false")
        # A container that forbids bubblewrap's namespaces (as Docker does by default).
        fake = tmp_path_factory.mktemp("fakebin")
        (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: Creating new namespace failed' >&2\nexit 1\n")
        (fake / "bwrap").chmod(0o755)
        futures["no sandbox"] = pool.submit(run_autograder, gradescope_root(
            bundle, tmp_path_factory.mktemp("gs-nosandbox"), cases["master"]), sys.executable, [fake])
        reference = pipeline.grade_notebooks(
            course.assignment, list(notebooks.values()),
            course=Course(root=course.root, work=tmp_path_factory.mktemp("core-work")))
        outcomes = {name: future.result() for name, future in futures.items()}
    return {"outcomes": outcomes, "reference": dict(zip(notebooks, reference))}


def by_grade_id(results):
    return {test["name"].split(":")[0]: test for test in results["tests"]}


def hidden_checks(course):
    """{grade id: hidden check specs} of the master's test cells."""
    found = {}
    for master_cell in course.master.cells:
        meta = master_cell.metadata.get("nbgrader", {})
        if master_cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            found[meta["grade_id"]] = [s for s in nbcheck.parse_checks(master_cell.source) if s.hidden]
    return found


def hidden_code_lines(course):
    """Lines of the masters' hidden tests that say something (longer than a bare keyword)."""
    lines = []
    for master_cell in course.master.cells:
        inside = False
        for line in master_cell.source.splitlines():
            if line.strip() == nbcheck.HIDDEN_BEGIN:
                inside = True
            elif line.strip() == nbcheck.HIDDEN_END:
                inside = False
            elif inside and len(line.strip()) > 12:
                lines.append(line.strip())
    return lines


# --- The bundle's layout and setup.sh ---

def test_bundle_layout_follows_the_specification(course, bundle):
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        infos = {info.filename: info for info in archive.infolist()}
        config = json.loads(archive.read("gradescope.json"))
    # Both scripts at the root of the archive (not under a folder), executable.
    for script in ("setup.sh", "run_autograder"):
        assert script in names
        assert (infos[script].external_attr >> 16) & 0o111 == 0o111, f"{script} is not executable"
    assert "nbgrader_config.py" in names and "autograder/grading/pipeline.py" in names
    assert "autograder/outputs/gradescope.py" in names and "autograder/scoring/nbcheck.py" in names
    assert f"source/{course.assignment}/{course.notebook}" in names
    assert f"source/{course.assignment}/nbcheck.py" in names
    assert f"release/{course.assignment}/{course.notebook}" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", "gradebook.db"))]
    assert config == {"assignment": course.assignment, "notebook": course.notebook,
                      "hidden_visibility": "after_published", "timeout": None, "memory_mb": None}


def test_setup_sh_installs_only_pinned_requirements(bundle):
    with zipfile.ZipFile(bundle) as archive:
        setup = archive.read("setup.sh").decode()
        requirements = archive.read("requirements.txt").decode()
        constraints = archive.read("constraints.txt").decode()
        run = archive.read("run_autograder").decode()
    assert setup.startswith("#!/usr/bin/env bash") and run.startswith("#!/usr/bin/env bash")
    for script in (setup, run):
        assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    installs = [line for line in setup.splitlines() if re.search(r"\bpip\b.*\binstall\b", line)]
    assert installs, "setup.sh installs nothing with pip"
    for line in installs:
        words = line.split()
        args = words[words.index("install") + 1:]
        options = [a for a in args if a.startswith("-")]
        values = [a for a in args if not a.startswith("-")]
        assert set(options) <= {"--quiet", "--no-input", "-r", "-c"}, line
        assert values == ['"$HERE/requirements.txt"', '"$HERE/constraints.txt"'], line
    assert "apt-get install -y -qq bubblewrap" in setup
    assert "--upgrade" not in setup  # nothing unpinned, pip included

    def pins(text):
        return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]

    for line in pins(requirements) + pins(constraints):
        assert PIN.match(line), f"not an exact pin: {line!r}"
    bundled = {line.split("==")[0].lower(): line for line in pins(requirements)}
    repo_pins = {line.split("==")[0].lower(): line for line in pins((REPO / "requirements.txt").read_text())}
    for name in ("playwright", "pytest", "pytest-xdist", "nbval"):
        assert name not in bundled
    for name in ("torch", "nbgrader", "nbformat", "numpy", "sqlalchemy"):
        assert bundled[name] == repo_pins[name]
    # Pins the course states win over the constraints; nothing is pinned twice.
    assert not {line.split("==")[0].lower() for line in pins(constraints)} & set(bundled)


def test_build_refuses_an_unknown_visibility(course, tmp_path):
    with pytest.raises(ValueError):
        gradescope.build(course.assignment, tmp_path / "a.zip", hidden_visibility="sometimes",
                         course_root=course.root)


def test_schema_is_a_valid_and_strict_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    test = {"name": "q1", "score": 1.0, "max_score": 2.0, "output": "", "visibility": "after_published"}
    good = {"score": 1.0, "execution_time": 3, "output": "", "visibility": "visible",
            "stdout_visibility": "hidden", "tests": [test]}
    jsonschema.validate(good, SCHEMA)
    for bad in ({**good, "tests": [{**test, "visibility": "later"}]},
                {**good, "tests": [{**test, "max_points": 2}]},
                {**good, "tests": [{k: v for k, v in test.items() if k != "score"}]},
                {k: v for k, v in good.items() if k != "execution_time"},
                {**good, "score": "1"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


# --- Runs ---

def test_every_results_json_follows_the_schema(runs):
    for name, (proc, results) in runs["outcomes"].items():
        try:
            jsonschema.validate(results, SCHEMA)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{name}: {exc.message}\n{json.dumps(results, indent=2)}")
        assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"])), name


@pytest.mark.parametrize("name", ["master", "blank", "wrong", "timeout"])
def test_scores_are_the_cores(runs, name):
    proc, results = runs["outcomes"][name]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reference = runs["reference"][name]
    tests = by_grade_id(results)
    assert set(tests) == set(reference.scores) | set(reference.manual)
    for gid, score in reference.scores.items():
        assert tests[gid]["score"] == pytest.approx(score), (gid, tests[gid])
        assert tests[gid]["max_score"] == pytest.approx(reference.max_scores[gid])
        assert tests[gid]["status"] == ("passed" if score >= reference.max_scores[gid] else "failed")
    for gid in reference.manual:
        assert tests[gid]["score"] == 0 and tests[gid]["max_score"] == 0
        assert "by hand" in tests[gid]["output"]
    assert results["score"] == pytest.approx(sum(reference.scores.values()))


def test_master_earns_every_autograded_point(runs, course):
    proc, results = runs["outcomes"]["master"]
    reference = runs["reference"]["master"]
    assert sum(reference.max_scores.values()) > 0
    assert results["score"] == pytest.approx(sum(reference.max_scores.values()))
    for gid, test in by_grade_id(results).items():
        if gid in reference.scores:
            assert test["output"].startswith("[pass]"), test
            assert "[fail]" not in test["output"]


def test_blank_release_earns_nothing_and_says_why(runs):
    proc, results = runs["outcomes"]["blank"]
    assert results["score"] == 0
    for gid, test in by_grade_id(results).items():
        if test["max_score"]:
            assert "[fail]" in test["output"] and "NotImplementedError" in test["output"], test


def test_wrong_answer_shows_public_messages_and_only_the_fate_of_hidden_tests(runs, course):
    proc, results = runs["outcomes"]["wrong"]
    tests = by_grade_id(results)
    hidden = hidden_checks(course)
    failing = [gid for gid, t in tests.items() if t["max_score"] and t["score"] < t["max_score"]]
    assert len(failing) == 2, failing
    public = [gid for gid in failing if "[fail]" in tests[gid]["output"]]
    assert len(public) == 1, {gid: tests[gid]["output"] for gid in failing}
    (hidden_only,) = set(failing) - set(public)
    # A public check failed: its message, with what was expected and the hint.
    assert "expected" in tests[public[0]]["output"] and "Hint:" in tests[public[0]]["output"]
    # Only hidden checks failed: the public ones pass, and the output says no more than that.
    assert tests[hidden_only]["output"].startswith("[pass]")
    assert tests[hidden_only]["output"].endswith("hidden tests failed")
    assert hidden[hidden_only]
    for gid, test in tests.items():
        if hidden.get(gid):
            assert test["visibility"] == "after_published"
        else:
            assert test["visibility"] == "visible"
    # What shows only later does not show now in the output about the whole submission.
    assert "hidden tests" not in results["output"].replace("Questions with hidden tests", "")
    for test in results["tests"]:
        if test["visibility"] != "visible":
            for line in test["output"].splitlines():
                assert line.removeprefix("[fail] ") not in results["output"], line


def test_timeout_is_reported(runs, course):
    proc, results = runs["outcomes"]["timeout"]
    looping = first_answer_cell(course).metadata.nbgrader["grade_id"]
    assert re.search(r"^Status: (.*; )?timeout[;.]", results["output"], re.M), results["output"]
    assert "A cell ran longer than the 10 s allowed to each cell and was stopped." in results["output"]
    assert f"- {looping}: timeout" in results["output"]
    assert 0 < results["score"] < sum(t["max_score"] for t in results["tests"])


def test_no_hidden_test_leaks_into_results(runs, course):
    names = [spec.name for specs in hidden_checks(course).values() for spec in specs]
    lines = hidden_code_lines(course)
    assert names and lines
    for case, (proc, results) in runs["outcomes"].items():
        text = json.dumps(results)
        for needle in names + lines:
            assert json.dumps(needle)[1:-1] not in text, f"{case}: hidden test text in results: {needle!r}"


@pytest.mark.parametrize("name, reason", [("broken", "not a notebook"), ("empty", "no notebook")])
def test_ungradable_submission_scores_zero_with_a_clear_output(runs, course, name, reason):
    proc, results = runs["outcomes"][name]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert results["score"] == 0 and all(t["score"] == 0 for t in results["tests"])
    assert "could not be graded" in results["output"] and reason in results["output"]
    assert course.notebook in results["output"]
    assert len(results["tests"]) == len(by_grade_id(runs["outcomes"]["master"][1]))


def test_grader_failures_still_give_results(runs):
    proc, results = runs["outcomes"]["faulty"]  # the bundle's master is missing
    assert proc.returncode != 0
    assert results["score"] == 0 and "fault of the course's autograder" in results["output"]
    assert "Traceback" in proc.stdout  # for the instructor, in results/stdout
    proc, results = runs["outcomes"]["no python"]  # the grader cannot even start
    assert proc.returncode != 0
    assert results["score"] == 0 and results["tests"] == [] and "could not run" in results["output"]


def test_grading_without_a_usable_sandbox_closes_the_course_to_student_code(runs, tmp_path_factory):
    proc, results = runs["outcomes"]["no sandbox"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cannot create its namespaces here" in proc.stdout
    assert results["score"] == runs["outcomes"]["master"][1]["score"]
    if os.geteuid() == 0:  # student code runs as another user: the masters are closed to it
        root = Path(proc.args[0]).parent
        for folder in (root / "source" / "source", root / "submission", root / "results"):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
