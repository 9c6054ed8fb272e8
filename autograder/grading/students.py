"""Who each student is, in nbgrader's gradebook: the name and LMS id that the roster or
the LMS's download gave, which nbgrader's exports (and ours, for the LMS) read back."""
from nbgrader.api import Gradebook, Student

from autograder.grading.pipeline import use_speedups


def split_name(name):
    """(first, last) of "Last, First" (Canvas's sortable form) or "First Last"."""
    if "," in name:
        last, first = (part.strip() for part in name.split(",", 1))
        return first or None, last or None
    first, _, last = name.strip().rpartition(" ")
    return first or None, last or None


def record(course, subs):
    """Set the name and LMS id of every student of ``subs`` that has one, adding the
    students not yet in the gradebook (a roster's students without a submission): all in
    one transaction."""
    known = {s.student_id: s for s in subs if s.name or s.lms_id}
    if not known:
        return
    use_speedups(course)
    with Gradebook(course.db_url) as gb:
        rows = {row.id: row for row in gb.db.query(Student).filter(Student.id.in_(list(known)))}
        for student, sub in known.items():
            row = rows.get(student) or Student(id=student)
            if sub.name:
                row.first_name, row.last_name = split_name(sub.name)
            if sub.lms_id:
                row.lms_user_id = sub.lms_id
            gb.db.add(row)
        gb.db.commit()
