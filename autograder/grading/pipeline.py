"""The grading core: nbgrader's Autograde, with our preprocessors, over many students.

Every way of grading goes through ``autograde``: the ``grade`` command, the Gradescope
bundle and the tests. It spreads the students over ``jobs`` grading processes; each runs
nbgrader's Autograde student after student, with its own lane of the warm sandboxed
executor, all of them writing to the one nbgrader gradebook; then they share the feedback.
"""
import gc
import hashlib
import json
import logging
import multiprocessing
import os
import queue
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass

import nbformat
import sqlalchemy.exc
from nbgrader.api import (Assignment, Comment, Grade, Gradebook, GradeCell, MissingEntry, SubmittedAssignment,
                          SubmittedNotebook)
from nbgrader.apps import NbGraderAPI

from autograder.grading import gradebook_lock
from autograder.nbgrader_ext import speedups
from autograder.grading.course import Course, jobs, warm_lanes
from autograder.nbgrader_ext import ExecuteSandboxed

log = logging.getLogger(__name__)
FEEDBACK_SHARE = 10  # feedback pages a grading process writes in one run while others are graded

# nbgrader's gradebook code trips SQLAlchemy's autoflush warnings on every notebook: noise.
warnings.filterwarnings("ignore", category=sqlalchemy.exc.SAWarning)


def use_speedups(course):
    """nbgrader with our speedups in this grading process, unless the course turns them off."""
    if course.speedups:
        speedups.apply()


def ensure_assignment(course, assignment, students=()):
    """Record the assignment's master (generating a release copy aside) and the students in
    the gradebook, one run at a time (other runs may be setting up the same database)."""
    use_speedups(course)
    with gradebook_lock.setup_lock(course.db_url):
        _ensure_assignment(course, assignment, students)


def _ensure_assignment(course, assignment, students):
    with Gradebook(course.db_url) as gb:
        gradebook_lock.add_students(gb, students)
        try:
            if gb.find_assignment(assignment).notebooks:
                return
        except MissingEntry:
            pass
    # nbgrader logs each step at INFO, whatever the configured level, and the run's own
    # log would print it: its API keeps that log, and the error below says what failed.
    nbgrader_log = logging.getLogger("traitlets")
    propagate, nbgrader_log.propagate = nbgrader_log.propagate, False
    try:
        with tempfile.TemporaryDirectory() as release:
            config = course.config()
            config.CourseDirectory.release_directory = release
            result = NbGraderAPI(config=config).generate_assignment(assignment, force=True, create=True)
    finally:
        nbgrader_log.propagate = propagate
    if not result["success"]:
        raise RuntimeError(f"nbgrader could not record assignment {assignment}:\n{result.get('error')}")


def autograde(course, assignment, students, progress=None, feedback=False, graders=None):
    """Autograde the students' submissions in submitted/; return {student: outcome}, each
    outcome {"success", "error", "seconds"} (the time nbgrader took over that student).

    With ``feedback``, nbgrader's feedback is written too, once every student is graded,
    shared evenly among the grading processes. ``progress(student, result)`` is called as
    each one is graded.
    ``graders``: grading processes started ahead (``Graders``), which the caller closes;
    by default they start now and are closed before this returns.
    """
    use_speedups(course)
    if graders is not None:
        return graders.grade(students, progress)
    if min(jobs(course), len(students)) == 1:  # in this process: no start-up cost, easier to debug
        tasks, done = queue.Queue(), queue.Queue()
        _start_executor(course)
        ensure_assignment(course, assignment, students)
        for student in students:
            tasks.put(student)
        tasks.put(None)
        _grading_process(course, assignment, tasks, done)
        results = _collect(done, students, progress, [])
        if feedback:
            _write_feedback(course.api(), course, assignment, graded(results))
        return results
    with Graders(course, assignment, feedback, count=min(jobs(course), len(students))) as graders:
        return graders.grade(students, progress)


class Graders:
    """A run's grading processes, started ahead: they warm the executor while the caller
    still prepares the submissions, then grade the students ``grade`` hands out. The
    executor is one warm worker with a lane for each of them (execution.WarmLanes)."""

    def __init__(self, course, assignment, feedback=False, count=None, lanes=None):
        self.course, self.assignment, self.feedback = course, assignment, feedback
        self.feedback_pending = 0
        if lanes is None and course.executor == "fork":
            lanes = warm_lanes(course, assignment, count)
        self.lanes = lanes
        slots = lanes.lanes if lanes else [None] * (count or jobs(course))
        # Forked, the processes start with nbgrader already imported (2.5 s each when
        # spawned); a process with threads cannot fork safely, so it spawns them.
        forking = threading.active_count() == 1
        context = multiprocessing.get_context("fork" if forking else "spawn")
        self.tasks, self.done = context.Queue(), context.Queue()

        def others(lane):  # a fork inherits every lane's channel; it keeps only its own
            return [s for _, s in lanes.lanes if s is not lane[1]] if forking and lane else []

        self.workers = [context.Process(target=_grading_process, daemon=True,
                                        args=(course, assignment, self.tasks, self.done, lane, others(lane)))
                        for lane in slots]
        for worker in self.workers:
            worker.start()
        self.closed = False

    def grade(self, students, progress=None):
        """Grade the students; return once they are graded, while the processes may still be
        writing the feedback: ``close`` waits for that."""
        try:
            ensure_assignment(self.course, self.assignment, students)
            dealer = Dealer(self.tasks, len(self.workers), students, self.feedback)
            results = _collect(self.done, students, dealer.watching(progress), self.workers)
            self.feedback_pending = dealer.dealt
            return results
        except BaseException:
            self.close()
            raise

    def close(self):
        """Let the processes finish (the feedback included) and end."""
        if self.closed:
            return
        self.closed = True
        for _ in self.workers:
            self.tasks.put(None)
        for worker in self.workers:
            worker.join(timeout=60 + self.feedback_pending)  # a second a page is ample
            if worker.is_alive():
                worker.kill()
        if self.lanes is not None:
            self.lanes.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Dealer:
    """Hands the grading processes their tasks through the queue they share. Students go
    in as processes take them (two ahead for each process), so that the pages of those
    graded, with ``feedback``, come before the next student: in shares of
    ``FEEDBACK_SHARE`` as they are ready (each a feedback run, which costs about two pages
    to start), and few are left for the end. Once fewer students are left to grade than
    there are processes, what is ready is split among them: one that sits out a slow
    submission (a time-out) leaves the others idle, and they write the pages meanwhile."""

    def __init__(self, tasks, workers, students, feedback):
        self.tasks, self.workers, self.feedback = tasks, workers, feedback
        self.waiting = list(reversed(students))
        self.left, self.ready, self.dealt = len(students), [], 0
        for _ in range(workers * 2):
            self._next_student()

    def watching(self, progress):
        """``progress`` for _collect, that also deals."""
        def graded(student, result):
            if progress:
                progress(student, result)
            self.graded(student, result["success"])
        return graded

    def graded(self, student, success):
        self.left -= 1
        if self.feedback and success:
            self.ready.append(student)
        if self.ready and self.left < self.workers:  # a process is idle, or will be when this is dealt
            self._deal(-(-len(self.ready) // self.workers))
        elif len(self.ready) >= FEEDBACK_SHARE:
            self._deal(FEEDBACK_SHARE)
        self._next_student()

    def _next_student(self):
        if self.waiting:
            self.tasks.put(self.waiting.pop())

    def _deal(self, size):
        for start in range(0, len(self.ready), size):
            self.tasks.put(("feedback", self.ready[start:start + size]))
        self.dealt += len(self.ready)
        self.ready = []


DIED = {"success": False, "error": "the grading process died"}


def _collect(done, students, progress, workers):
    """{student: result} as the grading processes report them. A process that dies takes
    the student it was grading with it (it said which, as it started): that student is
    reported failed and the others go on; once none is left alive, so are all the rest."""
    results, grading = {}, {}  # grading: {pid of a process: the student it started}

    def report(student, result):
        results[student] = result
        if progress:
            progress(student, result)

    while len(results) < len(students):
        try:
            student, result = done.get(timeout=1)
        except queue.Empty:
            alive = {w.pid for w in workers if w.is_alive()}
            if not alive:  # none left (in this process: none ever), so no result will come
                break
            for pid in set(grading) - alive:
                report(grading.pop(pid), dict(DIED))
            continue
        if "started" in result:
            grading[result["started"]] = student
            continue
        grading = {pid: taken for pid, taken in grading.items() if taken != student}
        report(student, result)
    for student in students:  # the next run retries them
        results.setdefault(student, dict(DIED))
    return results


def _start_executor(course, lane=None):
    if course.executor == "fork":
        ExecuteSandboxed.start_pool(course.executor_hidden(), lane)


def graded(results):
    return [student for student, result in results.items() if result["success"]]


def _grading_process(course, assignment, tasks, done, lane=None, other_lanes=()):
    """One grading process: until None comes from ``tasks``, autograde each student that
    does, or write the feedback of a ("feedback", [students]) share."""
    for other in other_lanes:  # inherited by a fork: the other processes' channels
        other.close()
    # What the process holds now (nbgrader and its imports, a fork's inheritance) lives as
    # long as it does: the collector need not walk it again, nor write to (and so copy) the
    # memory a fork shares with its parent.
    gc.freeze()
    # A fork inherits this run's log handlers too: drop them, so that nbgrader's chatter
    # stays out of the run's log, as in a spawned process (its warnings still show).
    logging.getLogger().handlers.clear()
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    use_speedups(course)
    _start_executor(course, lane)
    api = course.api()
    try:
        while (task := tasks.get()) is not None:
            if isinstance(task, tuple):
                _write_feedback(api, course, assignment, task[1])
                continue
            done.put((task, {"started": os.getpid()}))
            started = time.perf_counter()
            try:
                result = api.autograde(assignment, task, force=True, create=True)
            except Exception as exc:  # nbgrader reports most faults itself; never stop the batch
                result = {"success": False, "error": f"{type(exc).__name__}: {exc}"}
            done.put((task, {"success": result.get("success"), "error": result.get("error"),
                             "seconds": time.perf_counter() - started}))
    finally:
        ExecuteSandboxed.shutdown()


def _write_feedback(api, course, assignment, students):
    """nbgrader's feedback for these students, in one run (its HTML templates compile once);
    the course's other students are left alone."""
    if not students:
        return
    # Every other student is left out, those still being graded (in submitted/ only) too.
    others = {p.name for folder in ("submitted", "autograded") if (course.work / folder).is_dir()
              for p in (course.work / folder).iterdir() if p.is_dir()} - set(students)
    kept, api.coursedir.student_id_exclude = api.coursedir.student_id_exclude, ",".join(sorted(others))
    try:
        api.generate_feedback(assignment)
    finally:  # the process grades others next, which its autograde must not exclude
        api.coursedir.student_id_exclude = kept


def write_feedback(course, assignment, students):
    """nbgrader's feedback pages of these students, again, in this process (their grades
    stand; what a person entered since their pages were written is new)."""
    use_speedups(course)
    _write_feedback(course.api(), course, assignment, students)


def grader_marks(course, assignment):
    """{student: digest} of what a person entered for each student's submission (manual
    scores, extra credit, comments), which the feedback page shows beside the grader's."""
    use_speedups(course)
    marks = {}
    with Gradebook(course.db_url) as gb:
        for table, columns in ((Grade, (Grade.manual_score, Grade.extra_credit)), (Comment, (Comment.manual_comment,))):
            query = (gb.db.query(SubmittedAssignment.student_id, table.cell_id, *columns)
                     .join(SubmittedNotebook, table.notebook_id == SubmittedNotebook.id)
                     .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
                     .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
                     .filter(Assignment.name == assignment))
            for student, *entered in query:
                marks.setdefault(student, []).append(entered)
    return {student: hashlib.sha256(json.dumps(sorted(entered, key=str)).encode()).hexdigest()
            for student, entered in marks.items()}


@dataclass
class QuestionGrade:
    grade_id: str
    score: float
    max_score: float
    auto: bool
    needs_manual: bool


def gradebook_scores(course, assignment):
    """{student: {grade_id: QuestionGrade}} from nbgrader's gradebook, manual grades included
    once entered; one query (the ORM would load each grade's cell lazily, one query each).
    A manual score counts as entered even if the grade is still flagged for grading: the
    formgrader lowers the flag, a script that sets the score through nbgrader's API may not."""
    grades = {}
    use_speedups(course)
    with Gradebook(course.db_url) as gb:
        query = (gb.db.query(SubmittedAssignment.student_id, GradeCell.name, Grade.score, GradeCell.max_score,
                             GradeCell.cell_type, Grade.needs_manual_grade & Grade.manual_score.is_(None))
                 .join(SubmittedNotebook, Grade.notebook_id == SubmittedNotebook.id)
                 .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
                 .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
                 .join(GradeCell, Grade.cell_id == GradeCell.id)
                 .filter(Assignment.name == assignment))
        for student, name, score, max_score, cell_type, needs_manual in query:
            grades.setdefault(student, {})[name] = QuestionGrade(
                grade_id=name, score=float(score or 0), max_score=float(max_score), auto=cell_type == "code",
                needs_manual=bool(needs_manual))
    return grades


@dataclass
class Result:
    scores: dict  # {grade_id: points earned} for autograded questions
    max_scores: dict  # {grade_id: max points} for autograded questions
    manual: dict  # {grade_id: max points} for manually graded questions
    notebook: nbformat.NotebookNode = None  # as autograded


def grade_notebooks(assignment, notebooks, *, course=None, executor="fork"):
    """Grade notebooks given in memory, in a throwaway course work dir; for tests and bundles."""
    with tempfile.TemporaryDirectory(prefix="autograder-") as work:
        course = course or Course(work=work, executor=executor)
        students = [f"nb{i:04d}" for i in range(len(notebooks))]
        source = course.master(assignment).name
        for student, nb in zip(students, notebooks):
            target = course.submitted_dir(assignment, student)
            target.mkdir(parents=True)
            nbformat.write(nb, target / source)
        outcomes = autograde(course, assignment, students)
        scores = gradebook_scores(course, assignment)
        results = []
        for student in students:
            if not outcomes[student]["success"]:
                raise RuntimeError(f"nbgrader failed on {student}:\n{outcomes[student].get('error')}")
            grades = scores.get(student, {})
            graded = course.autograded_dir(assignment, student) / source
            results.append(Result(
                scores={g.grade_id: g.score for g in grades.values() if g.auto},
                max_scores={g.grade_id: g.max_score for g in grades.values() if g.auto},
                manual={g.grade_id: g.max_score for g in grades.values() if not g.auto},
                notebook=nbformat.read(graded, as_version=4) if graded.exists() else None))
        return results
