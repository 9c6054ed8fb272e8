"""Students who try to read the hidden tests' code, end to end: all graded in ONE ``grade``
run next to a correct bystander, in a temporary copy of tests/fixtures/course/.

Hidden test code runs in the student's process, so these attackers find it where a cell's
code is commonly kept (linecache, IPython's records of the running cell, the frames of the
call stack) and print, raise or display it. No line of it may reach anything a student or the
instructor is given: feedback pages, grades.csv, report.html, the autograded notebooks,
Gradescope's results.
"""
import html
import re
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
from make_course import ASSIGNMENT, COURSE, HIDDEN_HINT  # noqa: E402

from autograder.outputs import gradescope  # noqa: E402
from autograder.scoring import nbcheck
from autograder.scoring.redaction import MARKER, SIGNIFICANT_CHARS  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")

MASTER = nbformat.read(COURSE / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
PUBLIC_LINE = "check('weight shape', lambda: make_layer().weight.shape)"  # as the student's process runs it


def hidden_code():
    """The significant lines between the hidden-test markers of the demo master, as written
    and as the student's process runs them (criteria cut), less those the release shows."""
    region = re.compile(rf"^{re.escape(nbcheck.HIDDEN_BEGIN)}\n(.*?)^{re.escape(nbcheck.HIDDEN_END)}", re.S | re.M)
    lines = set()
    for cell in MASTER.cells:
        for code in region.findall(cell.source):
            lines.update(line.strip() for line in code.splitlines() + nbcheck.strip_criteria(code).splitlines())
    public = {line.strip() for cell in kit.release_notebook().cells for line in cell.source.splitlines()}
    return sorted(line for line in lines - public if len(line) >= SIGNIFICANT_CHARS)


HIDDEN = hidden_code()

# Prints the cells' code that linecache holds (IPython puts each cell there, named <ipython-input-...>).
PRINT_LINECACHE = """
import linecache
print('LINECACHE:')
for name, entry in list(linecache.cache.items()):
    if name.startswith('<'):
        print(''.join(entry[2]))
"""
# After a test cell ran: what it left in linecache, and IPython's record of the last cell run.
PRINT_LEFTOVERS = PRINT_LINECACHE + """
last = get_ipython().last_execution_result
print('LAST CELL:', last.info.raw_cell if last is not None else None)
"""
# The running cell's source, read off the executor's frames by the answer a test calls (an
# IPython hook would be put back before the test runs).
CAPTURE = """
import sys
CAPTURED = []
def capture():
    frame = sys._getframe(1)
    while frame is not None:
        source = frame.f_locals.get('source')
        if isinstance(source, str) and 'check(' in source:
            CAPTURED.append(source)
            return
        frame = frame.f_back
"""
# ... and raised by the answer when a test calls it.
HOOK = CAPTURE + """
def make_layer():
    capture()
    raise RuntimeError('SOURCE: ' + CAPTURED[-1])
"""
# ... and handed back as the answer's value, which a public check's verdict quotes.
RETURN_SOURCE = CAPTURE + """
from types import SimpleNamespace
def make_layer():
    capture()
    return SimpleNamespace(weight=SimpleNamespace(shape=CAPTURED[-1]))
"""
# A tracer that reads the code of every cell function it sees called.
TRACER = """
import linecache, sys
TRACED = []
def _tracer(frame, event, arg):
    if event == 'call' and frame.f_code.co_filename.startswith('<ipython-input'):
        TRACED.append(''.join(linecache.getlines(frame.f_code.co_filename)))
sys.settrace(_tracer)
def count_params(model):
    raise RuntimeError('TRACED: ' + '\\n'.join(TRACED))
"""
# The callers' lines and code, as inspect finds them.
INSPECTOR = """
import inspect
STACK = []
def make_layer():
    for caller in inspect.stack():
        STACK.append(caller.code_context)
        if caller.filename.startswith('<ipython-input'):
            try:
                STACK.append(inspect.getsource(caller.frame))
            except OSError as exc:
                STACK.append(repr(exc))
    return nn.Linear(4, 3)
"""
PRINT_STACK = "print('STACK:', STACK)\n"
# The test cells' source, captured as they start and displayed later as HTML.
DISPLAY_HTML = """
import html
from IPython.display import HTML, display
tests = [source for source in CAPTURED if source.startswith('from nbcheck')]
display(HTML('<pre>' + html.escape('\\n'.join(tests)) + '</pre>'))
display({'text/html': '<pre>' + '\\n'.join(tests) + '</pre>', 'text/plain': '\\n'.join(tests)}, raw=True)
"""
CORRECT_MAKE_LAYER = "def make_layer():\n    return nn.Linear(4, 3)\n"


def attackers():
    return {
        "reads_linecache": kit.submission({"make_layer": PRINT_LINECACHE + CORRECT_MAKE_LAYER}),
        "reads_leftovers": kit.submission({"count_params": PRINT_LEFTOVERS + kit.make_course.CORRECT["count_params"]}),
        "hooks_cells": kit.submission({"make_layer": HOOK}),
        "returns_source": kit.submission({"make_layer": RETURN_SOURCE}),
        "traces_calls": kit.submission({"count_params": TRACER}),
        "inspects_callers": kit.submission({"make_layer": INSPECTOR,
                                            "count_params": PRINT_STACK + kit.make_course.CORRECT["count_params"]}),
        "displays_html": kit.submission({"make_layer": CAPTURE + CORRECT_MAKE_LAYER.replace(
                                             "    return", "    capture()\n    return"),
                                         "count_params": DISPLAY_HTML + kit.make_course.CORRECT["count_params"]}),
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("leaks")
    subs = base / "submissions"
    for name, nb in {**attackers(), "by_full": kit.BYSTANDERS["by_full"]()}.items():
        kit.write(nb, subs / f"{name}.ipynb")
    return kit.run(subs, base / "out", kit.course_copy(tmp_path_factory), timeout=5.0)


def strings(value):
    """Every string in a JSON-like value (a notebook's outputs and metadata)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def leaked(text):
    """The hidden lines found in ``text``, as they are or escaped for HTML."""
    return [line for line in HIDDEN if line in text or html.escape(line) in text
            or line in html.unescape(text)]


def handed_out(graded, student):
    """{what: its text} for everything the grader hands out about ``student`` alone."""
    nb = graded.autograded_notebook(student)
    results = gradescope.results_json(graded.rows[student], MASTER, nb)
    return {"feedback page": graded.feedback_path(student).read_text(),
            "grades.csv row": " ".join(graded.csv[student].values()),
            "autograded notebook": "\n".join(strings([[c.get("outputs", []), c.metadata] for c in nb.cells]
                                                     + [nb.metadata])),
            "Gradescope results": "\n".join(strings(results))}


def output_data(graded, student, grade_id):
    """All the text of a cell's outputs in the student's autograded notebook."""
    return "\n".join(strings(kit.cell(graded.autograded_notebook(student), grade_id).outputs))


def assert_nothing_leaked(graded, student):
    for what, text in handed_out(graded, student).items():
        assert not leaked(text), f"{student}: hidden test code in the {what}: {leaked(text)}"


def test_the_hidden_code_is_known():
    """The lines looked for: the hidden checks as written and as run, the helper one test defines."""
    assert "check('bias shape', lambda: make_layer().bias.shape)" in HIDDEN
    assert "def _after_update():" in HIDDEN and "a.weight.fill_(0.5)" in HIDDEN
    assert any(HIDDEN_HINT in line for line in HIDDEN)  # as written in the master
    assert PUBLIC_LINE not in HIDDEN


def test_printing_linecache_shows_no_test_cell(graded):
    assert_nothing_leaked(graded, "reads_linecache")
    assert "LINECACHE:" in output_data(graded, "reads_linecache", "make_layer")


def test_a_test_cell_leaves_nothing_for_the_next_cell(graded):
    assert_nothing_leaked(graded, "reads_leftovers")
    printed = output_data(graded, "reads_leftovers", "count_params")
    assert "LINECACHE:" in printed and "LAST CELL: None" in printed


def test_a_cell_hook_raising_the_cells_source_shows_only_its_public_lines(graded):
    assert_nothing_leaked(graded, "hooks_cells")
    verdict = graded.verdict("hooks_cells", "test_make_layer")
    assert "could not look at your answer: RuntimeError: SOURCE: " in verdict
    assert PUBLIC_LINE in verdict and MARKER in verdict  # the hook did capture the cell


def test_an_answer_whose_value_is_the_cells_source_is_quoted_with_only_its_public_lines(graded):
    assert_nothing_leaked(graded, "returns_source")
    verdict = graded.verdict("returns_source", "test_make_layer")
    assert "weight shape: expected [3, 4], found " in verdict and PUBLIC_LINE in verdict and MARKER in verdict


def test_a_tracer_reading_the_callers_code_finds_nothing(graded):
    assert_nothing_leaked(graded, "traces_calls")
    assert "could not look at your answer: RuntimeError: TRACED: " in graded.verdict("traces_calls",
                                                                                    "test_count_params")


def test_inspecting_the_callers_finds_no_test_code(graded):
    assert_nothing_leaked(graded, "inspects_callers")
    assert "STACK:" in output_data(graded, "inspects_callers", "count_params")


def test_displaying_the_captured_source_as_html_shows_only_its_public_lines(graded):
    assert_nothing_leaked(graded, "displays_html")
    displayed = output_data(graded, "displays_html", "count_params")
    assert html.escape(PUBLIC_LINE) in displayed and PUBLIC_LINE in displayed and MARKER in displayed


def test_the_reports_on_all_students_hold_no_hidden_line(graded):
    for name in ("grades.csv", "report.html", "similarity.html"):
        text = (graded.out / name).read_text()
        assert not leaked(text), f"hidden test code in {name}: {leaked(text)}"
    assert MARKER in (graded.out / "grades.csv").read_text()  # the attackers' notes quote the cells' source


def test_a_correct_bystander_still_scores_full(graded):
    assert kit.points(graded.rows["by_full"]) == kit.BYSTANDER_POINTS["by_full"]
    assert not [what for what, text in handed_out(graded, "by_full").items() if MARKER in text]
