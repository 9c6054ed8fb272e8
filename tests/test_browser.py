"""A student's round in JupyterLab, in a real browser (Debian's Chromium driven by Playwright):
open the release notebook, type the answers into the editor, run all cells, save, then
check the saved notebook with ``check_notebook`` from a new cell; and nbgrader's own
Validate button in the notebook toolbar, from its JupyterLab extension; and the students'
hand-out, where a lesson runs and a first answer passes. And an instructor's: a written
answer scored and commented in nbgrader's formgrader counts in the next grading run and
shows on the student's feedback page.

Skipped when /usr/bin/chromium is missing, unless REQUIRE_BROWSER_TEST=1 (CI), where it
fails instead. A screenshot of each stage goes to test-artifacts/browser-<name>.png.
"""
import contextlib
import csv
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_gradescope import answered, cell, course_under_test, solution_text  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
import make_course  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = REPO / "test-artifacts"
SERVER_START = 90  # seconds JupyterLab may take to answer on a loaded machine
RUN_ALL = 120_000  # milliseconds: a kernel that imports torch, then every cell
CHECK = 180_000  # milliseconds: check_notebook runs the notebook again in a fresh kernel
# JupyterLab user settings for the test: every cell in the page (no virtual scrolling),
# and no news or update notifications over the notebook.
PANEL = ".jp-NotebookPanel:visible"  # the notebook on show
CURRENT_PANEL_JS = ("[...document.querySelectorAll('.jp-NotebookPanel')]"
                    ".find(p => p.getBoundingClientRect().width > 0 && p.checkVisibility())")
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"checkForUpdates": False,
                                                                        "fetchNews": "false"},
}


def require_browser():
    """Playwright's sync API, or a skip (a failure when REQUIRE_BROWSER_TEST=1)."""
    required = os.environ.get("REQUIRE_BROWSER_TEST") == "1"
    problem = None
    if not Path(CHROMIUM).exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright
            return sync_playwright
        except ImportError as exc:
            problem = f"playwright is not installed: {exc}"
    if required:
        pytest.fail(f"REQUIRE_BROWSER_TEST=1 but {problem}")
    pytest.skip(f"browser test skipped: {problem} (set REQUIRE_BROWSER_TEST=1 to make this a failure)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyter_lab(folder, base, **env):
    """JupyterLab serving ``folder`` (its scratch files in ``base``, ``env`` added to its
    environment); stopped whatever happens. Yields (url, token, log path)."""
    settings = base / "settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    bindir = Path(sys.executable).parent
    env = dict(os.environ, **env, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
               JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(base / "runtime"))
    env.pop("NBCHECK_MODE", None)
    log = open(base / "jupyter.log", "w")
    server = subprocess.Popen(
        [str(bindir / "jupyter"), "lab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--ServerApp.token={token}", f"--ServerApp.root_dir={folder}",
         "--ServerApp.port_retries=0"],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/api/status?token={token}", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start:\n{(base / 'jupyter.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base_url, token, base / "jupyter.log"
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module (Playwright's sync API runs one at a time)."""
    sync_playwright = require_browser()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, browser):
    """JupyterLab serving a copy of the release folder."""
    course = course_under_test(tmp_path_factory)
    base = tmp_path_factory.mktemp("lab")
    folder = base / "student"
    shutil.copytree(course.root / "release" / course.assignment, folder)
    with jupyter_lab(folder, base) as (base_url, token, log):
        yield {"course": course, "folder": folder, "url": base_url, "token": token, "browser": browser, "log": log}


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"), full_page=True)


def open_notebook(lab, page, notebook=None):
    notebook = notebook or lab["course"].notebook
    # ?reset: a workspace of its own, with no tab left open by an earlier test.
    page.goto(f"{lab['url']}/lab/tree/{notebook}?reset&token={lab['token']}", timeout=120_000)
    page.wait_for_function(
        f"n => {{ const p = {CURRENT_PANEL_JS}; return !!p && p.querySelectorAll('.jp-Notebook .jp-Cell').length === n; }}",
        arg=len(lab["course"].release.cells), timeout=120_000)
    wait_idle(page, 120_000)


def wait_idle(page, timeout):
    """The kernel is idle and no cell is waiting or running ([*])."""
    page.wait_for_function(
        """() => {
            const panel = %s;
            if (!panel) return false;
            const status = panel.querySelector('.jp-Notebook-ExecutionIndicator');
            if (!status || status.getAttribute('data-status') !== 'idle') return false;
            return ![...panel.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'));
        }""" % CURRENT_PANEL_JS, timeout=timeout, polling=250)


def cells(page):
    return page.locator(f"{PANEL} .jp-Notebook .jp-Cell")


def type_into_cell(page, index, text):
    """Select the cell, enter its editor, select all and type ``text`` (as an input method
    does, so that the editor's auto-indent and bracket closing leave it as it is)."""
    target = cells(page).nth(index)
    target.scroll_into_view_if_needed()
    target.locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(text)
    typed = target.locator(".cm-content").inner_text()
    # The editor's text (its empty lines aside: the DOM renders them as extra newlines).
    assert [l.rstrip() for l in typed.splitlines() if l.strip()] == [l.rstrip() for l in text.splitlines() if l.strip()], typed


def output_text(page, index):
    return cells(page).nth(index).locator(".jp-OutputArea").inner_text()


def solution_cells(course):
    """(index in the notebook, solution) of the code answer cells of the release."""
    master = {c.metadata.nbgrader["grade_id"]: c for c in course.master.cells if "nbgrader" in c.metadata}
    found = []
    for index, release_cell in enumerate(course.release.cells):
        meta = release_cell.metadata.get("nbgrader", {})
        if release_cell.cell_type == "code" and meta.get("solution"):
            found.append((index, solution_text(master[meta["grade_id"]].source)))
    return found


def public_checks(course):
    """{cell index: public check names} of the release's test cells."""
    from autograder.scoring import nbcheck
    found = {}
    for index, release_cell in enumerate(course.release.cells):
        meta = release_cell.metadata.get("nbgrader", {})
        if release_cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            found[index] = [spec.name for spec in nbcheck.parse_checks(release_cell.source)]
    return found


def test_student_solves_runs_saves_and_checks_the_notebook(lab):
    course = lab["course"]
    page = lab["browser"].new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    try:
        open_notebook(lab, page)
        assert cells(page).count() == len(course.release.cells)
        for index, source in solution_cells(course):
            type_into_cell(page, index, source)

        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        page.wait_for_timeout(500)
        wait_idle(page, RUN_ALL)
        for index, names in public_checks(course).items():
            text = output_text(page, index)
            assert "Error" not in text, text
            for name in names:
                assert f"[pass] {name}" in text, text
        screenshot(page, f"{course.assignment}-solved")

        page.keyboard.press("Escape")
        page.keyboard.press("Control+s")
        expected = {index: source.strip() for index, source in solution_cells(course)}
        deadline = time.monotonic() + 30
        while True:
            saved = json.loads((lab["folder"] / course.notebook).read_text())
            found = {index: "".join(saved["cells"][index]["source"]).strip() for index in expected}
            if found == expected or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert found == expected, "the notebook was not saved with the answers"

        # A new cell at the end that checks the saved notebook, as the lesson says.
        last = cells(page).count() - 1
        cells(page).nth(last).locator(".jp-InputPrompt, .jp-Cell-inputCollapser").first.click()
        page.keyboard.press("Escape")
        page.keyboard.press("b")
        cells(page).nth(last + 1).wait_for()
        type_into_cell(page, last + 1, f'from nbcheck import check_notebook\ncheck_notebook("{course.notebook}")')
        page.keyboard.press("Shift+Enter")
        report = cells(page).nth(last + 1).locator(".jp-OutputArea")
        # Printed, then shown again as the cell's value: read the printed report.
        printed = report.get_by_text("questions pass their public checks").first
        printed.wait_for(timeout=CHECK)
        text = printed.inner_text()
        tests = public_checks(course)
        assert text.count("PASS") == len(tests) and "FAIL" not in text, text
        assert f"{len(tests)} of {len(tests)} questions pass" in text, text
        report.scroll_into_view_if_needed()
        screenshot(page, f"{course.assignment}-checked")
    except Exception:
        screenshot(page, f"{course.assignment}-failure")
        raise
    finally:
        page.close()


def test_nbgrader_validate_button_passes_a_solved_notebook(lab):
    """nbgrader's JupyterLab extension: its Validate button runs ``nbgrader validate``
    (through its server extension) on the open notebook and reports in a dialog."""
    import nbformat

    course = lab["course"]
    name = f"validate_{course.notebook}"
    nbformat.write(answered(course), lab["folder"] / name)
    page = lab["browser"].new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    try:
        open_notebook(lab, page, name)
        assert page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").count() == 1
        button = page.locator(f"{PANEL} .validate-button")
        button.click()
        dialog = page.locator(".jp-Dialog-content")
        dialog.wait_for(timeout=CHECK)
        text = dialog.inner_text()
        screenshot(page, f"{course.assignment}-validate")
        assert "Success" in text and "passes all the tests" in text, text
    except Exception:
        screenshot(page, f"{course.assignment}-validate-failure")
        raise
    finally:
        page.close()


def grade_table(submissions, out, course):
    """grades.csv of ``python -m autograder grade`` (no --force: what an instructor runs again)."""
    env = dict(os.environ, PYTHONPATH=str(REPO),  # nbgrader runs `alembic` from PATH
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", submissions, "--assignment",
                           make_course.ASSIGNMENT, "--out", out, "--course", course, "--jobs", "1"],
                          cwd=course, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "grades.csv", newline="") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


COMMENT = "Right: one Parameter, reached through two modules."


def test_a_manual_grade_entered_in_the_formgrader_counts_in_the_next_grade_run(tmp_path, browser):
    """The instructor's round: grade, open nbgrader's formgrader from JupyterLab's Nbgrader
    menu, score the written answer that waits for a person, and grade again."""
    course = tmp_path / "course"
    shutil.copytree(make_course.COURSE, course)
    submissions = kit.write(kit.submission(), tmp_path / "submissions" / "ada.ipynb").parent
    before = grade_table(submissions, tmp_path / "out1", course)["ada"]
    assert (before["explain"], before["status"]) == ("pending", "needs manual grading"), before["notes"]
    manual = make_course.POINTS["explain"] - 0.5

    with jupyter_lab(course, tmp_path, PYTHONPATH=str(REPO)) as (base_url, token, _):
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(120_000)
        try:
            page.goto(f"{base_url}/lab?reset&token={token}")
            page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Formgrader$")).click()
            formgrader = page.frame_locator(".jp-MainAreaWidget iframe").first
            formgrader.locator("a", has_text="Manual Grading").first.click()
            formgrader.locator("td a", has_text=make_course.ASSIGNMENT).click()  # the assignment
            formgrader.locator("td a", has_text=make_course.ASSIGNMENT).click()  # its notebook
            formgrader.locator("a", has_text="Submission #1").click()
            score = formgrader.locator("input.score#explain")
            score.scroll_into_view_if_needed()
            with page.expect_response(lambda r: "/formgrader/api/grade/" in r.url and r.request.method == "PUT") \
                    as saved:
                score.fill(f"{manual:g}")
                score.press("Tab")  # the formgrader saves a score when its field changes
            assert saved.value.ok, saved.value.status
            comment = formgrader.locator("textarea.comment#explain-comment")
            with page.expect_response(lambda r: "/formgrader/api/comment/" in r.url and r.request.method == "PUT") \
                    as saved:
                comment.fill(COMMENT)
                comment.press("Tab")
            assert saved.value.ok, saved.value.status
            score.scroll_into_view_if_needed()
            screenshot(page, "formgrader-manual-grade")
        except Exception:
            screenshot(page, "formgrader-failure")
            raise
        finally:
            page.close()

    after = grade_table(submissions, tmp_path / "out2", course)["ada"]
    assert float(after["explain"]) == manual, after
    assert float(after["score"]) == float(before["score"]) + manual, after
    assert after["status"] != "needs manual grading", after
    # The unchanged submission is not graded again, but its page is written again.
    page = kit.visible_text((tmp_path / "out2" / "feedback" / "ada.html").read_text())
    assert f"explain (Score: {manual:.1f} / {make_course.POINTS['explain']:.1f})" in page, page[:2000]
    assert COMMENT in page


def open_path(page, base_url, token, path, cell_count):
    """Open the notebook at ``path`` in a workspace of its own; wait for its cells and kernel."""
    page.goto(f"{base_url}/lab/tree/{path}?reset&token={token}", timeout=120_000)
    page.wait_for_function(
        f"n => {{ const p = {CURRENT_PANEL_JS}; return !!p && p.querySelectorAll('.jp-Notebook .jp-Cell').length === n; }}",
        arg=cell_count, timeout=120_000)
    wait_idle(page, 120_000)


def run_all(page):
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_timeout(500)
    wait_idle(page, RUN_ALL)


def test_the_hand_out_runs_a_lesson_and_checks_an_answer_in_jupyterlab(tmp_path, browser):
    """A student's first hour with the hand-out (``make student``): a lesson runs from top to
    bottom, and a first answer typed into an exercise passes its public checks."""
    from autograder.outputs import handout
    from autograder.scoring import nbcheck

    folder = handout.build(tmp_path / "student")
    lesson = "notebooks/01_parameter_access.ipynb"
    exercise = "release/param_access/param_access.ipynb"
    release = json.loads((folder / exercise).read_text())
    answer, test = next((i, i + 1) for i, c in enumerate(release["cells"])
                        if c["metadata"].get("nbgrader", {}).get("solution") and c["cell_type"] == "code")
    master = json.loads((REPO / "source" / "param_access" / "param_access.ipynb").read_text())
    grade_id = release["cells"][answer]["metadata"]["nbgrader"]["grade_id"]
    solution = next("".join(c["source"]) for c in master["cells"]
                    if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)
    checks = [spec.name for spec in nbcheck.parse_checks("".join(release["cells"][test]["source"]))]

    with jupyter_lab(folder, tmp_path) as (base_url, token, _):
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            open_path(page, base_url, token, lesson, len(json.loads((folder / lesson).read_text())["cells"]))
            # The lesson comes with its outputs: clear them, so that those seen next are this run's.
            page.locator(".lm-MenuBar-itemLabel", has_text="Edit").first.click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Clear Outputs of All Cells$")).click()
            assert page.locator(f"{PANEL} .jp-OutputArea-output").count() == 0
            run_all(page)
            assert page.locator(f"{PANEL} .jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
            assert page.locator(f"{PANEL} .jp-OutputArea-output").count() > 10  # it ran: its outputs are back
            screenshot(page, "handout-lesson")

            open_path(page, base_url, token, exercise, len(release["cells"]))
            type_into_cell(page, answer, solution_text(solution))
            run_all(page)  # stops at the next answer, still a stub
            text = output_text(page, test)
            assert checks and all(f"[pass] {name}" in text for name in checks), text
            cells(page).nth(test).scroll_into_view_if_needed()
            screenshot(page, "handout-exercise")
        except Exception:
            screenshot(page, "handout-failure")
            raise
        finally:
            page.close()
