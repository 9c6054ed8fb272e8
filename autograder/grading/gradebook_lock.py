"""One run at a time sets up what runs share in a gradebook on a database server.

nbgrader looks before it creates: Gradebook() creates the tables (on PostgreSQL, their
enum types first), the schema version and the course's row when it finds none; Autograde
adds a student it does not find; generate_assignment records an assignment it does not
find. Two runs started together on one database both find nothing and one of them fails
(a duplicate type, table or row). So each run does these steps holding a PostgreSQL
advisory lock (a lock on a number, held by a session, released if it dies) before it
grades, and its grading then finds everything in place.
"""
import contextlib

import sqlalchemy
from nbgrader.api import Gradebook, Student

# The advisory lock's number: any 64-bit value other software on the database does not use.
LOCK_KEY = 0x6E62_6772_6164_6572  # "nbgrader"


@contextlib.contextmanager
def setup_lock(db_url):
    """Held while this run sets up the gradebook on a PostgreSQL server. An SQLite file,
    the embedded default, has no such lock: it serves one grader, whose run sets it up
    before its grading processes start."""
    if sqlalchemy.make_url(db_url).get_backend_name() != "postgresql":
        yield
        return
    engine = sqlalchemy.create_engine(db_url, poolclass=sqlalchemy.NullPool)
    try:
        with engine.connect() as session:
            session.execute(sqlalchemy.select(sqlalchemy.func.pg_advisory_lock(LOCK_KEY)))
            try:
                yield
            finally:
                session.execute(sqlalchemy.select(sqlalchemy.func.pg_advisory_unlock(LOCK_KEY)))
    finally:
        engine.dispose()


def add_students(gb, students):
    """Record the students the gradebook does not know yet, in one commit (nbgrader's
    Autograde then finds them, and adds nothing while another run adds them too)."""
    known = {sid for (sid,) in gb.db.query(Student.id).filter(Student.id.in_(students))}
    gb.db.add_all(Student(id=sid) for sid in dict.fromkeys(students) if sid not in known)
    gb.db.commit()

