"""HideTestCode: the last filter, after the verdicts are written (autograder/scoring/redaction.py)."""
import functools

from nbformat import NotebookNode, from_dict
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor

from autograder import graded_metadata
from autograder.scoring import redaction
from autograder.scoring.nbcheck import is_test_cell


class HideTestCode(NbGraderPreprocessor):
    """The last filter (autograder/scoring/redaction.py), after the verdicts are written: every line of
    the hidden tests is replaced in the cells' outputs, the verdicts and the notes, whatever
    the student's process printed, raised or displayed."""

    def preprocess(self, nb, resources):
        clear = ClearHiddenTests(parent=self)
        tests = tuple(cell.source for cell in nb.cells if is_test_cell(cell))
        public = tuple(cell.source for cell in nb.cells if utils.is_locked(cell) and not is_test_cell(cell))
        redactor = _redactor(tests, public, clear.begin_test_delimeter, clear.end_test_delimeter)
        nodes = [nb, *nb.cells]
        stored = [[node.metadata.get(graded_metadata.KEY, {}), node.get("outputs", [])] for node in nodes]
        redacted = redactor.redact(stored)  # one search through all of it
        if redacted is not stored:
            for node, (metadata, outputs) in zip(nodes, redacted):
                if graded_metadata.KEY in node.metadata:
                    node.metadata[graded_metadata.KEY] = from_dict(metadata)
                if "outputs" in node:
                    node.outputs = [from_dict(o) for o in outputs]
        return nb, resources


@functools.lru_cache(maxsize=8)  # the same master's cells come back for every student
def _redactor(tests, public, begin_delimiter, end_delimiter):
    """The filter of the hidden lines of ``tests`` (the test cells' trusted sources, restored
    by nbgrader), less the lines the student's copy shows: these tests without their hidden
    part, as nbgrader releases them, and the other locked cells (``public``)."""
    clear = ClearHiddenTests(begin_test_delimeter=begin_delimiter, end_test_delimeter=end_delimiter)
    copies = []
    for source in tests:
        cell = NotebookNode(source=source)
        clear._remove_hidden_test_region(cell)
        copies.append((source, cell.source))
    return redaction.Redactor(redaction.hidden_lines(copies, public))
