"""The grading core: nbgrader's Autograde, with our preprocessors, over many students.

Every way of grading goes through ``autograde``: the ``grade`` command, the Gradescope
bundle and the tests. It spreads the students over ``jobs`` grading processes; each runs
nbgrader's Autograde (and then its feedback) student after student, with its own warm
sandboxed executor, all of them writing to the one nbgrader gradebook.
"""
import logging
import multiprocessing
import os
import queue
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import sqlalchemy.exc
from nbgrader.api import (Assignment, Grade, Gradebook, GradeCell, MissingEntry, SubmittedAssignment,
                          SubmittedNotebook)
from nbgrader.apps import NbGraderAPI
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from autograder import execution, nbgrader_speedups  # noqa: F401 (nbgrader_speedups applies itself)
from autograder.preprocessors import ExecuteSandboxed, course_dirs

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parent.parent

# nbgrader's gradebook code trips SQLAlchemy's autoflush warnings on every notebook: noise.
warnings.filterwarnings("ignore", category=sqlalchemy.exc.SAWarning)


@dataclass
class Course:
    """Where a grading run reads its masters and writes nbgrader's folders and gradebook."""
    root: Path = REPO_ROOT  # holds nbgrader_config.py and source/
    work: Path = None  # holds submitted/, autograded/, feedback/ (default: root)
    db_url: str = None  # default: sqlite gradebook.db in work
    executor: str = "fork"
    timeout: float = 10.0
    memory_mb: int = 2048
    jobs: int = 0
    hidden: list = field(default_factory=list)  # more directories the sandbox must hide

    def __post_init__(self):
        self.root = Path(self.root).resolve()
        self.work = Path(self.work or self.root).resolve()
        # Several grading processes share the gradebook: wait for its lock, not fail.
        self.db_url = self.db_url or f"sqlite:///{self.work / 'gradebook.db'}?timeout=60"

    def config(self):
        config = Config()
        config_file = self.root / "nbgrader_config.py"
        if config_file.exists():
            config.merge(PyFileConfigLoader(config_file.name, path=str(self.root)).load_config())
        config.CourseDirectory.root = str(self.root)
        config.CourseDirectory.db_url = self.db_url
        for name in ("submitted", "autograded", "feedback"):
            config.CourseDirectory[f"{name}_directory"] = str(self.work / name)
        config.ExecuteSandboxed.executor = self.executor
        config.ExecuteSandboxed.timeout = self.timeout
        config.ExecuteSandboxed.memory_mb = self.memory_mb
        config.ExecuteSandboxed.hidden = [str(self.root), str(self.work), *map(str, self.hidden)]
        config.Application.log_level = "WARN"
        # Grading never uses nbgrader's exchange; point it somewhere writable so the API does not complain.
        config.Exchange.root = tempfile.gettempdir()
        return config

    def api(self):
        return NbGraderAPI(config=self.config())

    def submitted_dir(self, assignment, student):
        return self.work / "submitted" / student / assignment

    def autograded_dir(self, assignment, student):
        return self.work / "autograded" / student / assignment


def ensure_assignment(course, assignment):
    """Record the assignment's master in the gradebook (generating a release copy aside)."""
    with Gradebook(course.db_url) as gb:
        try:
            if gb.find_assignment(assignment).notebooks:
                return
        except MissingEntry:
            pass
    with tempfile.TemporaryDirectory() as release:
        config = course.config()
        config.CourseDirectory.release_directory = release
        result = NbGraderAPI(config=config).generate_assignment(assignment, force=True, create=True)
    if not result["success"]:
        raise RuntimeError(f"nbgrader could not record assignment {assignment}:\n{result.get('error')}")


def autograde(course, assignment, students, progress=None, feedback=False, graders=None):
    """Autograde the students' submissions in submitted/; return {student: outcome}, each
    outcome {"success", "error", "seconds"} (the time nbgrader took over that student).

    With ``feedback``, each grading process also writes nbgrader's feedback for the
    students it graded. ``progress(student, result)`` is called as each one finishes.
    ``graders``: grading processes started ahead (``Graders``); by default they start now.
    """
    if graders is not None:
        return graders.grade(students, progress)
    if min(jobs(course), len(students)) == 1:  # in this process: no start-up cost, easier to debug
        tasks, done = queue.Queue(), queue.Queue()
        _start_executor(course)
        ensure_assignment(course, assignment)
        for student in students:
            tasks.put(student)
        tasks.put(None)
        _grading_process(course, assignment, tasks, done, feedback)
        return _collect(done, students, progress, [])
    with Graders(course, assignment, feedback, count=min(jobs(course), len(students))) as graders:
        return graders.grade(students, progress)


def jobs(course):
    return max(1, course.jobs or os.cpu_count() or 1)


class Graders:
    """A run's grading processes, started ahead: they warm the executor while the caller
    still prepares the submissions, then grade the students ``grade`` hands out. The
    executor is one warm worker with a lane for each of them (execution.WarmLanes)."""

    def __init__(self, course, assignment, feedback=False, count=None):
        self.course, self.assignment = course, assignment
        count = count or jobs(course)
        self.lanes = (execution.WarmLanes(count, hidden=executor_hidden(course))
                      if course.executor == "fork" else None)
        context = multiprocessing.get_context("spawn")  # not fork: the parent has threads
        self.tasks, self.done = context.Queue(), context.Queue()
        self.workers = [context.Process(target=_grading_process, daemon=True,
                                        args=(course, assignment, self.tasks, self.done, feedback, lane))
                        for lane in (self.lanes.lanes if self.lanes else [None] * count)]
        for worker in self.workers:
            worker.start()
        self.closed = False

    def grade(self, students, progress=None):
        try:
            ensure_assignment(self.course, self.assignment)
            for student in students:
                self.tasks.put(student)
            return _collect(self.done, students, progress, self.workers)
        finally:
            self.close()

    def close(self):
        """Let the processes finish (their feedback included) and end."""
        if self.closed:
            return
        self.closed = True
        for _ in self.workers:
            self.tasks.put(None)
        for worker in self.workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.kill()
        if self.lanes is not None:
            self.lanes.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _collect(done, students, progress, workers):
    results = {}
    while len(results) < len(students):
        try:
            student, result = done.get(timeout=1)
        except queue.Empty:
            if workers and not any(w.is_alive() for w in workers):
                break
            continue
        results[student] = result
        if progress:
            progress(student, result)
    for student in students:  # a grading process died under them; the next run retries
        results.setdefault(student, {"success": False, "error": "the grading process died"})
    return results


def executor_hidden(course):
    """What the executor's sandbox hides: the course, the gradebook, the work folders."""
    return course_dirs({"nbgrader": {"db_url": course.db_url}}) + course.config().ExecuteSandboxed.hidden


def _start_executor(course, lane=None):
    if course.executor == "fork":
        ExecuteSandboxed.start_pool(executor_hidden(course), lane)


def _grading_process(course, assignment, tasks, done, feedback, lane=None):
    """One grading process: autograde students from ``tasks`` until None, then feedback."""
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    _start_executor(course, lane)
    api = course.api()
    graded = []
    try:
        while (student := tasks.get()) is not None:
            started = time.perf_counter()
            try:
                result = api.autograde(assignment, student, force=True, create=True)
            except Exception as exc:  # nbgrader reports most faults itself; never stop the batch
                result = {"success": False, "error": f"{type(exc).__name__}: {exc}"}
            if result["success"]:
                graded.append(student)
            done.put((student, {"success": result.get("success"), "error": result.get("error"),
                                "seconds": time.perf_counter() - started}))
    finally:
        ExecuteSandboxed.shutdown()
    if feedback and graded:
        # One nbgrader run for all of them (its HTML templates compile once); the
        # course's other students are left alone.
        others = {p.name for p in (course.work / "autograded").iterdir() if p.is_dir()} - set(graded)
        api.coursedir.student_id_exclude = ",".join(sorted(others))
        api.generate_feedback(assignment)


@dataclass
class QuestionGrade:
    grade_id: str
    score: float
    max_score: float
    auto: bool
    needs_manual: bool


def gradebook_scores(course, assignment):
    """{student: {grade_id: QuestionGrade}} from nbgrader's gradebook, manual grades included
    once entered; one query (the ORM's lazy loads cost 20 ms a student)."""
    grades = {}
    with Gradebook(course.db_url) as gb:
        query = (gb.db.query(SubmittedAssignment.student_id, GradeCell.name, Grade.score, GradeCell.max_score,
                             GradeCell.cell_type, Grade.needs_manual_grade)
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
        source = next((course.root / "source" / assignment).glob("*.ipynb")).name
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
