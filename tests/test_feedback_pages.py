"""Feedback pages and the report as a student and an instructor read them: each check
shown once, questions named, a written answer not graded yet awaiting grading (and out of
the total), a page for an unreadable notebook that says what to do, the report's checks
that failed most, question means, pending answers and links to the feedback pages; and,
in Chromium at 1280 px, nothing cut off or scrolled sideways (screenshots in
test-artifacts/). One grading run of the test course, in a temporary copy.
"""
import re
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
from make_course import POINTS, WRONG  # noqa: E402
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, require_browser  # noqa: E402
from test_feedback_xss import assert_inert  # noqa: E402

from autograder.grading.grade import StudentRow  # noqa: E402
from autograder.outputs import reports  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")

LONG = "found-" + "x" * 250  # a found value far wider than the page
TABLE = "| layer | weight shape |\n| --- | --- |\n| fc1 | (3, 4) |\n| fc2 | (1, 3) |"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("pages")
    subs = base / "submissions"
    full = kit.submission()
    full.cells.insert(kit.index(full, "explain"), nbformat.v4.new_markdown_cell(f"My notes:\n\n{TABLE}"))
    kit.write(full, subs / "full.ipynb")
    kit.write(kit.submission({"make_layer": "def make_layer():\n    return nn.Linear(4, 3, bias=False)",
                              "count_params": f"def count_params(model):\n    return {LONG!r}",
                              "tie": WRONG["tie"]}), subs / "part.ipynb")
    for student in ("wrong1", "wrong2"):
        kit.write(kit.submission({"count_params": WRONG["count_params"]}), subs / f"{student}.ipynb")
    (subs / "broken.ipynb").write_bytes(b"%PDF-1.4")
    return kit.run(subs, base / "out", kit.course_copy(tmp_path_factory), timeout=5.0)


def page(graded, student):
    return graded.feedback_path(student).read_text()


def index_entries(text):
    toc = re.search(r"<div id=\"toc\">(.*?)</div>", text, re.S).group(1)
    return [kit.visible_text(item).strip() for item in re.findall(r"<li>(.*?)</li>", toc, re.S)]


def test_each_check_is_shown_once(graded):
    text = kit.visible_text(page(graded, "part"))
    assert text.count("[pass] weight shape") == 1
    assert text.count("hidden test bias shape") == 1
    assert text.count("linear 2x2: expected 6, found") == 1
    assert text.count("hidden test two layers") == 1


def test_the_index_names_each_question(graded):
    entries = index_entries(page(graded, "part"))
    # No bias: its public check passes, its hidden one not; each is worth half the points.
    assert entries[0] == "Question 1 (2 points) test_make_layer (Score: 1.0 / 2.0)"
    assert entries[3] == "Question 4 (1 point) test_freeze (Score: 1.0 / 1.0)"
    assert not [e for e in entries if "Test cell" in e]
    assert len(set(entries)) == len(entries) == len(POINTS)


def test_a_written_answer_not_graded_yet_is_awaiting_and_out_of_the_total(graded):
    text = page(graded, "full")
    auto = sum(POINTS.values()) - POINTS["explain"]
    assert f"demo (Score: {auto:.1f} / {auto:.1f})" in kit.visible_text(text)
    assert index_entries(text)[-1] == (f"Question 5 (2 points, graded by hand) explain "
                                       f"(Score: awaiting grading / {POINTS['explain']:.1f})")
    assert "Not counted yet: 1 answer (2.0 points) awaiting grading" in kit.visible_text(text)
    assert graded.csv["full"]["explain"] == "pending"


def test_the_page_of_an_unreadable_notebook_says_what_to_do(graded):
    text = page(graded, "broken")
    words = kit.visible_text(text)
    assert "not a notebook (the file is not JSON)" in words
    assert "Open your notebook in JupyterLab" in words and "submit that .ipynb file again" in words
    assert "could not be graded in full" not in words
    assert "font-family" in text  # styled like the others, not the browser's serif default


def test_a_graded_submission_whose_page_could_not_be_made_keeps_its_points(tmp_path):
    row = StudentRow("ada", "demo", {"q1": 2.0, "q2": 1.0}, 3.0, 4.0, "graded")
    reports.write_plain_feedback(tmp_path / "ada.html", row, "demo.ipynb", graded=True)
    words = kit.visible_text((tmp_path / "ada.html").read_text())
    assert "Your feedback page could not be made" in words and "the points below stand" in words
    assert "could not be graded" not in words and "every question counts 0" not in words
    assert "q1: 2" in words and "(Score: 3 / 4)" in words


def test_the_report_names_the_checks_that_failed_most(graded):
    text = (graded.out / "report.html").read_text()
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(\d+)</td><td class='text'>(.*?)</td></tr>", text)
    assert rows[0] == ("linear 2x2", "test_count_params", "3", "expected 6, found 2 (2 of 3)")
    assert ("bias shape", "test_make_layer", "1", "a hidden check: no details kept") in rows


def test_the_report_shows_pending_means_and_links_to_feedback(graded):
    text = (graded.out / "report.html").read_text()
    explain = re.search(r"<tr><td>explain</td>.*?</tr>", text).group(0)
    assert "4 pending" in explain  # the four readable notebooks; the unreadable one scored 0
    make_layer = re.search(r"<tr><td>test_make_layer</td>.*?</tr>", text).group(0)
    assert "<td>1.40 / 2</td>" in make_layer  # 2 + 1 (one check of two) + 2 + 2 + 0 over five students
    for student in graded.rows:
        assert f"<a href='feedback/{student}.html'>{student}</a>" in text
        assert graded.feedback_path(student).exists()


def test_the_reports_new_tables_escape_what_students_wrote(tmp_path):
    markup = "<img src=x onerror=window.pwned=1>"
    rows = [StudentRow(f"s{i}", "demo", {"q1": 0.0}, 0.0, 1.0, "graded", failed={"q1": ["c"]},
                       messages={"q1": [f"c: expected 1, found {markup!r}"]}) for i in range(2)]
    reports.write_report(tmp_path / "report.html", rows, ["q1"], "demo", points={"q1": 1.0})
    text = (tmp_path / "report.html").read_text()
    assert_inert(text)
    assert "found &#x27;&lt;img src=x onerror=window.pwned=1&gt;&#x27; (2 of 2)" in text


def test_a_manual_grade_once_entered_counts_in_the_total(graded):
    """Last: it enters a grade in the run's gradebook."""
    from nbgrader.api import Gradebook
    from traitlets.config import Config

    from autograder.nbgrader_ext.get_grades_awaiting import GetGradesAwaiting

    def feedback_resources():
        resources = {"nbgrader": {"notebook": "demo", "assignment": "demo", "student": "full",
                                  "db_url": graded.course.db_url}}
        GetGradesAwaiting(config=Config()).preprocess(graded.autograded_notebook("full"), resources)
        return resources

    before = feedback_resources()
    assert before["autograder"]["awaiting"] == {"explain": POINTS["explain"]}
    with Gradebook(graded.course.db_url) as gb:
        grade = gb.find_grade("explain", "demo", "demo", "full")
        grade.manual_score, grade.needs_manual_grade = 1.5, False
        gb.db.commit()
    after = feedback_resources()
    assert after["autograder"]["awaiting"] == {}
    assert after["nbgrader"]["max_score"] == before["nbgrader"]["max_score"] + POINTS["explain"]
    assert after["nbgrader"]["score"] == before["nbgrader"]["score"] + 1.5


# --- in a browser, 1280 px wide ------------------------------------------------------------------

WIDTH = 1280
# Every element whose content is wider than its box (what would need sideways scrolling).
OVERFLOWING_JS = """() => [...document.querySelectorAll('*')]
    .filter(e => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1)
    .map(e => e.tagName + '.' + e.className + ': ' + e.textContent.slice(0, 60))"""


@pytest.fixture(scope="module")
def browser():
    sync_playwright = require_browser()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def opened(browser, path, name):
    """A page at 1280 px, nothing fetched from the network; screenshot in test-artifacts/."""
    tab = browser.new_page(viewport={"width": WIDTH, "height": 900})
    tab.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    tab.goto(path.as_uri())
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"pages-{name}.png"), full_page=True)
    return tab


@pytest.mark.parametrize("student", ["part", "full", "broken"])
def test_a_feedback_page_needs_no_sideways_scrolling(graded, browser, student):
    tab = opened(browser, graded.feedback_path(student), f"feedback-{student}")
    try:
        assert tab.evaluate(OVERFLOWING_JS) == []
        assert tab.evaluate("document.documentElement.scrollWidth") <= WIDTH
        if student == "part":  # the long found value and the hint after it, in view
            hint = tab.get_by_text(re.compile(r"linear 2x2: expected 6, found 'found-x+'")).first
            box = hint.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= WIDTH
            assert "Hint: count numbers" in hint.inner_text()
        if student == "full":  # the student's markdown table has borders
            border = tab.locator(".rendered_html td").first.evaluate("e => getComputedStyle(e).borderTopWidth")
            assert border != "0px"
    finally:
        tab.close()


def many_questions_rows():
    """A class graded on an assignment with many long question ids and long notes."""
    ids = ["test_checkpoint", "test_load_compatible", "test_standardize", "test_tower", "test_freeze",
           "test_decay_groups", "test_count_calls", "test_use_contributions", "frozen_still_moves"]
    rows = []
    for i in range(6):
        questions = {q: (2.0 if (i + n) % 3 else 0.0) for n, q in enumerate(ids)}
        questions["frozen_still_moves"] = "pending"
        rows.append(StudentRow(f"student_with_a_long_name_{i}", "save_and_freeze", questions, 12.0, 19.0,
                               "needs manual grading; tampering suspected" if i == 0 else "needs manual grading",
                               notes=["test_tower: layers: expected [" + ", ".join(["'linear'"] * 40) + "]"],
                               seconds=0.1 * i, failed={"test_tower": ["layers"]},
                               messages={"test_tower": ["layers: expected 3, found " + "7" * 200]}))
    return ids, rows


def test_every_column_of_the_report_is_in_view(browser, tmp_path):
    ids, rows = many_questions_rows()
    reports.write_report(tmp_path / "report.html", rows, ids, "save_and_freeze",
                         points={q: 2.0 for q in ids} | {"frozen_still_moves": 3.0})
    tab = opened(browser, tmp_path / "report.html", "report")
    try:
        assert tab.evaluate(OVERFLOWING_JS) == []
        assert tab.evaluate("document.documentElement.scrollWidth") <= WIDTH
        grades = tab.locator("table", has=tab.locator("th", has_text="status")).last
        for column in ("score", "status"):
            box = grades.locator("th", has_text=re.compile(f"^{column}$")).bounding_box()
            assert box["x"] + box["width"] <= WIDTH, column
        ticks = tab.locator(".x-axis span").all_inner_texts()
        assert ticks == [str(t) for t in range(0, 20, 2)]
    finally:
        tab.close()
