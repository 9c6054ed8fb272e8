"""A student's round in JupyterLab, in a real browser (Debian's Chromium driven by Playwright):
open the release notebook, type the answers into the editor, run all cells, save, then
check the saved notebook with ``check_notebook`` from a new cell; and nbgrader's own
Validate button in the notebook toolbar, from its JupyterLab extension.

Skipped when /usr/bin/chromium is missing, unless REQUIRE_BROWSER_TEST=1 (CI), where it
fails instead. A screenshot of each stage goes to test-artifacts/browser-<name>.png.
"""
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


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving a copy of the release folder; stopped whatever happens."""
    sync_playwright = require_browser()
    course = course_under_test(tmp_path_factory)
    base = tmp_path_factory.mktemp("lab")
    folder = base / "student"
    shutil.copytree(course.root / "release" / course.assignment, folder)
    settings = base / "settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
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
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                yield {"course": course, "folder": folder, "url": base_url, "token": token,
                       "browser": browser, "log": base / "jupyter.log"}
            finally:
                browser.close()
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
