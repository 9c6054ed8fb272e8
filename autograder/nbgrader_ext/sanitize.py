"""Student markup made inert in the autograded notebook: an nbgrader preprocessor.

The autograded notebook is what the feedback pages and nbgrader's formgrader render, and
the formgrader shows it in the Jupyter origin, where a script could act as the
instructor. nbconvert puts markdown, HTML and JavaScript outputs in the page as they are,
and an image's size from its metadata unquoted; so ``SanitizeStudentHTML`` (in
``Autograde.autograde_preprocessors``, once the grades are saved) leaves nothing in the
notebook that runs or loads: of each output only the types a page shows as text or
image, HTML cleaned by an allow-list (bleach, the sanitizer nbconvert uses), SVG that is
only drawing, and numbers of its metadata; the student's markdown and raw cells as
markup that renders to nothing else; no widget state (it loads code from a CDN). The
instructor's locked cells are left as they are.
"""
import html
import re
from urllib.parse import urlsplit
from xml.etree import ElementTree

import bleach
import nbformat
from bleach.css_sanitizer import CSSSanitizer
from defusedxml import ElementTree as SafeXML
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbgrader.preprocessors import NbGraderPreprocessor

from autograder.nbgrader_ext import instructors_cells

# Output types a page shows as text or as an image, never as markup.
KEPT_AS_THEY_ARE = {"text/plain", "text/latex", "image/png", "image/jpeg", "image/gif"}
TAGS = {"a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details", "div",
        "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p",
        "pre", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "summary", "sup", "table", "tbody", "td",
        "tfoot", "th", "thead", "tr", "u", "ul", "var"}
# No id, name or class: the formgrader's own script finds its score and comment boxes by them.
ATTRIBUTES = {"*": {"title", "lang", "dir"}, "a": {"href"}, "img": {"src", "alt", "width", "height"},
              "ol": {"start"}, "td": {"colspan", "rowspan", "style"}, "th": {"colspan", "rowspan", "scope", "style"}}
# Browsers do not open data: links; data: images are the only images kept (below).
PROTOCOLS = {"http", "https", "mailto", "data"}
# Characters of student markup (markdown, HTML outputs) rendered and cleaned per notebook: the
# parsers take time that grows with the square of the nesting. Beyond it, markdown shows as
# text and HTML outputs keep only their text version.
MARKUP_BUDGET = 32 * 1024
# One line: a markdown HTML block ends at a blank line, and what follows it is markdown again.
ONE_LINE = {ord("\n"): "&#10;", ord("\r"): "&#13;"}
SVG = "{http://www.w3.org/2000/svg}"
SVG_ELEMENTS = {SVG + name for name in (
    "svg", "g", "defs", "symbol", "use", "title", "desc", "style", "path", "rect", "circle", "ellipse", "line",
    "polyline", "polygon", "text", "tspan", "textPath", "clipPath", "mask", "pattern", "marker", "linearGradient",
    "radialGradient", "stop", "image")}
# In an SVG's attributes or style: a CSS import, a url() outside the image, a CSS escape.
LOADS_OR_HIDES = re.compile(r"@import|\\|url\(\s*['\"]?\s*[^#'\"\s]", re.IGNORECASE)


def _allowed_attribute(tag, name, value):
    if name not in ATTRIBUTES["*"] and name not in ATTRIBUTES.get(tag, ()):
        return False
    # An image from elsewhere tells who opens the page; a relative one is a request in the Jupyter origin.
    return not (tag == "img" and name == "src") or urlsplit(value).scheme == "data"


CLEANER = bleach.Cleaner(tags=TAGS, attributes=_allowed_attribute, protocols=PROTOCOLS, strip_comments=True,
                         css_sanitizer=CSSSanitizer(allowed_css_properties={"text-align"}))


def clean_html(markup):
    """The markup with what the allow-lists do not name escaped (shown as text) or removed."""
    return CLEANER.clean(markup)


class _SafeMarkdownRenderer(IPythonRenderer):
    """nbconvert's markdown renderer in mistune's safe mode (raw HTML escaped, harmful URLs
    replaced), with images only inline, and mermaid diagrams escaped (nbconvert's renderer
    puts them in the page as written)."""

    def __init__(self, **kwargs):
        super().__init__(escape=True, allow_harmful_protocols=False, **kwargs)

    def block_mermaidjs(self, code):
        return super().block_mermaidjs(self.escape_html(code))

    def image(self, text, url, title=None):
        return super().image(text, url if url.startswith(("attachment:", "data:")) else "", title)

    def heading(self, text, level, **attrs):
        return f"<h{level}>{text}</h{level}>\n"  # no id: the formgrader's script finds its boxes by id


def render_markdown(source, attachments=None, safe=False):
    """``source`` as nbconvert renders a markdown cell; ``safe``: with nothing that runs or loads."""
    renderer = _SafeMarkdownRenderer if safe else IPythonRenderer
    options = {} if safe else {"escape": False}
    return MarkdownWithMath(renderer=renderer(attachments=attachments, **options)).render(source)


def html_block(markup):
    """Markdown that renders to ``markup`` as it is."""
    return "<div>" + markup.translate(ONE_LINE) + "</div>"


def as_text(source):
    return html_block("<pre>" + html.escape(source) + "</pre>")


def inert_svg(text):
    """The SVG as checked, if it only draws (metadata, never drawn, is dropped unread): SVG
    elements, no handler, nothing loaded from elsewhere; else None."""
    try:
        root = SafeXML.fromstring(text)  # no entity declarations, nothing external
    except Exception:  # whatever the XML parser rejects is no image
        return None
    todo = [root]
    while todo:
        element = todo.pop()
        if element.tag not in SVG_ELEMENTS or LOADS_OR_HIDES.search(element.text or ""):
            return None
        for name, value in element.attrib.items():
            local = name.rsplit("}", 1)[-1].lower()
            if local.startswith("on") or LOADS_OR_HIDES.search(value) or (
                    local == "href" and not value.startswith(("#", "data:image/"))):
                return None
        for child in list(element):
            if LOADS_OR_HIDES.search(child.tail or ""):  # text after an element: a style's CSS too
                return None
            if child.tag == SVG + "metadata":
                element.remove(child)
            else:
                todo.append(child)
    return ElementTree.tostring(root, encoding="unicode")


def numbers_only(metadata):
    """An output's metadata with its numbers and flags only (an image's size, "isolated"),
    at its two levels: nbconvert writes an image's width and height into the tag unquoted."""
    kept = {}
    for key, value in metadata.items():
        if isinstance(value, dict):
            kept[key] = {k: v for k, v in value.items() if isinstance(v, (bool, int, float))}
        elif isinstance(value, (bool, int, float)):
            kept[key] = value
    return kept


class SanitizeStudentHTML(NbGraderPreprocessor):
    """Leave nothing in the notebook that a page would run, or load from elsewhere."""

    def preprocess(self, nb, resources):
        self.room = MARKUP_BUDGET
        nb.metadata.pop("widgets", None)
        instructors = set(instructors_cells(nb.cells))
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "markdown" and index not in instructors:
                cell.source = self.markdown(cell.source, cell.get("attachments"))
            elif cell.cell_type == "raw" and index not in instructors:  # the page shows it as HTML
                cell.source = clean_html(cell.source) if self.afford(cell.source) else html.escape(cell.source)
            for output in cell.get("outputs", []):
                if "data" in output:
                    output.data = nbformat.from_dict(self.bundle(output.data))
                    output.metadata = nbformat.from_dict(numbers_only(output.get("metadata", {})))
        return nb, resources

    def afford(self, markup):
        self.room -= len(markup)
        return self.room >= 0

    def markdown(self, source, attachments=None):
        """``source`` if it renders to nothing that runs or loads, else its rendering cleaned."""
        if not self.afford(source):
            return as_text(source)
        try:
            rendered = render_markdown(source, attachments)
            if render_markdown(source, attachments, safe=True) == rendered:
                return source
            return html_block(clean_html(rendered)) if self.afford(rendered) else as_text(source)
        except Exception:  # whatever the markup does to the renderer: nesting past its limits, a missing attachment
            return as_text(source)

    def bundle(self, data):
        """The output's types a page can show safely, cleaned; JavaScript, widgets and any
        other type are dropped."""
        kept = {}
        for mime, value in data.items():
            value = "".join(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value
            if not isinstance(value, str):
                continue
            if mime in KEPT_AS_THEY_ARE:
                kept[mime] = value
            elif mime == "text/html" and self.afford(value):
                kept[mime] = clean_html(value)
            elif mime == "text/markdown":
                kept[mime] = self.markdown(value)
            elif mime == "image/svg+xml" and (svg := inert_svg(value)):
                kept[mime] = svg
        return kept
