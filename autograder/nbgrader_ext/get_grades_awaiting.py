"""GetGradesAwaiting: nbgrader's GetGrades, telling a manual grade not entered yet from a
zero, so that the feedback page says "awaiting grading" and its total leaves it out, as
grades.csv does ("pending")."""
from nbgrader.preprocessors import GetGrades


class GetGradesAwaiting(GetGrades):
    """resources["autograder"]["awaiting"]: {grade_id: points} of the answers to grade by hand
    that have no grade yet; the notebook's max_score without them."""

    def preprocess(self, nb, resources):
        awaiting = resources.setdefault("autograder", {})["awaiting"] = {}
        nb, resources = super().preprocess(nb, resources)
        resources["nbgrader"]["max_score"] -= sum(awaiting.values())
        return nb, resources

    def _get_score(self, cell, resources):
        # GetGrades._get_score, keeping the grade it looked up.
        grade = self.gradebook.find_grade(cell.metadata.nbgrader["grade_id"], self.notebook_id,
                                          self.assignment_id, self.student_id)
        cell.metadata.nbgrader["score"] = grade.score
        cell.metadata.nbgrader["points"] = grade.max_score
        # The rule of grades.csv: a written answer still marked for manual grading.
        if cell.cell_type == "markdown" and grade.needs_manual_grade:
            resources["autograder"]["awaiting"][cell.metadata.nbgrader["grade_id"]] = grade.max_score
