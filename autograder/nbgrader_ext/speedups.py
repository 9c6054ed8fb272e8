"""Costs nbgrader pays again for every notebook, paid once per process instead.

Each change keeps nbgrader's behaviour and results (tests/test_speedups_differential.py
grades with and without them). ``apply()`` puts them into nbgrader, and only the grading
processes call it: loading the course configuration, and so every other nbgrader command,
leaves nbgrader as installed.
"""
import functools
import inspect
import json
import os

import fastjsonschema
import jsonschema
import nbgrader.api
import nbgrader.nbgraderformat.common
import sqlalchemy
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from nbgrader import utils
from nbgrader.api import (Assignment, Comment, Grade, GradeCell, InvalidEntry, MissingEntry, Notebook, SolutionCell,
                          SourceCell, Student, SubmittedAssignment, SubmittedNotebook, TaskCell, new_uuid)
from nbgrader.dbutil import ALEMBIC_DIR
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import undefer
from sqlalchemy.orm.exc import FlushError, NoResultFound


@functools.lru_cache(maxsize=None)
def create_engine(url, **kwargs):
    """nbgrader opens a new SQLAlchemy engine for each of the ~10 Gradebook objects it uses
    per notebook, and each new engine compiles every query again: keep one per URL."""
    engine = sqlalchemy.create_engine(url, **kwargs)
    _engines.append((engine, engine.dispose))
    # Gradebook.close() disposes of the engine, closing its pooled connections, so the
    # next Gradebook would connect again: this engine lives as long as the process.
    engine.dispose = lambda close=True: None
    if engine.dialect.name == "sqlite":
        # Write-ahead log: commits (dozens per notebook) skip a sync each, readers never
        # block the writer; a crash may lose the last commits, never corrupt the file.
        sqlalchemy.event.listen(engine, "connect", _sqlite_wal)
    return engine


_engines = []  # (engine, its own dispose)


def _forget_engines():
    """In a forked child: leave the parent's pooled connections to the parent (SQLAlchemy's
    advice: dispose with close=False) and open engines of its own."""
    for _, dispose in _engines:
        dispose(close=False)
    _engines.clear()
    create_engine.cache_clear()
    _TableNames.known.clear()
    _courses_present.clear()


def _sqlite_wal(connection, _):
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")


_create_all = nbgrader.api.Base.metadata.create_all


@functools.lru_cache(maxsize=None)
def _create_all_once(bind):
    _create_all(bind=bind)


def create_all(bind=None, **kwargs):
    """Gradebook() checks that every table exists each time it opens; once per engine will do."""
    if kwargs:
        return _create_all(bind=bind, **kwargs)
    _create_all_once(bind)


class _TableNames:
    """Gradebook() asks ``sqlalchemy.inspect(engine)`` for the gradebook's table names on
    every open, only to learn whether the tables exist yet; once they do, they stay."""
    known = {}  # engine -> its table names

    def __init__(self, engine):
        self.engine = engine

    def get_table_names(self):
        names = self.known.get(self.engine) or sqlalchemy.inspect(self.engine).get_table_names()
        if names:
            self.known[self.engine] = names
        return names


_check_course = nbgrader.api.Gradebook.check_course
_courses_present = set()  # (engine, course id)


def check_course(self, course_id="default_course", **kwargs):
    """Gradebook() makes sure its course's row exists, with a query and a commit, on every
    open; once the row exists it stays, so ask once per engine. (Gradebook() ignores the
    Course returned; so does this shortcut, which returns None, as nbgrader does for a new one.)"""
    if kwargs or (self.engine, course_id) not in _courses_present:
        course = _check_course(self, course_id=course_id, **kwargs)
        _courses_present.add((self.engine, course_id))
        return course
    return None


def _looked_up_together(find, load_all):
    """Gradebook.find_X(name, *scope) answered from one query for every name in that scope,
    made once per Gradebook (one session): nbgrader's preprocessors look up the cells,
    grades and comments of a notebook one query at a time, a millisecond each. A name the
    query did not return is looked up as before, so a row added since is still found; after
    the session commits, lookups are nbgrader's own again (a commit expires what was loaded)."""
    signature = inspect.signature(find)

    @functools.wraps(find)
    def find_together(self, *args, **kwargs):
        loaded = self.__dict__.get("_looked_up_together")
        if loaded is None:
            loaded = self._looked_up_together = {}
            sqlalchemy.event.listen(self.db(), "after_commit", lambda session: loaded.update(committed=True))
        if loaded.get("committed"):
            return find(self, *args, **kwargs)
        name, *scope = signature.bind(self, *args, **kwargs).args[1:]
        key = (find.__name__, *scope)
        if key not in loaded:
            loaded[key] = load_all(self.db, *scope)
        found = loaded[key].get(name)
        return found if found is not None else find(self, *args, **kwargs)
    return find_together


# The lookups' queries are built once, with parameters: building one costs more than
# running it (a millisecond of SQLAlchemy's Python for six joins).
_NOTEBOOK, _ASSIGNMENT, _STUDENT = (sqlalchemy.bindparam(name) for name in ("notebook", "assignment", "student"))
_SUBMITTED_JOINS = [(SubmittedAssignment, SubmittedAssignment.id == SubmittedNotebook.assignment_id),
                    (Assignment, Assignment.id == SubmittedAssignment.assignment_id),
                    (Student, Student.id == SubmittedAssignment.student_id)]


def _join_all(query, joins):
    for target, on in joins:
        query = query.join(target, on)
    return query


def master_cells_statement(kind, *columns):
    """``select(*columns)`` over the cells of ``kind`` in one master notebook, built once;
    run it with {"notebook": ..., "assignment": ...}."""
    return (sqlalchemy.select(*columns)
            .join(Notebook, Notebook.id == kind.notebook_id)
            .join(Assignment, Assignment.id == Notebook.assignment_id)
            .where(Notebook.name == _NOTEBOOK, Assignment.name == _ASSIGNMENT))


def _master_cells(kind):
    query = master_cells_statement(kind, kind.name, kind)

    def load_all(db, notebook, assignment):
        return dict(db.execute(query, {"notebook": notebook, "assignment": assignment}).all())
    return load_all


def _submitted(row, *cell_kinds, undeferred=()):
    """{cell name: row} for a student's notebook; the first cell kind wins a shared name,
    as nbgrader's lookups try them in this order. ``undeferred``: columns nbgrader defers
    but reads from every row (a query per row otherwise), loaded in the same query."""
    joins = [(SubmittedNotebook, SubmittedNotebook.id == row.notebook_id),
             (Notebook, Notebook.id == SubmittedNotebook.notebook_id), *_SUBMITTED_JOINS]
    queries = [_join_all(sqlalchemy.select(kind.name, row).options(*map(undefer, undeferred)),
                         [(kind, kind.id == row.cell_id), *joins])
               .where(Notebook.name == _NOTEBOOK, Assignment.name == _ASSIGNMENT, Student.id == _STUDENT)
               for kind in reversed(cell_kinds)]

    def load_all(db, notebook, assignment, student):
        found = {}
        for query in queries:
            found.update(db.execute(query, {"notebook": notebook, "assignment": assignment, "student": student}).all())
        return found
    return load_all


def _graded_cells(db, notebook, assignment):
    return {**_master_cells(TaskCell)(db, notebook, assignment), **_master_cells(GradeCell)(db, notebook, assignment)}


def _found_by_statement(find, entity, joins, where, missing):
    """Gradebook.find_X(*keys) as nbgrader's, from a statement built once: nbgrader builds
    its query again on every call (half a millisecond of SQLAlchemy's Python for a few
    joins), about ten calls a student. Same row, same MissingEntry."""
    query = _join_all(sqlalchemy.select(entity), joins).where(*where)
    signature = inspect.signature(find)

    @functools.wraps(find)
    def found(self, *args, **kwargs):
        keys = signature.bind(self, *args, **kwargs).args[1:]
        try:
            return self.db.execute(query, {f"key{i}": key for i, key in enumerate(keys)}).scalar_one()
        except NoResultFound:
            raise MissingEntry(missing.format(*keys)) from None
    return found


def _key(index):
    return sqlalchemy.bindparam(f"key{index}")


_FOUND_BY_STATEMENT = {  # nbgrader's find_X: (entity, joins, conditions on its arguments, message if none)
    "find_assignment": (Assignment, [], [Assignment.name == _key(0)], "No such assignment: {}"),
    "find_student": (Student, [], [Student.id == _key(0)], "No such student: {}"),
    "find_notebook": (Notebook, [(Assignment, Assignment.id == Notebook.assignment_id)],
                      [Notebook.name == _key(0), Assignment.name == _key(1)], "No such notebook: {1}/{0}"),
    "find_submission": (SubmittedAssignment, _SUBMITTED_JOINS[1:], [Assignment.name == _key(0), Student.id == _key(1)],
                        "No such submission: {} for {}"),
    "find_submission_notebook": (
        SubmittedNotebook, [(Notebook, Notebook.id == SubmittedNotebook.notebook_id), *_SUBMITTED_JOINS],
        [Notebook.name == _key(0), Assignment.name == _key(1), Student.id == _key(2)],
        "No such submitted notebook: {1}/{0} for {2}"),
}


_add_submission = nbgrader.api.Gradebook.add_submission
_SUBMISSION_FIELDS = {"timestamp", "extension"}


def add_submission(self, assignment, student, **kwargs):
    """Gradebook.add_submission: the same rows (a submission, its notebooks, an empty grade
    and comment per cell, with the columns' defaults), written with one INSERT per table,
    where nbgrader builds an ORM object for each (some thirty a student) and flushes them."""
    if set(kwargs) - _SUBMISSION_FIELDS:
        return _add_submission(self, assignment, student, **kwargs)
    if "timestamp" in kwargs:
        kwargs["timestamp"] = utils.parse_utc(kwargs["timestamp"])
    master = self.find_assignment(assignment)
    self.find_student(student)
    submission_id = new_uuid()
    try:
        self.db.execute(sqlalchemy.insert(SubmittedAssignment),
                        [{"id": submission_id, "assignment_id": master.id, "student_id": student, **kwargs}])
        for notebook in master.notebooks:
            notebook_id = new_uuid()
            self.db.execute(sqlalchemy.insert(SubmittedNotebook),
                            [{"id": notebook_id, "assignment_id": submission_id, "notebook_id": notebook.id}])
            for table, cells in ((Grade, notebook.grade_cells + notebook.task_cells),
                                 (Comment, notebook.solution_cells + notebook.task_cells)):
                if cells:
                    self.db.execute(sqlalchemy.insert(table),
                                    [{"notebook_id": notebook_id, "cell_id": cell.id} for cell in cells])
        self.db.commit()
    except (IntegrityError, FlushError, StatementError) as e:
        self.db.rollback()
        raise InvalidEntry(*e.args)
    return self.db.get(SubmittedAssignment, submission_id)


def alembic_head():
    """The gradebook schema's version, which nbgrader records in a new gradebook by running
    the `alembic` command (4 s); read from the same migration scripts in this process."""
    config = AlembicConfig()
    config.set_main_option("script_location", ALEMBIC_DIR)
    return ScriptDirectory.from_config(config).get_current_head()


@functools.lru_cache(maxsize=None)
def _metadata_validators(schema_json):
    """(compiled check, jsonschema validator) of a schema, which is checked once."""
    schema = json.loads(schema_json)
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    # use_default=False: fastjsonschema would otherwise write the schema's defaults into
    # the metadata it checks (e.g. "task": false), which jsonschema never does.
    return fastjsonschema.compile(schema, use_default=False), validator(schema)


def validate(instance, schema):
    """jsonschema.validate, which checks the schema itself on every call (nbgrader calls it
    for every cell, twice per notebook), with the schema checked once. A compiled check
    passes valid metadata ten times faster; what it rejects goes to jsonschema, whose
    verdict and error are the ones raised."""
    fast, thorough = _metadata_validators(json.dumps(schema, sort_keys=True))
    try:
        fast(instance)
        return
    except fastjsonschema.JsonSchemaException:
        pass
    error = jsonschema.exceptions.best_match(thorough.iter_errors(instance))
    if error is not None:
        raise error


class _Jsonschema:
    """What nbgrader's metadata validator uses of jsonschema."""
    validate = staticmethod(validate)


_applied = []


def apply():
    """Put the speedups into nbgrader (once per process; a fork inherits them)."""
    if _applied:
        return
    _applied.append(True)
    os.register_at_fork(after_in_child=_forget_engines)
    nbgrader.api.create_engine = create_engine
    nbgrader.api.Base.metadata.create_all = create_all
    nbgrader.api.get_alembic_version = alembic_head
    nbgrader.api.inspect = _TableNames
    nbgrader.api.Gradebook.check_course = check_course
    nbgrader.api.Gradebook.add_submission = add_submission
    for name, load_all in [("find_source_cell", _master_cells(SourceCell)), ("find_graded_cell", _graded_cells),
                           ("find_grade", _submitted(Grade, GradeCell, TaskCell, undeferred=[Grade.max_score])),
                           ("find_comment", _submitted(Comment, SolutionCell, TaskCell))]:
        setattr(nbgrader.api.Gradebook, name, _looked_up_together(getattr(nbgrader.api.Gradebook, name), load_all))
    for name, (entity, joins, where, missing) in _FOUND_BY_STATEMENT.items():
        setattr(nbgrader.api.Gradebook, name,
                _found_by_statement(getattr(nbgrader.api.Gradebook, name), entity, joins, where, missing))
    nbgrader.nbgraderformat.common.jsonschema = _Jsonschema
