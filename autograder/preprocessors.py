"""The grader's steps inside nbgrader's Autograde converter, as nbgrader preprocessors.

``nbgrader_config.py`` puts them in ``Autograde.autograde_preprocessors`` in place of
nbgrader's ``Execute``; the gradebook, late penalties, output limits and feedback stay
nbgrader's own:

    ExecuteSandboxed -> JudgeChecks -> HideTestCode -> (nbgrader) LimitOutput, SaveAutoGradesAtOnce, ...

and two of nbgrader's own, changed only in what they cost (OverwriteCellsIfMissing,
SaveAutoGradesAtOnce).
"""
import functools
import os
from pathlib import Path

from nbformat import NotebookNode
from nbgrader import utils
from nbgrader.api import Gradebook, GradeCell, TaskCell
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor, OverwriteCells, SaveAutoGrades
from traitlets import Enum, Float, Integer, List, Unicode

from autograder import execution, graded_metadata, redaction, scoring, settings, warden
from autograder.course import hidden_folders
from autograder.nbcheck import is_test_cell
from autograder.nbgrader_speedups import master_cells_statement
from autograder.sandbox import Limits

SUPPORT_FILE_LIMIT = 1 << 20


def run_sources(nb):
    """The code the student's process runs: test cells with their criteria cut out."""
    sources = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if is_test_cell(cell):
            try:
                sources.append(scoring.strip_criteria(cell.source))
            except SyntaxError:
                sources.append("raise SyntaxError('this test cell is not valid Python')")
        else:
            sources.append(cell.source)
    return sources


def instructors_cells(cells):
    """Indices of the cells exactly as the instructor wrote them: locked cells (tests
    included) whose checksum is the master's, which nbgrader's OverwriteCells puts in every
    graded cell (and whose source it puts back in locked cells)."""
    return [i for i, cell in enumerate(cells)
            if utils.is_locked(cell) and "grade_id" in cell.metadata.nbgrader  # OverwriteCells drops unknown ids
            and cell.metadata.nbgrader.get("checksum") == utils.compute_checksum(cell)]


def support_files(directory):
    """The assignment's small text files (the check helper, data) next to the notebook."""
    files = {}
    for path in sorted(Path(directory).iterdir()) if directory else []:
        if path.is_file() and path.suffix != ".ipynb" and path.stat().st_size < SUPPORT_FILE_LIMIT:
            try:
                files[path.name] = path.read_text()
            except UnicodeDecodeError:
                continue
    return files


class ExecuteSandboxed(NbGraderPreprocessor):
    """Run the notebook's code in a warm sandboxed process (or a fresh kernel)."""

    executor = Enum(["fork", "kernel"], default_value="fork",
                    help="fork: a warm, sandboxed process forked per notebook; kernel: a fresh "
                         "Jupyter kernel per notebook, as stock nbgrader (no sandbox)").tag(config=True)
    timeout = Float(settings.TIMEOUT, help="Seconds a cell may run before it is interrupted").tag(config=True)
    memory_mb = Integer(settings.MEMORY_MB, help="Memory (MiB) a submission may allocate").tag(config=True)
    hidden = List(Unicode(), help="More directories the sandbox hides (submissions, outputs); "
                                  "the course directory and gradebook always are").tag(config=True)
    source_directory = Unicode("", help="The course's source/ folder: the master notebooks, whose own run "
                                        "gives the trusted side of `same` checks").tag(config=True)

    # One warm executor per grading process, kept across notebooks.
    _pool = None
    _references = {}  # the master's bytes -> its observations, per test cell id

    @classmethod
    def start_pool(cls, hidden, lane=None):
        """Start warming the executor now, while nbgrader does other work; with ``lane``
        (of an execution.WarmLanes), use that warm worker rather than start one."""
        if cls._pool is None:
            cls._pool = execution.WarmPool(1, hidden=hidden, lanes=[lane] if lane else None)
            cls._pool.start()

    @classmethod
    def shutdown(cls):
        if cls._pool is not None:
            cls._pool.close()
            cls._pool = None

    def run(self, sources, files, resources, shared=(), tests=()):
        limits = Limits(timeout=self.timeout, memory_mb=self.memory_mb)
        if self.executor == "kernel":
            return execution.run_in_kernel(sources, files, limits)
        path = resources.get("metadata", {}).get("path")
        ExecuteSandboxed.start_pool(hidden_folders(resources.get("nbgrader", {}).get("db_url", ""),
                                                   [path] if path else [], self.hidden))
        return ExecuteSandboxed._pool.submit(sources, files, limits, shared, tests).result()

    def execute(self, nb, folder, resources):
        """Run a notebook; per code cell (the cell, its result), and the run."""
        code_cells = [c for c in nb.cells if c.cell_type == "code"]
        run = self.run(run_sources(nb), support_files(folder), resources, instructors_cells(code_cells),
                       [i for i, cell in enumerate(code_cells) if is_test_cell(cell)])
        for cell, result in zip(code_cells, run.cells):
            if is_test_cell(cell):
                # A plain kernel publishes them among the outputs; the warm executor's warden
                # alone takes them (a cell that crashed has none).
                result["observations"] = (scoring.recorded_observations(result["outputs"]) if self.executor == "kernel"
                                          else result.get("observations", {}))
        return list(zip(code_cells, run.cells)), run

    def references(self, resources):
        """The master's own observations {test cell id: {check name: [value, error]}}: the
        trusted side of `same` checks (None when the master cannot be found)."""
        names = resources.get("nbgrader", {})
        master = Path(self.source_directory, names.get("assignment", ""), f"{names.get('notebook')}.ipynb")
        if not self.source_directory or not master.is_file():
            return None
        data = master.read_bytes()
        if data not in self._references:
            from nbformat import reads
            cells, _ = self.execute(reads(data.decode(), as_version=4), master.parent, resources)
            self._references[data] = {cell.metadata.nbgrader["grade_id"]: result.get("observations", {})
                                      for cell, result in cells if is_test_cell(cell)}
        return self._references[data]

    def preprocess(self, nb, resources):
        resources["references"] = self.references(resources)
        cells, run = self.execute(nb, resources.get("metadata", {}).get("path"), resources)
        findings = []
        for cell, result in cells:
            cell.outputs = [_student_output(o) for o in result["outputs"]]
            graded_metadata.write_cell(cell, result, result["observations"] if is_test_cell(cell) else None)
            findings += result.get("findings", [])
        graded_metadata.write_run(nb, notes=run.notes + _finding_notes(findings), seconds=run.seconds,
                                  executor=self.executor,
                                  tampering=dict.fromkeys(t for k, t in findings if k == warden.TAMPERING))
        return nb, resources


class JudgeChecks(NbGraderPreprocessor):
    """Replace each test cell's outputs by its verdict, decided from the recorded data."""

    def preprocess(self, nb, resources):
        for cell in nb.cells:
            if not is_test_cell(cell):
                continue
            references = resources.get("references")
            try:
                verdict = scoring.judge_cell(
                    cell.source, cell.outputs, graded_metadata.cell_of(cell).get("status", "ok"),
                    observations=graded_metadata.take_observations(cell),
                    references=None if references is None else references.get(cell.metadata.nbgrader["grade_id"], {}))
            except scoring.TestCellError as exc:
                verdict = scoring.CellVerdict(passed=False, lines=[f"[fail] {exc}"], failed=["test cell"],
                                              public_messages=[str(exc)])
            cell.outputs = [_output_node(o) for o in scoring.verdict_outputs(verdict)]
            graded_metadata.write_verdict(cell, verdict)
        return nb, resources


class HideTestCode(NbGraderPreprocessor):
    """The last filter (autograder/redaction.py), after the verdicts are written: every line of
    the hidden tests is replaced in the cells' outputs, the verdicts and the notes, whatever
    the student's process printed, raised or displayed."""

    def preprocess(self, nb, resources):
        clear = ClearHiddenTests(parent=self)
        tests = tuple(cell.source for cell in nb.cells if is_test_cell(cell))
        public = tuple(cell.source for cell in nb.cells if utils.is_locked(cell) and not is_test_cell(cell))
        redactor = _redactor(tests, public, clear.begin_test_delimeter, clear.end_test_delimeter)
        nodes = [nb, *nb.cells]
        stored = [[node.metadata.get(graded_metadata.KEY, {}), node.get("outputs", [])] for node in nodes]
        redacted = redactor.redact(stored)  # one search through all of it
        if redacted is not stored:
            for node, (metadata, outputs) in zip(nodes, redacted):
                if graded_metadata.KEY in node.metadata:
                    node.metadata[graded_metadata.KEY] = _output_node(metadata)
                if "outputs" in node:
                    node.outputs = [_output_node(o) for o in outputs]
        return nb, resources


@functools.lru_cache(maxsize=8)  # the same master's cells come back for every student
def _redactor(tests, public, begin_delimiter, end_delimiter):
    """The filter of the hidden lines of ``tests`` (the test cells' trusted sources, restored
    by nbgrader), less the lines the student's copy shows: these tests without their hidden
    part, as nbgrader releases them, and the other locked cells (``public``)."""
    clear = ClearHiddenTests(begin_test_delimeter=begin_delimiter, end_test_delimeter=end_delimiter)
    copies = []
    for source in tests:
        cell = NotebookNode(source=source)
        clear._remove_hidden_test_region(cell)
        copies.append((source, cell.source))
    return redaction.Redactor(redaction.hidden_lines(copies, public))


class SaveAutoGradesAtOnce(SaveAutoGrades):
    """nbgrader's SaveAutoGrades, committing the notebook's grades and comments once rather
    than after each cell: two commits a cell cost a millisecond each, and each one makes the
    gradebook query again what it had loaded; the one commit writes all the rows in one
    flush. The rows written are the same."""

    def preprocess(self, nb, resources):
        # As SaveAutoGrades.preprocess, with the session's commits put off until the last
        # cell is saved.
        self.notebook_id = resources['nbgrader']['notebook']
        self.assignment_id = resources['nbgrader']['assignment']
        self.student_id = resources['nbgrader']['student']
        self.db_url = resources['nbgrader']['db_url']
        self.gradebook = Gradebook(self.db_url)
        with self.gradebook:
            commit, self.gradebook.db.commit = self.gradebook.db.commit, lambda: None
            nb, resources = NbGraderPreprocessor.preprocess(self, nb, resources)
            commit()
        return nb, resources


class OverwriteCellsIfMissing(OverwriteCells):
    """nbgrader's OverwriteCells, whose search for deleted cells to add back loads every
    cell of the master for every student; it searches only when one query of the master's
    graded and task cell names finds one missing, as it does on the same test."""

    _queries = {kind: master_cells_statement(kind, kind.name) for kind in (GradeCell, TaskCell)}

    def _master_names(self, kind):
        found = self.gradebook.db.execute(self._queries[kind], {"notebook": self.notebook_id,
                                                                "assignment": self.assignment_id})
        return set(found.scalars())

    def add_missing_grade_cells(self, nb, resources):
        present = {c.metadata.nbgrader["grade_id"] for c in nb.cells if utils.is_grade(c) or utils.is_solution(c)}
        if self._master_names(GradeCell) <= present:
            return nb, resources
        return super().add_missing_grade_cells(nb, resources)

    def add_missing_task_cells(self, nb, resources):
        present = {c["metadata"]["nbgrader"].get("grade_id") for c in nb.cells if "nbgrader" in c["metadata"]}
        if self._master_names(TaskCell) <= present:
            return nb, resources
        return super().add_missing_task_cells(nb, resources)


def _finding_notes(findings):
    """What the executor had to put back before the tests, said once each."""
    hooks = dict.fromkeys(text for kind, text in findings if kind == warden.HOOK)
    return [f"put back before the tests ran: {text}" for text in hooks]


def _output_node(output):
    from nbformat import from_dict
    return from_dict(output)


def _student_output(output):
    """An output of the student's as a notebook node; one nested too deeply to convert is
    replaced by a line that says so (it would fail the whole notebook)."""
    try:
        return _output_node(output)
    except RecursionError:
        return _output_node({"output_type": "stream", "name": "stderr",
                             "text": "[an output nested too deeply to keep was dropped]\n"})
