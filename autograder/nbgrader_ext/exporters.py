"""The notebook exporter of nbgrader's Autograde (``Autograde.exporter_class``).

nbconvert checks the whole notebook against the nbformat schema after every
preprocessor, and nbformat checks it again on every read: some twenty checks for
each graded notebook (sanitizing, autograding, feedback). ``ValidateOnce`` checks once,
after the last preprocessor, so a notebook the preprocessors leave invalid still fails
the conversion, with nbconvert's message; and it copies the notebook two times fewer.
``AutogradeExporter`` also writes it without nbformat's third copy and second check.
"""
import copy
import json

import nbformat
from nbconvert.exporters import Exporter, NotebookExporter
from nbformat.v4.rwbase import split_lines, strip_transient
from nbformat.v4.nbjson import BytesEncoder


class ValidateOnce:
    """For an nbconvert Exporter: validate after all the preprocessors, not after each."""

    def from_file(self, file_stream, resources=None, **kw):
        return self.from_notebook_node(nbformat.convert(nbformat.reader.read(file_stream), 4), resources, **kw)

    def _preprocess(self, nb, resources):
        # nbconvert's own _preprocess, less two copies: ``nb`` is already from_notebook_node's
        # private deep copy, which nbconvert copies again and nbformat's normalize once more
        # (three exports a student). It is normalized in place, as normalize
        # does to its copy.
        version, version_minor = nbformat.reader.get_version(nb)
        nbformat.validator._normalize(nb, version, version_minor, True, relax_add_props=False,
                                      strip_invalid_metadata=False)
        resc = copy.deepcopy(resources)
        for preprocessor in self._preprocessors:
            nb, resc = preprocessor(nb, resc)
        try:
            nbformat.validate(nb, relax_add_props=True)
        except nbformat.ValidationError:
            self.log.error("Notebook is invalid after preprocessors %s", self._preprocessors)
            raise
        return nb, resc


class AutogradeExporter(ValidateOnce, NotebookExporter):
    def from_notebook_node(self, nb, resources=None, **kw):
        """NotebookExporter's: the same file, written as nbformat writes a v4 notebook, less
        nbformat's copy and second check of it (twice a student): the
        notebook written is this export's private copy, checked once already."""
        if nb.nbformat != 4 or self.nbformat_version != 4:
            return super().from_notebook_node(nb, resources, **kw)
        nb_copy, resources = Exporter.from_notebook_node(self, nb, resources, **kw)
        resources["output_suffix"] = ".nbconvert"
        output = json.dumps(strip_transient(split_lines(nb_copy)), cls=BytesEncoder, indent=1, sort_keys=True,
                            separators=(",", ": "), ensure_ascii=False)
        return output + "\n", resources
