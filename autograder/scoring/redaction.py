"""The last filter: no line of a hidden test reaches what a student or an instructor is given.

Hidden tests run in the student's process, which can capture their code (an IPython hook
is handed each cell's source; the frames of the call stack hold it) and print, raise or
display it. Everything that process produced passes through here before it is stored:
each line of a hidden test found in it, as written or as the student's process ran it
(criteria cut), and as Python, JSON or HTML escape it, becomes ``MARKER``. Lines the
student's copy shows are not hidden, nor are short ones (``x = 1``, ``else:``), which are
too common to be a test's own. Code the student's process encodes (reversed, base64)
passes: this filter stops the plain leaks, it does not make the code a secret.
"""
import html
import json
import re

from autograder.scoring.nbcheck import strip_criteria

MARKER = "[hidden test line removed]"
SIGNIFICANT_CHARS = 10  # a shorter line is too common to be a hidden test's own
BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")  # the alphabet notebooks store binary outputs (images) in


def _significant(line):
    return len(line) >= SIGNIFICANT_CHARS and any(char.isalnum() for char in line)


def code_lines(source):
    """The significant lines of a cell's code, stripped, as written and as run (criteria cut)."""
    texts = [source]
    try:
        texts.append(strip_criteria(source))
    except SyntaxError:  # not Python (markdown): nothing is cut from it
        pass
    return {line.strip() for text in texts for line in text.splitlines() if _significant(line.strip())}


def hidden_lines(tests, public=()):
    """The lines to hide: those of the test cells, given as (master source, the source the
    student's copy shows), that neither a student's copy of a test nor a ``public`` text holds."""
    hidden = set().union(*(code_lines(master) for master, _ in tests))
    shown = set().union(*(code_lines(copy) for _, copy in tests), *map(code_lines, public))
    return frozenset(hidden - shown)


def _escaped_forms(line):
    """The line as it reads in printed or displayed data: as it is, inside a Python string
    literal (either quote), inside a JSON string, and escaped for HTML."""
    inner = repr(line)[1:-1]
    return {line, inner, inner.replace("'", "\\'"), inner.replace('"', '\\"'), json.dumps(line)[1:-1],
            html.escape(line), html.escape(line, quote=False)}


class Redactor:
    """Replaces the hidden lines in texts and in JSON-like data (outputs, metadata)."""

    def __init__(self, hidden):
        forms = set().union(*map(_escaped_forms, hidden))
        self.forms = sorted(forms, key=len, reverse=True)  # a longer form first: its parts then stay whole
        # Images are most of a notebook's text, and a line with a space, a dot or a bracket
        # cannot be in base64: they are searched for the other lines only (usually none).
        self.base64_forms = {form for form in forms if BASE64.fullmatch(form)}

    def redact(self, value):
        """``value`` (a string, or JSON-like data) with the hidden lines replaced in every
        string it holds, keys included; ``value`` itself when it holds none (the common case, found in one
        search per line through all of its text)."""
        texts, images = [], []
        for string in _strings(value):
            (images if BASE64.fullmatch(string) else texts).append(string)
        text, image = "\0".join(texts), "\0".join(images)
        found = [form for form in self.forms if form in text or form in self.base64_forms and form in image]
        return _map_strings(value, lambda string: self._replace(string, found)) if found else value

    @staticmethod
    def _replace(text, forms):
        for form in forms:
            text = text.replace(form, MARKER)
        return text


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _map_strings(value, change):
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {_map_strings(key, change): _map_strings(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return [_map_strings(item, change) for item in value]
    return value
