"""The notebook exporter of nbgrader's Autograde (``Autograde.exporter_class``).

nbconvert checks the whole notebook against the nbformat schema after every
preprocessor, and nbformat checks it again on every read: about 20 checks of 1.2 ms for
each graded notebook (sanitizing, autograding, feedback). ``ValidateOnce`` checks once,
after the last preprocessor, so a notebook the preprocessors leave invalid still fails
the conversion, with nbconvert's message.
"""
import nbformat
from nbconvert.exporters import NotebookExporter


class ValidateOnce:
    """For an nbconvert Exporter: validate after all the preprocessors, not after each."""

    def from_file(self, file_stream, resources=None, **kw):
        return self.from_notebook_node(nbformat.convert(nbformat.reader.read(file_stream), 4), resources, **kw)

    def _validate_preprocessor(self, nbc, preprocessor):
        pass

    def _preprocess(self, nb, resources):
        nbc, resc = super()._preprocess(nb, resources)
        try:
            nbformat.validate(nbc, relax_add_props=True)
        except nbformat.ValidationError:
            self.log.error("Notebook is invalid after preprocessors %s", self._preprocessors)
            raise
        return nbc, resc


class AutogradeExporter(ValidateOnce, NotebookExporter):
    pass
