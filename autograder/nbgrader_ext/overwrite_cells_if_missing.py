"""OverwriteCellsIfMissing: nbgrader's OverwriteCells, searching for deleted cells only
when one is missing."""
from nbgrader import utils
from nbgrader.api import GradeCell, TaskCell
from nbgrader.preprocessors import OverwriteCells

from autograder.nbgrader_ext.speedups import master_cells_statement


class OverwriteCellsIfMissing(OverwriteCells):
    """nbgrader's OverwriteCells, whose search for deleted cells to add back loads every
    cell of the master for every student; it searches only when one query of the master's
    graded and task cell names finds one missing, as it does on the same test."""

    _queries = {kind: master_cells_statement(kind, kind.name) for kind in (GradeCell, TaskCell)}

    def _master_names(self, kind):
        found = self.gradebook.db.execute(self._queries[kind], {"notebook": self.notebook_id,
                                                                "assignment": self.assignment_id})
        return set(found.scalars())

    def add_missing_grade_cells(self, nb, resources):
        present = {c.metadata.nbgrader["grade_id"] for c in nb.cells if utils.is_grade(c) or utils.is_solution(c)}
        if self._master_names(GradeCell) <= present:
            return nb, resources
        return super().add_missing_grade_cells(nb, resources)

    def add_missing_task_cells(self, nb, resources):
        present = {c["metadata"]["nbgrader"].get("grade_id") for c in nb.cells if "nbgrader" in c["metadata"]}
        if self._master_names(TaskCell) <= present:
            return nb, resources
        return super().add_missing_task_cells(nb, resources)
