"""ExecuteSandboxed: nbgrader's Execute step, done by the warm sandboxed executor (or a
fresh kernel), with the master's own run as the trusted side of ``same`` checks."""
from pathlib import Path

from nbformat import from_dict
from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Enum, Float, Integer, List, Unicode

from autograder import execution, graded_metadata, scoring, settings
from autograder.execution import warden
from autograder.execution.sandbox import Limits, hidden_folders
from autograder.scoring.nbcheck import is_test_cell

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


def _finding_notes(findings):
    """What the executor had to put back before the tests, said once each."""
    hooks = dict.fromkeys(text for kind, text in findings if kind == warden.HOOK)
    return [f"put back before the tests ran: {text}" for text in hooks]


def _student_output(output):
    """An output of the student's as a notebook node; one nested too deeply to convert is
    replaced by a line that says so (it would fail the whole notebook)."""
    try:
        return from_dict(output)
    except RecursionError:
        return from_dict({"output_type": "stream", "name": "stderr",
                          "text": "[an output nested too deeply to keep was dropped]\n"})
