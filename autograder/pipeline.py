"""The grading core: nbgrader's Autograde, with our preprocessors, over many students.

Every way of grading goes through ``autograde``: the ``grade`` command, the
Gradescope bundle and the tests. It starts each submission's execution in the warm pool
ahead of nbgrader (so they run in parallel), then lets nbgrader autograde the students
one by one (gradebook writes stay single-threaded), each picking up its finished run.
"""
import functools
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import nbgrader.api
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps import NbGraderAPI
from nbgrader.converters import Autograde
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from autograder.preprocessors import ExecuteSandboxed, run_key, run_sources, support_files

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parent.parent

# nbgrader opens a new SQLAlchemy engine for each of the ~10 Gradebook objects it uses
# per notebook, and each new engine compiles every query again (half of nbgrader's time
# per notebook). One engine per database URL keeps the compiled queries.
nbgrader.api.create_engine = functools.lru_cache(maxsize=None)(nbgrader.api.create_engine)


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
        self.db_url = self.db_url or f"sqlite:///{self.work / 'gradebook.db'}"

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
        config.ExecuteSandboxed.jobs = self.jobs
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

    def sandbox_hidden(self):
        hidden = [self.root, self.work] + list(self.hidden)
        if self.db_url.startswith("sqlite:///"):
            hidden.append(Path(self.db_url[len("sqlite:///"):]).parent)
        return [str(h) for h in hidden]


def ensure_assignment(course, assignment):
    """Record the assignment's master in the gradebook (generating a release copy aside)."""
    with Gradebook(course.db_url) as gb:
        try:
            gb.find_assignment(assignment)
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


def _sanitized(course, assignment, student, path):
    """The submission as nbgrader's own sanitize step leaves it (test cells restored)."""
    config = course.config()
    nb = nbformat.read(path, as_version=4)
    resources = {"nbgrader": {"notebook": path.stem, "assignment": assignment, "student": student,
                              "db_url": course.db_url}, "metadata": {"path": str(path.parent)}}
    for preprocessor in Autograde(config=config).sanitize_preprocessors:
        nb, resources = preprocessor(config=config)(nb, resources)
    return nb


def prefetch(course, assignment, students):
    """Start running every submission now, in parallel, for nbgrader to pick up later."""
    pool = ExecuteSandboxed.pool(course.jobs, course.sandbox_hidden())
    files = support_files(course.root / "source" / assignment)
    executor = ExecuteSandboxed(config=course.config())
    for student in students:
        for path in sorted(course.submitted_dir(assignment, student).glob("*.ipynb")):
            try:
                sources = run_sources(_sanitized(course, assignment, student, path))
            except Exception as exc:  # nbgrader will meet the same fault and report it
                log.debug("prefetch skipped %s: %s", path, exc)
                continue
            key = run_key(sources, files)
            if key not in ExecuteSandboxed.prefetched:
                ExecuteSandboxed.prefetched[key] = (executor.start(sources, files) if course.executor == "kernel"
                                                    else pool.submit(sources, files, executor.limits()))


def autograde(course, assignment, students, progress=None):
    """Autograde the students' submissions in submitted/; return {student: nbgrader result}."""
    ensure_assignment(course, assignment)
    if course.executor == "fork":
        ExecuteSandboxed.pool(course.jobs, course.sandbox_hidden())
        prefetch(course, assignment, students)
    api = course.api()
    results = {}
    try:
        for student in students:
            results[student] = api.autograde(assignment, student, force=True, create=True)
            if progress:
                progress(student, results[student])
    finally:
        ExecuteSandboxed.shutdown()
    return results


@dataclass
class QuestionGrade:
    grade_id: str
    score: float
    max_score: float
    auto: bool
    needs_manual: bool


def gradebook_scores(course, assignment, student):
    """Per-question grades from nbgrader's gradebook (manual grades included once entered)."""
    grades = {}
    with Gradebook(course.db_url) as gb:
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return grades
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                grades[grade.name] = QuestionGrade(
                    grade_id=grade.name, score=float(grade.score or 0), max_score=float(grade.max_score),
                    auto=grade.cell_type == "code", needs_manual=bool(grade.needs_manual_grade))
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
        results = []
        for student in students:
            if not outcomes[student]["success"]:
                raise RuntimeError(f"nbgrader failed on {student}:\n{outcomes[student].get('error')}")
            grades = gradebook_scores(course, assignment, student)
            graded = course.autograded_dir(assignment, student) / source
            results.append(Result(
                scores={g.grade_id: g.score for g in grades.values() if g.auto},
                max_scores={g.grade_id: g.max_score for g in grades.values() if g.auto},
                manual={g.grade_id: g.max_score for g in grades.values() if not g.auto},
                notebook=nbformat.read(graded, as_version=4) if graded.exists() else None))
        return results
