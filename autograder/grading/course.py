"""Where a grading run reads its masters and writes nbgrader's folders and gradebook.

Free of nbgrader imports: a run starts its warm executor (which imports torch) before it
imports nbgrader, so that the two start-up costs overlap.
"""
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from autograder import settings
from autograder.execution.sandbox import Limits, hidden_folders

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Course:
    root: Path = REPO_ROOT  # holds nbgrader_config.py and source/
    work: Path = None  # holds submitted/, autograded/, feedback/ (default: root)
    db_url: str = None  # default: sqlite gradebook.db in work
    executor: str = "fork"
    timeout: float = None  # None: the course's nbgrader_config.py, else settings.TIMEOUT
    memory_mb: int = None  # likewise
    jobs: int = settings.JOBS
    hidden: list = field(default_factory=list)  # more directories the sandbox must hide
    speedups: bool = True  # False: nbgrader's own code in every step (the differential test's baseline)
    overrides: list = field(default_factory=list)  # "Class.trait=value" over nbgrader_config.py, for this run

    def __post_init__(self):
        self.root = Path(self.root).resolve()
        self.work = Path(self.work or self.root).resolve()
        # Several grading processes share the gradebook: wait for its lock, not fail.
        self.db_url = self.db_url or f"sqlite:///{self.work / 'gradebook.db'}?timeout=60"

    def config(self):
        # Imported here, like the rest of the Jupyter stack: the warm executor starts first.
        from traitlets.config import Config
        from traitlets.config.loader import KVArgParseConfigLoader, PyFileConfigLoader

        config = Config()
        config_file = self.root / "nbgrader_config.py"
        if config_file.exists():
            config.merge(PyFileConfigLoader(config_file.name, path=str(self.root)).load_config())
        if self.overrides:  # read as on an nbgrader command line: each trait parses its own value
            config.merge(KVArgParseConfigLoader([f"--{setting}" for setting in self.overrides]).load_config())
        config.CourseDirectory.root = str(self.root)
        config.CourseDirectory.db_url = self.db_url
        for name in ("submitted", "autograded", "feedback"):
            config.CourseDirectory[f"{name}_directory"] = str(self.work / name)
        config.ExecuteSandboxed.executor = self.executor
        if self.timeout is not None:
            config.ExecuteSandboxed.timeout = self.timeout
        if self.memory_mb is not None:
            config.ExecuteSandboxed.memory_mb = self.memory_mb
        config.ExecuteSandboxed.hidden = [str(self.root), str(self.work), *map(str, self.hidden)]
        config.ExecuteSandboxed.source_directory = str(self.root / "source")
        if not self.speedups:
            _nbgraders_own_steps(config)
        config.Application.log_level = "WARN"
        # Grading never uses nbgrader's exchange; point it somewhere writable so the API does not complain.
        config.Exchange.root = tempfile.gettempdir()
        return config

    def limits(self):
        """The limits the grading processes will apply, with every source taken into account."""
        executor = self.config().ExecuteSandboxed
        return Limits(**{name: executor[name] for name in ("timeout", "memory_mb") if name in executor})

    def api(self):
        from nbgrader.apps import NbGraderAPI
        return NbGraderAPI(config=self.config())

    def hide(self, *folders):
        """Have the sandbox hide these folders too (a run's submissions and output)."""
        for folder in map(str, map(Path.resolve, map(Path, folders))):
            if folder not in self.hidden:
                self.hidden.append(folder)

    def executor_hidden(self):
        """What the executor's sandbox hides: the course, the work folders, the gradebook's
        folder, the grading process's own folder, and the run's extra folders."""
        return hidden_folders(self.db_url, [self.root, self.work], self.hidden)

    def master(self, assignment):
        """The assignment's master notebook; a clear error unless source/<assignment>/ holds one."""
        notebooks = sorted((self.root / "source" / assignment).glob("*.ipynb"))
        if len(notebooks) != 1:
            raise SystemExit(f"error: source/{assignment}/ must hold exactly one notebook "
                             f"(found {len(notebooks)}); is the assignment name right?")
        return notebooks[0]

    def submitted_dir(self, assignment, student):
        return self.work / "submitted" / student / assignment

    def autograded_dir(self, assignment, student):
        return self.work / "autograded" / student / assignment


def _nbgraders_own_steps(config):
    """The course's grading steps with nbgrader's own classes where ours only cost less."""
    from nbconvert.exporters import NotebookExporter
    from nbgrader.preprocessors import OverwriteCells, SaveAutoGrades

    from autograder.nbgrader_ext import OverwriteCellsIfMissing, SaveAutoGradesAtOnce
    from autograder.nbgrader_ext.feedback import FeedbackPageExporter
    own = {OverwriteCellsIfMissing: OverwriteCells, SaveAutoGradesAtOnce: SaveAutoGrades}
    for steps in ("sanitize_preprocessors", "autograde_preprocessors"):
        config.Autograde[steps] = [own.get(step, step) for step in config.Autograde[steps]]
    config.Autograde.exporter_class = NotebookExporter
    config.GenerateFeedback.exporter_class = FeedbackPageExporter  # the same template, nbconvert's cost


def jobs(course):
    return max(1, course.jobs or os.cpu_count() or 1)


def uses_optimizers(course, assignment):
    """Whether the assignment's master code mentions torch's optimizers (worth warming up)."""
    cells = json.loads(course.master(assignment).read_text()).get("cells", [])
    return any("optim" in "".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code")


def warm_lanes(course, assignment, count=None):
    """The warm executor of a run's ``count`` grading processes (default: ``jobs``)."""
    from autograder import execution
    return execution.WarmLanes(count or jobs(course), hidden=course.executor_hidden(),
                               optimizers=uses_optimizers(course, assignment))


def start_warm_lanes(course, assignment, force=False):
    """The warm executor, started now when the run will grade everything (a first or forced
    run with several processes), so that it imports torch while the caller imports nbgrader
    and reads the submissions. A later run may find nothing changed: it starts nothing yet
    (None)."""
    first_run = not (course.work / "autograded").exists()
    if course.executor != "fork" or jobs(course) == 1 or not (force or first_run):
        return None
    return warm_lanes(course, assignment)
