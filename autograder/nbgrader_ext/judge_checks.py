"""JudgeChecks: each test cell's verdict, decided in the grader's process from what the
executor's warden observed (and, for ``same`` checks, the master's own run)."""
from nbformat import from_dict
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool

from autograder import graded_metadata, scoring, settings
from autograder.scoring.nbcheck import is_test_cell


class JudgeChecks(NbGraderPreprocessor):
    """Replace each test cell's outputs by its verdict, decided from the recorded data."""

    partial_credit = Bool(settings.PARTIAL_CREDIT, help=(
        "Share a test cell's points among its checks (by their weight=), so that one failed "
        "check costs only its share; False: a cell earns its points only if every check passes.")
    ).tag(config=True)

    def preprocess(self, nb, resources):
        for cell in nb.cells:
            if not is_test_cell(cell):
                continue
            references = resources.get("references")
            try:
                verdict = scoring.judge_cell(
                    cell.source, cell.outputs, graded_metadata.cell_of(cell).get("status", "ok"),
                    observations=graded_metadata.take_observations(cell),
                    references=None if references is None else references.get(cell.metadata.nbgrader["grade_id"], {}),
                    points=float(cell.metadata.nbgrader["points"]), partial=self.partial_credit)
            except scoring.TestCellError as exc:
                verdict = scoring.CellVerdict(passed=False, lines=[f"[fail] {exc}"], failed=["test cell"],
                                              public_messages=[str(exc)], score=0.0)
            cell.outputs = [from_dict(o) for o in scoring.verdict_outputs(verdict)]
            graded_metadata.write_verdict(cell, verdict)
        return nb, resources
