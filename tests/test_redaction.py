"""Unit tests of the last filter (autograder/scoring/redaction.py): the hidden tests' lines are
removed from what a student's process produced, in whatever form it printed them; the
public lines, short lines and everything else stay as they were."""
import html
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
from make_course import HIDDEN_HINT, TEST_SOURCES  # noqa: E402

from autograder.scoring.nbcheck import strip_criteria  # noqa: E402
from autograder.scoring.redaction import MARKER, SIGNIFICANT_CHARS, Redactor, hidden_lines  # noqa: E402

MASTER = '''from nbcheck import check
x = 1
check("size", lambda: answer(3), expect=9, hint="square it")
### BEGIN HIDDEN TESTS
y = 2
check("negative", lambda: answer(-4), expect=16, hint="SECRET-HINT")
check("size", lambda: answer(3), expect=9, hint="square it")
### END HIDDEN TESTS'''
COPY = '''from nbcheck import check
x = 1
check("size", lambda: answer(3), expect=9, hint="square it")'''
HIDDEN = "check('negative', lambda: answer(-4))"  # the hidden check as the student's process runs it
PUBLIC = "check('size', lambda: answer(3))"


def redactor():
    return Redactor(hidden_lines([(MASTER, COPY)]))


def test_the_hidden_lines_are_those_only_the_master_holds():
    hidden = hidden_lines([(MASTER, COPY)])
    assert HIDDEN in hidden and 'check("negative", lambda: answer(-4), expect=16, hint="SECRET-HINT")' in hidden
    assert PUBLIC not in hidden  # also in the hidden part, but the student's copy shows it
    assert "y = 2" not in hidden and len("y = 2") < SIGNIFICANT_CHARS  # too short to be the test's own


def test_a_public_text_makes_a_line_public():
    assert HIDDEN not in hidden_lines([(MASTER, COPY)], public=[f"Try this:\n\n    {HIDDEN}\n"])


def test_hidden_lines_are_removed_public_and_short_lines_kept():
    printed = f"from nbcheck import check\n{PUBLIC}\n{HIDDEN}\ny = 2\nprint(HIDDEN)\n"
    assert redactor().redact(printed) == f"from nbcheck import check\n{PUBLIC}\n{MARKER}\ny = 2\nprint(HIDDEN)\n"


def test_the_line_is_removed_in_the_forms_it_is_printed_or_displayed_in():
    source = strip_criteria(MASTER)  # as the student's process runs it
    for shown in (repr(source), repr(source.splitlines()), repr(source + '"'), json.dumps(MASTER),
                  html.escape(source), html.escape(source, quote=False), f"    {HIDDEN}  # indented"):
        redacted = redactor().redact(shown)
        assert "negative" not in redacted and MARKER in redacted, shown


def test_outputs_keep_their_shape_and_what_holds_no_hidden_line_is_untouched():
    outputs = [{"output_type": "stream", "name": "stdout", "text": f"{HIDDEN}\n"},
               {"output_type": "error", "ename": "RuntimeError", "evalue": HIDDEN, "traceback": ["a", HIDDEN]},
               {"output_type": "display_data", "metadata": {},
                "data": {"text/html": f"<pre>{html.escape(HIDDEN)}</pre>", "image/png": "iVBORw0KGgo=",
                         "application/json": {"error": [HIDDEN], "seconds": 0.5, HIDDEN: True}}}]
    assert redactor().redact(outputs) == [
        {"output_type": "stream", "name": "stdout", "text": f"{MARKER}\n"},
        {"output_type": "error", "ename": "RuntimeError", "evalue": MARKER, "traceback": ["a", MARKER]},
        {"output_type": "display_data", "metadata": {},
         "data": {"text/html": f"<pre>{MARKER}</pre>", "image/png": "iVBORw0KGgo=",
                  "application/json": {"error": [MARKER], "seconds": 0.5, MARKER: True}}}]
    clean = [{"output_type": "stream", "name": "stdout", "text": f"{PUBLIC}\n"}]
    assert redactor().redact(clean) is clean


def test_images_are_searched_too():
    """An image is base64 text, searched for the lines base64 can hold; any other text a
    student put in its place is searched for all of them."""
    bare = "parameters_of_the_model".replace("_", "")  # a line base64 can hold
    redactor = Redactor(hidden_lines([(f"x = 1\n{bare}\n{HIDDEN}", "x = 1")]))
    image = {"image/png": f"iVBORw0KGgo{bare}AAAA==", "image/jpeg": HIDDEN}
    assert redactor.redact(image) == {"image/png": f"iVBORw0KGgo{MARKER}AAAA==", "image/jpeg": MARKER}


def test_the_demo_masters_hidden_checks_are_hidden_and_its_hints_never_shown():
    copy = {name: source.split("### BEGIN HIDDEN TESTS")[0].rstrip() for name, source in TEST_SOURCES.items()}
    hidden = hidden_lines([(TEST_SOURCES[name], copy[name]) for name in TEST_SOURCES])
    printed = Redactor(hidden).redact("\n".join(TEST_SOURCES.values()))
    assert "bias shape" not in printed and HIDDEN_HINT not in printed and "_after_update" not in printed
    assert "weight shape" in printed and "linear 2x2" in printed
