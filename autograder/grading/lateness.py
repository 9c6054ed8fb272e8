"""Late work in a grading run, through nbgrader's own records: the due date is the
assignment's ``duedate`` in the gradebook (``grade --due`` records it there), a submission's
time goes to nbgrader in its ``timestamp.txt``, and nbgrader's AssignLatePenalties stores
the penalty the course's policy (nbgrader_ext/late_policy.py) gives."""
from dataclasses import dataclass
from datetime import datetime, timezone

from nbgrader.api import Assignment, Gradebook, MissingEntry, SubmittedAssignment, SubmittedNotebook
from sqlalchemy import func

from autograder.grading import pipeline

# How nbgrader's exchange writes it, and so how nbgrader reads it back (in UTC: nbgrader
# would read a numeric offset as seconds).
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f UTC"


def _utc(naive):
    """The gradebook's naive UTC datetime as an aware one."""
    return naive.replace(tzinfo=timezone.utc) if naive is not None else None


def due_date(course, assignment, record=None):
    """The assignment's due date (aware, or None), after recording ``record`` as it (the
    assignment is in the gradebook: pipeline.ensure_assignment)."""
    pipeline.use_speedups(course)
    with Gradebook(course.db_url) as gb:
        if record is not None:
            gb.update_or_create_assignment(assignment, duedate=record.astimezone(timezone.utc).replace(tzinfo=None))
        try:
            return _utc(gb.find_assignment(assignment).duedate)
        except MissingEntry:
            return None


def write_timestamp(folder, when):
    """Tell nbgrader when the submission in ``folder`` was handed in."""
    (folder / "timestamp.txt").write_text(when.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT) + "\n")


def forget_times(course, assignment, students):
    """Clear the time nbgrader recorded for these students' earlier submissions: nbgrader
    keeps it when a new one comes without timestamp.txt, and would judge that by it."""
    if not students:
        return
    pipeline.use_speedups(course)
    with Gradebook(course.db_url) as gb:
        ids = gb.db.query(Assignment.id).filter(Assignment.name == assignment).scalar_subquery()
        gb.db.query(SubmittedAssignment).filter(
            SubmittedAssignment.assignment_id == ids, SubmittedAssignment.student_id.in_(students),
            SubmittedAssignment.timestamp.isnot(None)).update({"timestamp": None}, synchronize_session=False)
        gb.db.commit()


@dataclass
class Lateness:
    submitted_at: datetime  # aware; None when nbgrader has no time for the submission
    due: datetime  # the student's due date, extension included; None when there is none
    seconds_late: float  # 0 when on time
    penalty: float  # points taken off by nbgrader's AssignLatePenalties


def lateness(course, assignment):
    """{student: Lateness} from nbgrader's gradebook, in one query."""
    pipeline.use_speedups(course)
    found = {}
    with Gradebook(course.db_url) as gb:
        penalty = func.coalesce(func.sum(SubmittedNotebook.late_submission_penalty), 0.0)
        query = (gb.db.query(SubmittedAssignment.student_id, SubmittedAssignment.timestamp, Assignment.duedate,
                             SubmittedAssignment.extension, penalty)
                 .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
                 .outerjoin(SubmittedNotebook, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
                 .filter(Assignment.name == assignment)
                 .group_by(SubmittedAssignment.id, Assignment.duedate))
        for student, timestamp, duedate, extension, points in query:
            due = duedate + extension if duedate is not None and extension is not None else duedate
            seconds = max(0.0, (timestamp - due).total_seconds()) if timestamp and due else 0.0
            found[student] = Lateness(_utc(timestamp), _utc(due), seconds, float(points))
    return found
