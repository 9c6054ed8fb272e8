"""QuestionTitles: the name a student knows each graded cell by, for the feedback page's
index: the last heading of the assignment's own markdown above it."""
import re

from nbgrader.preprocessors import NbGraderPreprocessor

HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


class QuestionTitles(NbGraderPreprocessor):
    """resources["autograder"]["titles"]: {grade_id: heading}, for the feedback template."""

    def preprocess(self, nb, resources):
        titles, heading = {}, None
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            # Only locked cells: nbgrader restored their text from the master, so a
            # student's own markdown never names a question.
            if cell.cell_type == "markdown" and meta.get("locked"):
                found = HEADING.findall(cell.source)
                heading = found[-1] if found else heading
            if (meta.get("grade") or meta.get("task")) and heading:
                titles[meta["grade_id"]] = heading
        resources.setdefault("autograder", {})["titles"] = titles
        return nb, resources
