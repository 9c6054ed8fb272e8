"""Tests of the graded assignments (source/ masters, release/ student versions) and of
their tests, with the catalog of plausible answers in tests/wrong_answers.toml.

* release/ is what nbgrader generates from source/, and holds no solution or hidden test;
* each assignment ships the grader's own nbcheck.py;
* ``nbgrader validate`` passes on each master and fails on each student version;
* graded by the grading core (``autograder.grading.pipeline.grade_notebooks``): the master scores
  full marks, the student version as given scores 0, every wrong answer of the catalog
  scores less than full (with partial credit, often more than 0) on exactly the questions it
  is wrong on and full on all others, every correct variant full marks;
* the same in *judge* mode (the student's own view: the master's test cells run in a
  Jupyter kernel with NBCHECK_MODE unset): each wrong answer makes exactly its question's
  test cells raise CheckFailed.
"""
import copy
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
NBGRADER = str(VENV_BIN / "nbgrader") if (VENV_BIN / "nbgrader").exists() else "nbgrader"
# Every folder of source/ is an assignment: a new one is tested without editing this file.
ASSIGNMENTS = tuple(sorted(p.name for p in (ROOT / "source").iterdir() if p.is_dir()))
CATALOG = tomllib.loads((ROOT / "tests" / "wrong_answers.toml").read_text())
CASES = CATALOG.get("case", [])
CORRECT = CATALOG.get("correct", [])
ARTIFACTS = ROOT / "test-artifacts"
SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


# ------------------------------------------------------------------ helpers

def tool_env(**extra):
    """Environment for nbgrader and kernels: venv tools on PATH (nbgrader runs `alembic`),
    judge mode (NBCHECK_MODE unset)."""
    env = {k: v for k, v in os.environ.items() if k != "NBCHECK_MODE"}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"  # tiny tensors: threads only cost time, more so on a busy machine
    env.update(extra)
    return env


def master_path(assignment):
    return ROOT / "source" / assignment / f"{assignment}.ipynb"


def release_path(assignment):
    return ROOT / "release" / assignment / f"{assignment}.ipynb"


def read(path):
    return nbformat.read(path, as_version=4)


def nbgrader_meta(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def is_solution(cell):
    return bool(nbgrader_meta(cell).get("solution"))


def is_test(cell):
    meta = nbgrader_meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def grade_test_ids(nb):
    return [nbgrader_meta(c)["grade_id"] for c in nb.cells if is_test(c)]


def solution_ids(nb):
    return [nbgrader_meta(c)["grade_id"] for c in nb.cells if is_solution(c) and c.cell_type == "code"]


def points(nb):
    return {nbgrader_meta(c)["grade_id"]: float(nbgrader_meta(c)["points"]) for c in nb.cells if is_test(c)}


def without_markers(source):
    """A master's solution cell as a student would write it: the markers removed."""
    return "\n".join(line for line in source.splitlines()
                     if line.strip() not in (SOLUTION_BEGIN, SOLUTION_END))


def submission(assignment, replace):
    """The student version with every answer filled in from the master, then `replace` applied."""
    nb = read(release_path(assignment))
    masters = {nbgrader_meta(c)["grade_id"]: c for c in read(master_path(assignment)).cells if is_solution(c)}
    for cell in nb.cells:
        if is_solution(cell):
            grade_id = nbgrader_meta(cell)["grade_id"]
            cell.source = replace[grade_id].strip("\n") if grade_id in replace else without_markers(
                masters[grade_id].source)
    return nb


def judge_notebook(assignment, replace):
    """The master (hidden tests included) with `replace` applied to its answer cells."""
    nb = read(master_path(assignment))
    for cell in nb.cells:
        if is_solution(cell) and nbgrader_meta(cell)["grade_id"] in replace:
            cell.source = replace[nbgrader_meta(cell)["grade_id"]].strip("\n")
    return nb


def cases_of(assignment, table=None):
    return [c for c in (CASES if table is None else table) if c["assignment"] == assignment]


def regions(source, begin, end):
    """Lines strictly inside begin/end marker lines."""
    lines, inside = [], False
    for line in source.splitlines():
        if line.strip() == begin:
            inside = True
        elif line.strip() == end:
            inside = False
        elif inside:
            lines.append(line)
    return lines


# Lines that the instructions themselves tell students to write: not a leak.
PUBLISHED_LINES = {"with torch.no_grad():"}
# The scaffolding of any module class, which hidden tests define too: it reveals nothing.
MODULE_SCAFFOLDING = {"super().__init__()", "def __init__(self):", "def forward(self, x):"}


def secret_lines(assignment):
    """Every line of the master that the student version must not contain."""
    secrets = []
    for cell in read(master_path(assignment)).cells:
        if is_solution(cell):
            secrets += (regions(cell.source, SOLUTION_BEGIN, SOLUTION_END) if cell.cell_type == "code"
                        else cell.source.splitlines())
        elif is_test(cell):
            secrets += regions(cell.source, HIDDEN_BEGIN, HIDDEN_END)
    # a line of punctuation only (")", "}"), or a bare "try:" or "else:", carries no content
    return sorted({line.strip() for line in secrets
                   if re.search(r"\w", line) and not re.fullmatch(r"\s*(try|else|finally):\s*", line)}
                  - PUBLISHED_LINES - MODULE_SCAFFOLDING)


def once(function):
    """Cache a function's result per argument, an exception included: an expensive run that
    fails (the whole catalog graded at once) fails every test that needs it, but runs once."""
    memo = {}

    @functools.wraps(function)
    def wrapper(arg):
        if arg not in memo:
            try:
                memo[arg] = (True, function(arg))
            except Exception as exc:  # noqa: BLE001 (re-raised below, for every caller)
                memo[arg] = (False, exc)
        ok, value = memo[arg]
        if not ok:
            raise value
        return value
    return wrapper


# ------------------------------------------------------------------ the catalog itself

def test_catalog_is_well_formed():
    ids = [c["id"] for c in CASES + CORRECT]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    for case in CASES + CORRECT:
        assert case["assignment"] in ASSIGNMENTS, case["id"]
        nb = read(master_path(case["assignment"]))
        assert case["replace"] and set(case["replace"]) <= set(solution_ids(nb)), case["id"]
        assert case.get("why"), case["id"]
    for case in CASES:
        nb = read(master_path(case["assignment"]))
        assert case["loses"] and set(case["loses"]) <= set(grade_test_ids(nb)), case["id"]
    for case in CORRECT:
        assert case["expect"] == "full", case["id"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_catalog_covers_every_exercise(assignment):
    """At least six plausible wrong answers per autograded answer cell, and two correct
    answers written another way than the master's."""
    for grade_id in solution_ids(read(master_path(assignment))):
        count = sum(grade_id in c["replace"] for c in cases_of(assignment))
        assert count >= 6, f"{grade_id}: only {count} wrong answers in the catalog"
        variants = sum(grade_id in c["replace"] for c in cases_of(assignment, CORRECT))
        assert variants >= 2, f"{grade_id}: only {variants} correct variants in the catalog"


# ------------------------------------------------------------------ masters and release

@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_master_cells_follow_the_conventions(assignment):
    nb = read(master_path(assignment))
    nbformat.validate(nb)
    grade_ids = [nbgrader_meta(c).get("grade_id") for c in nb.cells if nbgrader_meta(c)]
    assert len(grade_ids) == len(set(grade_ids))
    for cell in nb.cells:
        assert cell.get("id"), "every cell needs an id"
        meta = nbgrader_meta(cell)
        assert meta.get("schema_version") == 3, cell.id
        if is_test(cell):
            assert meta["locked"] and meta["points"] > 0, cell.id
            assert HIDDEN_BEGIN in cell.source and HIDDEN_END in cell.source, cell.id
        if is_solution(cell) and cell.cell_type == "code":
            assert not meta["grade"] and not meta["locked"], cell.id
            assert SOLUTION_BEGIN in cell.source, cell.id
        if not meta.get("grade") and not meta.get("solution"):
            assert meta.get("locked"), f"{cell.id}: instruction and given cells are read-only"
    # the criteria of every check are literals and its name is unique (the grader relies on it)
    from autograder.scoring import nbcheck
    names = [spec.name for c in nb.cells if is_test(c) for spec in nbcheck.parse_checks(c.source)]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_nbcheck_is_the_graders(assignment):
    reference = (ROOT / "autograder" / "scoring" / "nbcheck.py").read_bytes()
    for folder in ("source", "release"):
        assert (ROOT / folder / assignment / "nbcheck.py").read_bytes() == reference, folder


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """release/ as nbgrader generates it now from a copy of the course."""
    course = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "source", course / "source")
    for assignment in ASSIGNMENTS:
        done = subprocess.run([NBGRADER, "generate_assignment", assignment, "--force"], cwd=course,
                              env=tool_env(PYTHONPATH=str(ROOT)), capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    return course / "release"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_is_in_sync(assignment, regenerated):
    committed_dir, fresh_dir = ROOT / "release" / assignment, regenerated / assignment
    committed_files = sorted(p.relative_to(committed_dir) for p in committed_dir.rglob("*") if p.is_file())
    fresh_files = sorted(p.relative_to(fresh_dir) for p in fresh_dir.rglob("*") if p.is_file())
    assert committed_files == fresh_files
    for name in committed_files:
        if name.suffix != ".ipynb":
            assert (committed_dir / name).read_bytes() == (fresh_dir / name).read_bytes(), name
            continue
        committed, fresh = read(committed_dir / name), read(fresh_dir / name)
        assert committed.metadata == fresh.metadata
        assert len(committed.cells) == len(fresh.cells)
        # nbgrader's checksums are deterministic (md5 of source and metadata): compared too
        for ours, theirs in zip(committed.cells, fresh.cells):
            assert ours.get("id") == theirs.get("id")
            assert ours.cell_type == theirs.cell_type, ours.get("id")
            assert ours.source == theirs.source, ours.get("id")
            assert ours.metadata == theirs.metadata, ours.get("id")
            assert ours.get("outputs", []) == theirs.get("outputs", []) == [], ours.get("id")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_holds_no_solution(assignment):
    texts = {}
    for path in (ROOT / "release").rglob("*"):
        if path.is_file():
            raw = path.read_text(errors="replace")
            if path.suffix == ".ipynb":
                raw += "\n" + "\n".join(cell.source for cell in read(path).cells)
            texts[path] = raw
    grader_helper = (ROOT / "autograder" / "scoring" / "nbcheck.py").read_text()
    for path, text in texts.items():
        if path.name == "nbcheck.py":
            # The grader's own helper (byte-identical, see test_nbcheck_is_the_graders) names
            # the markers as constants to find hidden tests; it holds no solution.
            assert text == grader_helper, path
            text = text.replace('HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"', "")
        for marker in (SOLUTION_BEGIN, SOLUTION_END, HIDDEN_BEGIN, HIDDEN_END, "BEGIN SOLUTION",
                       "BEGIN HIDDEN TESTS"):
            assert marker not in text, f"{marker!r} in {path}"
    # no line of a solution or of a hidden test shows up as a line of any file of release/
    secrets = secret_lines(assignment)
    assert len(secrets) > 20
    leaks = [(line, str(path)) for path, text in texts.items()
             for line in sorted(set(secrets) & {t.strip() for t in text.splitlines()})]
    assert not leaks, leaks


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_student_version_shape(assignment):
    release, master = read(release_path(assignment)), read(master_path(assignment))
    assert [c.get("id") for c in release.cells] == [c.get("id") for c in master.cells]
    assert grade_test_ids(release) == grade_test_ids(master) and points(release) == points(master)
    for cell in release.cells:
        if is_solution(cell) and cell.cell_type == "code":
            assert "raise NotImplementedError()" in cell.source


def validate(path):
    """Run `nbgrader validate` on a copy of the notebook's folder; return (exit code, output)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / path.parent.name
        shutil.copytree(path.parent, folder)
        done = subprocess.run([NBGRADER, "validate", path.name], cwd=folder, env=tool_env(),
                              capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_validate_passes_on_master(assignment):
    code, output = validate(master_path(assignment))
    assert code == 0 and "Success! Your notebook passes all the tests." in output, output[-3000:]
    assert "FAILED" not in output


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_validate_fails_on_release(assignment):
    code, output = validate(release_path(assignment))
    release = read(release_path(assignment))
    # every test cell fails, and every manually graded answer is still unanswered
    failed = len(grade_test_ids(release)) + sum(is_solution(c) and bool(nbgrader_meta(c).get("grade"))
                                                for c in release.cells)
    assert f"VALIDATION FAILED ON {failed} CELL(S)" in output, output[-3000:]
    assert "Success!" not in output


# ------------------------------------------------------------------ graded by the grading core

@once
def graded(assignment):
    """{entry: Result}: the master, the release as given, the release filled in with the
    master's answers, and every catalog case, all graded in ONE grade_notebooks call."""
    from autograder.grading.pipeline import grade_notebooks
    os.environ["PATH"] = tool_env()["PATH"]  # nbgrader's gradebook runs `alembic`
    entries = {"master": read(master_path(assignment)),
               "release": read(release_path(assignment)),
               "filled": submission(assignment, {})}
    for case in cases_of(assignment) + cases_of(assignment, CORRECT):
        entries[case["id"]] = submission(assignment, case["replace"])
    results = grade_notebooks(assignment, list(entries.values()))
    return dict(zip(entries, results))


def lost(result):
    return sorted(g for g, top in result.max_scores.items() if result.scores.get(g, 0) < top)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_master_scores_full_marks(assignment):
    expected = points(read(master_path(assignment)))
    for entry in ("master", "filled"):
        result = graded(assignment)[entry]
        assert result.max_scores == expected, entry
        assert result.scores == expected, entry


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_scores_zero(assignment):
    result = graded(assignment)["release"]
    assert result.max_scores == points(read(master_path(assignment)))
    assert result.scores == {g: 0 for g in result.max_scores}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_wrong_answer_loses_points_on_exactly_its_questions(case):
    """Less than full on each question it is wrong on (part of it when only some of the
    question's checks fail), full on every other."""
    result = graded(case["assignment"])[case["id"]]
    expected = points(read(master_path(case["assignment"])))
    assert result.max_scores == expected
    assert lost(result) == sorted(case["loses"]), case["why"]
    for grade_id, top in expected.items():
        if grade_id in case["loses"]:
            assert 0 <= result.scores[grade_id] < top, grade_id
        else:
            assert result.scores[grade_id] == top, grade_id


@pytest.mark.parametrize("case", CORRECT, ids=[c["id"] for c in CORRECT])
def test_correct_variant_scores_full_marks(case):
    result = graded(case["assignment"])[case["id"]]
    assert result.scores == points(read(master_path(case["assignment"]))), case["why"]


def test_catalog_table():
    """The catalog's results as a table: test-artifacts/wrong_answers.txt, and printed."""
    rows = [("case", "assignment", "expected to lose", "lost", "points lost", "ok")]
    for case in CASES + CORRECT:
        result = graded(case["assignment"])[case["id"]]
        wanted = sorted(case.get("loses", []))
        got = lost(result)
        points_lost = sum(result.max_scores[g] - result.scores.get(g, 0) for g in result.max_scores)
        rows.append((case["id"], case["assignment"], ", ".join(wanted) or "(nothing)",
                     ", ".join(got) or "(nothing)", f"{points_lost:g}", "yes" if got == wanted else "NO"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    table = "\n".join(lines) + "\n"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "wrong_answers.txt").write_text(table)
    print("\n" + table)
    assert all(row[-1] == "yes" for row in rows[1:])


# ------------------------------------------------------------------ judge mode (the student's view)

@once
def judged(assignment):
    """{entry: {test grade_id: error name or None}} for the master and every catalog case,
    run in judge mode in one kernel (``%reset -f`` between notebooks), in a copy of the
    assignment folder."""
    entries = {"master": judge_notebook(assignment, {})}
    for case in cases_of(assignment) + cases_of(assignment, CORRECT):
        entries[case["id"]] = judge_notebook(assignment, case["replace"])
    combined = nbformat.v4.new_notebook(metadata=read(master_path(assignment)).metadata)
    spans = {}
    for name, nb in entries.items():
        combined.cells.append(nbformat.v4.new_code_cell(
            "%reset -f\nimport matplotlib.pyplot\nmatplotlib.pyplot.close('all')"))
        start = len(combined.cells)
        combined.cells += [copy.deepcopy(c) for c in nb.cells]
        spans[name] = (start, len(combined.cells))
    from nbclient import NotebookClient
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / assignment
        shutil.copytree(ROOT / "source" / assignment, folder)
        client = NotebookClient(combined, timeout=120, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(folder)}})
        client.execute(env=tool_env())
    outcome = {}
    for name, (start, end) in spans.items():
        cells = combined.cells[start:end]
        errors = {}
        for cell in cells:
            if cell.cell_type != "code":
                continue
            error = next((o for o in cell.outputs if o.output_type == "error"), None)
            errors[cell.get("id")] = error.ename if error else None
        outcome[name] = {"tests": {nbgrader_meta(c)["grade_id"]: errors[c.get("id")] for c in cells if is_test(c)},
                         "all": errors,
                         "stderr": [c.get("id") for c in cells if is_test(c) and any(
                             o.output_type == "stream" and o.name == "stderr" for o in c.outputs)]}
    return outcome


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_judge_mode_master_passes(assignment):
    outcome = judged(assignment)["master"]
    assert {cell: e for cell, e in outcome["all"].items() if e} == {}
    assert outcome["stderr"] == []


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_judge_mode_wrong_answer_fails_its_tests(case):
    tests = judged(case["assignment"])[case["id"]]["tests"]
    assert {g: e for g, e in tests.items() if e} == {g: "CheckFailed" for g in case["loses"]}, case["why"]


@pytest.mark.parametrize("case", CORRECT, ids=[c["id"] for c in CORRECT])
def test_judge_mode_correct_variant_passes(case):
    tests = judged(case["assignment"])[case["id"]]["tests"]
    assert {g: e for g, e in tests.items() if e} == {}, case["why"]


def test_judge_mode_covers_every_case_and_is_written_for_reading():
    """Judge mode ran the master and every case of the catalog (test-artifacts/judge_mode.json
    keeps the results next to the grader's, for reading): a case it skipped would escape the
    judge-mode checks above."""
    report = {a: {name: {g: e for g, e in o["tests"].items() if e} for name, o in judged(a).items()}
              for a in ASSIGNMENTS}
    for assignment in ASSIGNMENTS:
        expected = {"master"} | {c["id"] for c in cases_of(assignment) + cases_of(assignment, CORRECT)}
        assert set(report[assignment]) == expected, assignment
        assert report[assignment]["master"] == {}, "the master raises in judge mode"
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "judge_mode.json").write_text(json.dumps(report, indent=1, sort_keys=True))
