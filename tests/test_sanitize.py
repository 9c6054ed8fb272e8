"""Unit tests of the step that makes student markup inert in the autograded notebook
(autograder/nbgrader_ext/sanitize.py): each attack is rendered as nbconvert renders it for the
feedback pages and the formgrader, and must come out with nothing that runs or loads,
its harmless text still there. No code is run here; test_feedback_xss.py grades such a
student end to end and opens the pages in Chromium."""
import io
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbconvert.exporters import HTMLExporter
from nbgrader import utils

from autograder.nbgrader_ext import sanitize
from autograder.nbgrader_ext.sanitize import SanitizeStudentHTML, render_markdown

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EVIL = "pwned.invalid"
HARMLESS = "HARMLESS-TEXT"


class Parts(HTMLParser):
    """Tags, attributes and text of rendered markup."""

    def __init__(self, markup):
        super().__init__()
        self.tags, self.attributes, self.text = [], [], []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend((tag, name, value or "") for name, value in attrs)

    def handle_data(self, data):
        self.text.append(data)


def assert_inert(markup):
    parts = Parts(markup)
    assert not {"script", "style", "iframe", "object", "embed", "svg", "input", "form"} & set(parts.tags), parts.tags
    for tag, name, value in parts.attributes:
        assert not name.startswith("on") and name not in ("id", "class", "name", "style"), (tag, name, value)
        assert "javascript:" not in value.lower() and EVIL not in value, (tag, name, value)
        assert not (tag == "img" and name == "src" and not value.startswith("data:image/")), value
    assert HARMLESS in "".join(parts.text)


def sanitized(nb):
    return SanitizeStudentHTML().preprocess(nb, {})[0]


def markdown_cell(source, **kwargs):
    return nbformat.v4.new_markdown_cell(source, **kwargs)


def stored(source, **kwargs):
    """What the step stores for a student's markdown cell holding ``source``."""
    return sanitized(nbformat.v4.new_notebook(cells=[markdown_cell(source, **kwargs)])).cells[0].source


# --- markdown cells -----------------------------------------------------------------------------------

def lesson_markdown():
    return [c.source for path in [*REPO.glob("notebooks/*.ipynb"), *REPO.glob("source/*/*.ipynb")]
            for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]


def test_markdown_that_renders_to_nothing_active_is_kept_as_written():
    sources = [source for source in lesson_markdown() if not re.search("^#", source, re.MULTILINE)]
    sources += ["Tied: $W_1 = W_2$, so $n < 2m$; `a<b` and **bold**, [docs](https://pytorch.org/docs).",
                "| layer | shape |\n|:--|--:|\n| fc1 | (3, 4) |", "```python\nif a < b: print('<b>')\n```",
                kit.EXPLANATION, "Les paramètres partagés ne sont comptés qu'une fois."]
    for source in sources:
        assert stored(source) == source


def test_headings_lose_their_id_and_nothing_else():
    """The formgrader's script finds a question's score box by an id that is the
    question's name, which a heading of the same name would take."""
    for source in [s for s in lesson_markdown() if re.search("^#", s, re.MULTILINE)]:
        before, after = render_markdown(source), render_markdown(stored(source))
        assert "".join(Parts(after).text).split() == "".join(Parts(before).text).split()
        assert 'id="' in before and 'id="' not in after


ATTACKS = {
    "script": f"<script>window.pwned = 1; fetch('http://{EVIL}/x')</script>",
    "handler": '<img src="x" onerror="window.pwned = 1">',
    "svg handler": '<svg onload="window.pwned = 1"><rect/></svg>',
    "frames and plug-ins": f'<iframe src="http://{EVIL}/"></iframe><object data="http://{EVIL}/"></object>'
                           f'<embed src="http://{EVIL}/">',
    "style": f"<style>body {{ background: url(http://{EVIL}/) }}</style><b style='background: url(http://{EVIL}/)'>b</b>",
    "html link": "<a href=\"javascript:window.pwned = 1\">link</a>",
    "markdown link": "[link](javascript:window.pwned=1)",
    "encoded link": "[link](javascript&#58;window.pwned=1)",
    "autolink": "<javascript:window.pwned=1>",
    "reference link": "[link][evil]\n\n[evil]: javascript:window.pwned=1",
    "remote image": f"![pixel](http://{EVIL}/pixel.png)",
    "relative image": "![logout](../../logout)",
    "mermaid": '```mermaid\n<img src="x" onerror="window.pwned = 1">\n```',
    "form": '<form action="https://example.org"><input name="password"></form>',
    "formgrader boxes": '<div class="score" id="explain">0</div>\n\n# explain',
}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_active_markdown_is_stored_as_markup_that_renders_inert(attack):
    source = f"{HARMLESS} before.\n\n{attack}\n\nAfter."
    assert_inert(render_markdown(stored(source)))


def test_markdown_that_defeats_the_renderer_shows_as_text():
    """An attachment the cell does not hold stops nbconvert's rendering of the whole page."""
    source = f"{HARMLESS} ![gone](attachment:gone.png)"
    with pytest.raises(Exception, match="missing attachment"):
        render_markdown(source)
    assert_inert(render_markdown(stored(source)))


def test_attached_images_still_show():
    attachments = {"a.png": {"image/png": "iVBORw0KGgo="}, "b.svg": {"image/svg+xml": "PHN2Zy8+"}}
    for name in attachments:
        source = f"{HARMLESS} ![plot](attachment:{name})"
        rendered = render_markdown(stored(source, attachments=attachments), attachments)
        assert_inert(rendered)
        assert "<img" in rendered and "data:image/" in rendered


# --- outputs ------------------------------------------------------------------------------------------

def output(data, metadata=None):
    return nbformat.v4.new_output("display_data", data=data, metadata=metadata or {})


def with_outputs(*outputs):
    cell = nbformat.v4.new_code_cell("display(...)")
    cell.outputs = list(outputs)
    return nbformat.v4.new_notebook(cells=[cell])


def test_outputs_keep_only_what_a_page_shows_as_text_or_image():
    data = {"text/plain": HARMLESS, "image/png": "iVBORw0KGgo=", "text/latex": "$x$",
            "text/html": f"<b>{HARMLESS}</b><script>window.pwned = 1</script><img src=x onerror='window.pwned = 1'>",
            "text/markdown": f"{HARMLESS} <img src=x onerror='window.pwned = 1'>",
            "application/javascript": "window.pwned = 1", "text/javascript": "window.pwned = 1",
            "application/vnd.jupyter.widget-view+json": {"model_id": "m"}, "application/json": {"a": 1},
            "text/vnd.mermaid": "graph TD; A-->B", "application/x-evil": "window.pwned = 1"}
    kept = sanitized(with_outputs(output(data))).cells[0].outputs[0].data
    assert set(kept) == {"text/plain", "image/png", "text/latex", "text/html", "text/markdown"}
    assert_inert(kept["text/html"])
    assert_inert(render_markdown(kept["text/markdown"]))


def test_html_split_in_a_list_is_cleaned_as_a_whole():
    split = ["<scr", "ipt>window.pwned = 1</scr", f"ipt>{HARMLESS}"]
    kept = sanitized(with_outputs(output({"text/html": split}))).cells[0].outputs[0].data
    assert_inert(kept["text/html"])


def test_output_metadata_keeps_numbers_only():
    """nbconvert writes an image's width and height into the tag unquoted."""
    metadata = {"image/png": {"width": "1 onerror=window.pwned=1", "height": 20, "unconfined": True},
                "isolated": True, "filenames": {"image/png": "javascript:x"}}
    kept = sanitized(with_outputs(output({"image/png": "iVBORw0KGgo="}, metadata))).cells[0].outputs[0]
    assert kept.metadata == {"image/png": {"height": 20, "unconfined": True}, "isolated": True, "filenames": {}}
    page, _ = HTMLExporter().from_notebook_node(with_outputs(output({"image/png": "iVBORw0KGgo="}, metadata)))
    assert "onerror" in page  # what it would have been


def matplotlib_svg():
    import matplotlib
    from matplotlib.figure import Figure

    matplotlib.use("svg")
    figure = Figure(figsize=(2, 2))
    figure.add_subplot().imshow([[0, 1], [1, 0]])  # a raster image inside, as an inline data: image
    text = io.StringIO()
    figure.savefig(text, format="svg")
    return text.getvalue()


SVG_OPEN = '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
ACTIVE_SVG = {
    "handler": '<svg xmlns="http://www.w3.org/2000/svg" onload="window.pwned = 1"/>',
    "script": SVG_OPEN + "<script>window.pwned = 1</script></svg>",
    "foreign content": SVG_OPEN + '<foreignObject><div xmlns="http://www.w3.org/1999/xhtml">x</div>'
                                  "</foreignObject></svg>",
    "link": SVG_OPEN + '<a xlink:href="javascript:window.pwned=1"><text>x</text></a></svg>',
    "remote image": SVG_OPEN + f'<image href="http://{EVIL}/x.png"/></svg>',
    "css import": SVG_OPEN + f"<style>@import url(http://{EVIL}/x.css);</style></svg>",
    "css after an element": SVG_OPEN + f"<style><metadata/>@import url(http://{EVIL}/x.css);</style></svg>",
    "css url": SVG_OPEN + f'<rect style="fill: url(http://{EVIL}/#x)"/></svg>',
    "css escape": SVG_OPEN + f'<rect style="fill: \\75 rl(http://{EVIL}/)"/></svg>',
    "entity": '<!DOCTYPE svg [<!ENTITY e "x">]><svg xmlns="http://www.w3.org/2000/svg"><text>&e;</text></svg>',
    "not svg": "<svg><rect/></svg>",
}


@pytest.mark.parametrize("svg", ACTIVE_SVG.values(), ids=ACTIVE_SVG.keys())
def test_svg_with_anything_active_is_dropped(svg):
    kept = sanitized(with_outputs(output({"image/svg+xml": svg, "text/plain": HARMLESS}))).cells[0].outputs[0]
    assert kept.data == {"text/plain": HARMLESS}


def test_svg_that_only_draws_is_kept_without_its_metadata():
    svg = matplotlib_svg()
    kept = sanitized(with_outputs(output({"image/svg+xml": svg}))).cells[0].outputs[0].data["image/svg+xml"]
    assert kept.count(":path ") == svg.count("<path ") > 0 and kept.count(":image ") == svg.count("<image ") == 1
    assert "metadata" in svg and "metadata" not in kept
    hidden = SVG_OPEN + '<metadata><script xmlns="http://www.w3.org/1999/xhtml">window.pwned = 1</script></metadata></svg>'
    kept = sanitized(with_outputs(output({"image/svg+xml": hidden}))).cells[0].outputs[0].data["image/svg+xml"]
    assert "script" not in kept and "pwned" not in kept


# --- the notebook -------------------------------------------------------------------------------------

def test_markup_beyond_the_budget_is_not_parsed_and_shows_as_text():
    """The parsers' time grows with the square of the nesting: past a notebook's budget,
    HTML outputs are dropped (their text stays) and markdown shows as text."""
    flood = "<ul><li>" * (sanitize.MARKUP_BUDGET // 8 + 1)
    nb = with_outputs(output({"text/html": flood, "text/plain": "flood"}),
                      output({"text/html": "<b>late</b>", "text/plain": HARMLESS}))
    nb.cells.append(markdown_cell(f"{HARMLESS} <b>late</b>"))
    nb = sanitized(nb)
    assert [o.data for o in nb.cells[0].outputs] == [{"text/plain": "flood"}, {"text/plain": HARMLESS}]
    rendered = render_markdown(nb.cells[1].source)
    assert_inert(rendered)
    assert "<b>late</b>" in "".join(Parts(rendered).text)  # shown, not applied


def test_the_instructors_locked_cells_are_left_alone_and_edited_ones_are_not():
    locked = markdown_cell('<div style="color: darkred">Read carefully.</div>', metadata={"nbgrader": {
        "grade_id": "intro", "locked": True, "grade": False, "solution": False, "schema_version": 3}})
    locked.metadata.nbgrader["checksum"] = utils.compute_checksum(locked)
    edited = nbformat.from_dict(locked)
    edited.id = "edited"
    edited.source += "<script>window.pwned = 1</script>"
    raw = nbformat.v4.new_raw_cell(f'<div class="score" id="explain">{HARMLESS}</div><script>window.pwned=1</script>')
    nb = sanitized(nbformat.v4.new_notebook(cells=[locked, edited, raw]))
    assert nb.cells[0].source == locked.source
    assert_inert(render_markdown(nb.cells[1].source).replace("Read carefully.", HARMLESS))
    assert_inert(nb.cells[2].source)


def test_widget_state_is_dropped():
    """The page loads the widget manager from a CDN, and it loads the modules the state names."""
    nb = nbformat.v4.new_notebook(metadata={"widgets": {"application/vnd.jupyter.widget-state+json": {
        "state": {"m": {"model_module": f"http://{EVIL}/widget.js"}}}}})
    assert "widgets" not in sanitized(nb).metadata
