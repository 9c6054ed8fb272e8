"""The exporter of nbgrader's feedback pages (``GenerateFeedback.exporter_class``), for
feedback made by the hundred.

The page is nbconvert's HTMLExporter with nbgrader's feedback template, extended where a
student could not act on it (``TEMPLATE`` in ``templates/``: named questions, grades
awaiting manual grading, each verdict once, wrapped lines, bordered tables). The rest
changes only cost. nbgrader makes a new exporter for every feedback run, which would
compile the page's ten templates again (a tenth of a second): their compiled code is kept
for the process in jinja2's own bytecode cache. The master's markdown and code recur in
every student's page, so their rendering is cached for the process too. nbconvert's last
step, a full BeautifulSoup parse of the page to give images without alt text a default
one (more than half of the time), is a regular expression here. Its other step, tabindex
on JupyterLab-template cells, finds nothing in nbgrader's classic-based template. The
notebook is validated once (exporters.ValidateOnce).

A student's page costs what the student's notebook makes it cost, so its rendering is
bounded in time (``time_limit``): highlighting one piece of code gives way to the plain,
escaped code after HIGHLIGHT_SECONDS (pygments lexers backtrack on some input, such as
its Scala lexer on a run of backslashes), and a whole page fails after PAGE_SECONDS, which
nbgrader reports for that student alone.
"""
import contextlib
import html
import re
import signal
import threading
import time
from pathlib import Path

import nbgrader
from jinja2 import BytecodeCache, pass_context
from nbconvert.exporters import HTMLExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.strings import strip_files_prefix
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

from autograder.nbgrader_ext.exporters import ValidateOnce

# Our template and the page it starts from, named apart from the index.html.j2 of
# nbgrader's "feedback" template that it extends; the folders of both.
TEMPLATE, TEMPLATE_FILE = "autograder_feedback", "page.html.j2"
TEMPLATE_DIRS = [str(Path(nbgrader.__file__).resolve().parent / "server_extensions" / "formgrader" / "templates"),
                 str(Path(__file__).resolve().parent / "templates")]
IMG_WITHOUT_ALT = re.compile(r"<img(?![^>]*\salt=)", re.IGNORECASE)
DEFAULT_ALT = '<img alt="No description has been provided for this image"'
HIGHLIGHT_SECONDS = 2.0
STRIP_FILES_LIMIT = 2048  # characters of a cell nbconvert's strip_files_prefix is given
PAGE_SECONDS = 120.0  # far above a normal page's tenths of a second (a 15 MB notebook's took about 40 s)


class TooSlow(Exception):
    """Rendering ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds, what):
    """Raise TooSlow in the block once ``seconds`` have passed (a regular expression stuck
    in backtracking checks for signals too). Only the main thread receives signals:
    elsewhere, and within an outer limit that ends sooner, the block is not bounded here."""
    if threading.current_thread() is not threading.main_thread() or 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= seconds:
        yield
        return

    def expire(signum, frame):
        raise TooSlow(f"{what} took more than {seconds:g} s")
    outer_handler = signal.signal(signal.SIGALRM, expire)
    outer_left, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_left:  # the outer limit goes on
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - started), 0.001))


class CachedHighlight(Highlight2HTML):
    """Highlight2HTML remembering what it highlighted (keyed by all it depends on), bounded
    in time (HIGHLIGHT_SECONDS)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._done = {}

    def __call__(self, source, language=None, metadata=None):
        key = (source, language, (metadata or {}).get("magics_language"))
        if key not in self._done:
            try:
                with time_limit(HIGHLIGHT_SECONDS, "highlighting"):
                    self._done[key] = super().__call__(source, language, metadata)
            except TooSlow:
                self._done[key] = f'<div class="highlight"><pre>{html.escape(source)}</pre></div>'
        return self._done[key]


def bounded_strip_files_prefix(text):
    """nbconvert's strip_files_prefix (``[caption](files/...)`` links made relative), whose
    pattern takes time quadratic in a run of "[": only where there is such a prefix, in
    text short enough for that not to matter. A feedback page stands alone, where a
    link to files/ leads nowhere either way."""
    return strip_files_prefix(text) if "files/" in text and len(text) <= STRIP_FILES_LIMIT else text


class CompiledTemplates(BytecodeCache):
    """jinja2's bytecode cache, in this process's memory: a template's compiled code,
    valid while its source is unchanged (jinja2 checks the source's checksum)."""

    def __init__(self):
        self.compiled = {}  # bucket key -> (source checksum, code)

    def load_bytecode(self, bucket):
        checksum, code = self.compiled.get(bucket.key, (None, None))
        if checksum == bucket.checksum:
            bucket.code = code

    def dump_bytecode(self, bucket):
        self.compiled[bucket.key] = (bucket.checksum, bucket.code)


class FeedbackPageExporter(HTMLExporter):
    """nbconvert's HTMLExporter with the feedback page's template, configured on this class
    (more specific than the ``HTMLExporter.template_name`` nbgrader sets for its feedback),
    at nbconvert's own cost: the exporter of a course with the speedups off."""


class FeedbackHTMLExporter(ValidateOnce, FeedbackPageExporter):
    # For the process: every exporter of it has the same configuration (the course's).
    _compiled = CompiledTemplates()
    _markdown = {}
    _highlighters = {}

    def default_filters(self):
        for name, function in super().default_filters():
            yield name, bounded_strip_files_prefix if name == "strip_files_prefix" else function

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = self._compiled
        return environment

    @pass_context
    def markdown2html(self, context, source):
        # The page's folder matters only to embedded images and attachments.
        if self.embed_images or context.get("cell", {}).get("attachments"):
            return super().markdown2html(context, source)
        if source not in self._markdown:
            self._markdown[source] = super().markdown2html(context, source)
        return self._markdown[source]

    def from_notebook_node(self, nb, resources=None, **kw):
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        if lexer not in self._highlighters:
            self._highlighters[lexer] = CachedHighlight(pygments_lexer=lexer, parent=self)
        resources = self._init_resources(resources)
        self.register_filter("highlight_code", self._highlighters[lexer])
        self.register_filter("filter_data_type", WidgetsDataTypeFilter(
            notebook_metadata=self._nb_metadata, parent=self, resources=resources))
        with time_limit(PAGE_SECONDS, "the feedback page"):
            page, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        return IMG_WITHOUT_ALT.sub(DEFAULT_ALT, page), resources
