"""Running a submission's code cells: the warm, sandboxed fork pool (default) or a
fresh Jupyter kernel per notebook (nbgrader's stock way, kept as the baseline).

Both take the cells' sources and the assignment's support files and give back, per
cell, a status (ok, error, timeout, memory, crashed, not run), its nbformat outputs and
its duration. Neither decides a grade: scoring reads the recorded observations.
"""
import concurrent.futures
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder import sandbox
from autograder.sandbox import Limits
from autograder.protocol import read_message, write_message

log = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass
class Run:
    cells: list  # per code cell: {"status", "outputs", "seconds"}
    notes: list = field(default_factory=list)
    seconds: float = 0.0


class WarmPool:
    """N warm worker processes, each confined by bubblewrap when available."""

    def __init__(self, jobs=None, *, hidden=(), use_sandbox=None):
        self.jobs = jobs or os.cpu_count() or 1
        self.hidden = list(hidden)
        self.use_sandbox = sandbox.bwrap_available() if use_sandbox is None else use_sandbox
        if not self.use_sandbox:
            log.warning("bubblewrap (bwrap) is missing or cannot run here: student code runs without a file-system "
                        "and network sandbox; only resource limits and a user switch apply")
        self._slots = queue.Queue()
        for _ in range(self.jobs):
            self._slots.put(_Worker(self))
        self._executor = concurrent.futures.ThreadPoolExecutor(self.jobs)

    def start(self):
        """Start every worker now (each imports torch while the caller goes on)."""
        for worker in list(self._slots.queue):
            worker.ensure_started()

    def submit(self, cells, files, limits=Limits()):
        return self._executor.submit(self._run, cells, files, limits)

    def _run(self, cells, files, limits):
        worker = self._slots.get()
        try:
            return worker.run({"cells": cells, "files": files, "limits": limits.__dict__})
        finally:
            self._slots.put(worker)

    def close(self):
        self._executor.shutdown(wait=True)
        while not self._slots.empty():
            self._slots.get().release()


class _Worker:
    def __init__(self, pool):
        # The slot names the user id this worker's children run as; it is claimed
        # machine-wide, so concurrent grading runs never share one.
        self.slot, self._claim = sandbox.claim_slot()
        self.pool, self.proc, self.ready = pool, None, False
        self.scratch = tempfile.mkdtemp(prefix=f"autograder-slot{self.slot}-")
        os.chmod(self.scratch, 0o711)  # a child switched to its own user must enter its workdir

    def command(self):
        argv = [sys.executable, "-m", "autograder.warm_worker", str(self.slot)]
        if not self.pool.use_sandbox:
            return argv
        # The course directory is hidden; the grading package holds no secrets and is
        # mounted back for the worker to import.
        return sandbox.bwrap_command(argv, hidden=self.pool.hidden + [str(PACKAGE_DIR.parent)],
                                     scratch=self.scratch, expose=[str(PACKAGE_DIR)])

    def ensure_started(self):
        if self.proc is None or self.proc.poll() is not None:
            env = dict(os.environ, PYTHONPATH=str(PACKAGE_DIR.parent), TMPDIR=self.scratch,
                       PYTHONDONTWRITEBYTECODE="1")
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, env=env, cwd=self.scratch)
            self.ready = False

    def wait_ready(self):
        if not self.ready:
            hello = read_message(self.proc.stdout)
            if not hello or not hello.get("ready"):
                raise RuntimeError(f"executor worker {self.slot} failed to start "
                                   f"(exit code {self.proc.poll()})")
            self.ready = True

    def run(self, job):
        for attempt in (1, 2):
            try:
                self.ensure_started()
                self.wait_ready()
                write_message(self.proc.stdin, job)
                reply = read_message(self.proc.stdout)
                if reply is None:
                    raise RuntimeError("executor worker died")
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return Run(reply["cells"], reply["notes"], reply["seconds"])
            except (OSError, RuntimeError) as exc:
                log.warning("executor worker %s: %s (attempt %s)", self.slot, exc, attempt)
                self.stop()
        failed = {"status": "crashed", "outputs": [], "seconds": 0.0}
        return Run([dict(failed) for _ in job["cells"]], ["the executor failed on this submission"])

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def release(self):
        """Stop for good: the process, the scratch folder and the slot."""
        self.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)
        self._claim.close()


def run_in_kernel(cells, files, limits=Limits(), kernel_name="python3"):
    """Execute the cells in a fresh Jupyter kernel, as stock nbgrader does (no sandbox)."""
    from nbclient import NotebookClient
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    with tempfile.TemporaryDirectory(prefix="autograder-kernel-") as workdir:
        for name, text in files.items():
            Path(workdir, name).write_text(text)
        client = NotebookClient(nb, timeout=int(limits.timeout), kernel_name=kernel_name,
                                allow_errors=True, interrupt_on_timeout=True,
                                shutdown_kernel="immediate", resources={"metadata": {"path": workdir}})
        env = dict(os.environ, NBCHECK_MODE="record", MPLBACKEND="module://matplotlib_inline.backend_inline")
        notes = []
        try:
            client.execute(env=env)
        except Exception as exc:  # kernel death ends a kernel run; the remaining cells score 0
            notes.append(f"the kernel failed: {type(exc).__name__}: {exc}")
    results = []
    for cell in nb.cells:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        status = "ok" if not errors else "timeout" if errors[-1].ename in ("CellTimeoutError", "KeyboardInterrupt") else "error"
        results.append({"status": status, "outputs": [dict(o) for o in cell.outputs], "seconds": 0.0})
    return Run(results, notes)
