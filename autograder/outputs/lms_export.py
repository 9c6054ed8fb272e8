"""Grades for an LMS, from nbgrader's gradebook, as nbgrader export plugins.

``nbgrader export --exporter=autograder.outputs.lms_export.CanvasExportPlugin`` writes
what ``grade`` writes in ``OUTDIR/canvas_grades.csv`` (``LmsExportPlugin``:
``lms_grades.csv``), from the same code.

Canvas's gradebook import (lib/gradebook_importer.rb) wants a header of ``Student``,
``ID``, ``SIS User ID``, ``SIS Login ID``, ``Section``, then a column per assignment,
``<title> (<Canvas assignment id>)`` (a title alone is matched by title, and an unknown
one becomes a new assignment); a row whose first cell says ``Points Possible``; then a row
per student, found by ``ID`` (the Canvas user id), else the SIS ids, else the name. An
empty cell changes nothing, which is what a student without a submission gets.
"""
import csv

from nbgrader.api import Assignment, Gradebook, SubmittedAssignment
from nbgrader.plugins import ExportPlugin
from traitlets import Dict

CANVAS_FILE = "canvas_grades.csv"
LMS_FILE = "lms_grades.csv"
CANVAS_STUDENT_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]


def points(value):
    """A score as written for an LMS: no exponent, no trailing zeros ('' when none)."""
    return "" if value is None else f"{value:.4f}".rstrip("0").rstrip(".")


def display_name(student):
    """Canvas's sortable form of a name, "Last, First"."""
    return ", ".join(n for n in (student.last_name, student.first_name) if n)


class GradebookTable(ExportPlugin):
    """The students and assignments asked for (all by default), and the score of each
    submission after its late penalty, read in one query."""

    def table(self, gradebook):
        assignments = [a for a in gradebook.assignments if not self.assignment or a.name in self.assignment]
        students = sorted((s for s in gradebook.students if not self.student or s.id in self.student),
                          key=lambda s: (s.last_name or "", s.first_name or "", s.id))
        scores = {(student, name): max(0.0, score - (penalty or 0.0)) for student, name, score, penalty in
                  gradebook.db.query(SubmittedAssignment.student_id, Assignment.name, SubmittedAssignment.score,
                                     SubmittedAssignment.late_submission_penalty).join(Assignment)
                  .filter(Assignment.name.in_([a.name for a in assignments]))}
        return assignments, students, scores

    def destination(self, default):
        self.log.info("Exporting grades to %s", self.to or default)
        return open(self.to or default, "w", newline="", encoding="utf-8")


class CanvasExportPlugin(GradebookTable):
    """A CSV file for Canvas's gradebook import."""

    columns = Dict(key_trait=None, value_trait=None, default_value={},
                   help="The Canvas column of each nbgrader assignment, e.g. {'param_access': "
                        "'Parameter access (4821)'}; by default the assignment's name.").tag(config=True)

    def export(self, gradebook: Gradebook) -> None:
        assignments, students, scores = self.table(gradebook)
        with self.destination(CANVAS_FILE) as f:
            writer = csv.writer(f)
            writer.writerow(CANVAS_STUDENT_COLUMNS + [self.columns.get(a.name, a.name) for a in assignments])
            writer.writerow(["Points Possible", "", "", "", ""] + [points(a.max_score) for a in assignments])
            for student in students:
                writer.writerow([display_name(student), student.lms_user_id or "", "", "", ""]
                                + [points(scores.get((student.id, a.name))) for a in assignments])


class LmsExportPlugin(GradebookTable):
    """A plain CSV file for any LMS: a row per student and assignment."""

    def export(self, gradebook: Gradebook) -> None:
        assignments, students, scores = self.table(gradebook)
        with self.destination(LMS_FILE) as f:
            writer = csv.writer(f)
            writer.writerow(["student_id", "lms_id", "name", "assignment", "points", "max_points"])
            for assignment in assignments:
                for student in students:
                    writer.writerow([student.id, student.lms_user_id or "", display_name(student), assignment.name,
                                     points(scores.get((student.id, assignment.name))), points(assignment.max_score)])


def write(config, db_url, assignment, students, out):
    """``grade``'s exports: ``assignment``'s grades of ``students`` into the folder ``out``."""
    with Gradebook(db_url) as gradebook:
        for plugin, name in ((CanvasExportPlugin, CANVAS_FILE), (LmsExportPlugin, LMS_FILE)):
            plugin(config=config, to=str(out / name), assignment=[assignment], student=list(students)).export(gradebook)
