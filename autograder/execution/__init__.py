"""Running a submission's code cells: the warm, sandboxed fork pool (default) or a
fresh Jupyter kernel per notebook (nbgrader's stock way, kept as the baseline).

Both take the cells' sources and the assignment's support files and give back, per
cell, a status (ok, error, timeout, memory, crashed, not run), its nbformat outputs and
its duration. Neither decides a grade: scoring reads the recorded observations.
"""
import concurrent.futures
import functools
import logging
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from autograder.execution import sandbox
from autograder.execution.sandbox import Limits
from autograder.execution.protocol import MESSAGE_LIMIT, MessageReader, ProtocolError, longest_job, write_message

log = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # autograder/, which the worker imports
# Seconds an executor may take to start (it imports torch), or spend on a job besides
# running its cells (files, forks, clean-up).
START_UP_MARGIN = 60.0


@dataclass
class Run:
    cells: list  # per code cell: {"status", "outputs", "seconds"}
    notes: list = field(default_factory=list)
    seconds: float = 0.0


def _use_sandbox(use_sandbox):
    if use_sandbox is None:
        use_sandbox = sandbox.bwrap_available()
    if not use_sandbox:
        log.warning("bubblewrap (bwrap) is missing or cannot run here: student code runs without a file-system "
                    "and network sandbox; only resource limits and a user switch apply")
    return use_sandbox


@functools.cache
def _warn_once(message):
    log.warning(message)


def _slot_cgroups(slot):
    """The slot's cgroups, made now (the first time); a warning says what is lost where they cannot be."""
    cgroups = sandbox.SlotCgroups(slot).create()
    if os.geteuid() != 0:
        _warn_once("the executor does not run as root: submissions run as the grader's user, share /dev/shm and "
                   "SysV IPC, their folders are bounded only per file, and they are in no cgroup")
    elif cgroups.missing():
        _warn_once(f"no usable cgroup v1 controller for the executor: {cgroups.missing()}")
    return cgroups


def _worker_process(args, *, hidden, scratch, use_sandbox, cgroups, **popen):
    """Start ``python -m autograder.execution.warm_worker ARGS``, confined when ``use_sandbox``,
    with the slots' ``cgroups`` (SlotCgroups) writable."""
    argv = [sys.executable, "-m", "autograder.execution.warm_worker", *args]
    tmpdir = scratch
    if use_sandbox:
        # The course directory is hidden; the grading package holds no secrets and is
        # mounted back for the worker to import.
        argv = sandbox.bwrap_command(argv, hidden=list(hidden) + [str(PACKAGE_DIR.parent)], scratch=scratch,
                                     expose=[str(PACKAGE_DIR)],
                                     writable=[folder for slot in cgroups for folder in slot.folders.values()])
        tmpdir = sandbox.sandbox_scratch(scratch)
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_DIR.parent), TMPDIR=tmpdir, PYTHONDONTWRITEBYTECODE="1")
    # Every submission's process is a fork of the warm one, and a fork copies its page
    # table: glibc's heap (half the warm memory) in transparent huge pages has 512 times
    # fewer entries to copy and to tear down. A glibc
    # without the tunable ignores it.
    env["GLIBC_TUNABLES"] = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"), "glibc.malloc.hugetlb=1"]))
    return subprocess.Popen(argv, env=env, cwd=scratch, **popen)


def _scratch(prefix):
    scratch = tempfile.mkdtemp(prefix=prefix)
    os.chmod(scratch, 0o711)  # a child switched to its own user must enter its workdir
    return scratch


class WarmLanes:
    """One warm worker serving ``count`` grading processes, each over a lane of its own (a
    socket): the worker imports torch once, then forks a lane per socket, so the start-up
    and the memory of the warm process are paid once rather than once per core.

    ``lanes`` is [(slot, socket)]; hand one to each grading process (``WarmPool(lanes=...)``).
    ``optimizers=False`` leaves torch's optimizers cold (they take seconds to warm up).
    """

    def __init__(self, count, *, hidden=(), use_sandbox=None, optimizers=True):
        self.claims = [sandbox.claim_slot() for _ in range(count)]
        self.cgroups = [_slot_cgroups(slot) for slot, _ in self.claims]
        self.scratch = _scratch("autograder-lanes-")
        pairs = [socket.socketpair() for _ in range(count)]
        args = ["--lanes", *(f"{slot}:{theirs.fileno()}" for (slot, _), (_, theirs) in zip(self.claims, pairs))]
        args += [] if optimizers else ["--no-optimizer-warm-up"]
        self.proc = _worker_process(args, hidden=hidden, scratch=self.scratch, use_sandbox=_use_sandbox(use_sandbox),
                                    cgroups=self.cgroups, pass_fds=[theirs.fileno() for _, theirs in pairs],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        for _, theirs in pairs:
            theirs.close()
        self.lanes = [(slot, ours) for (slot, _), (ours, _) in zip(self.claims, pairs)]

    def close(self):
        for _, ours in self.lanes:
            ours.close()
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)
        for cgroups in self.cgroups:
            cgroups.remove()
        for _, claim in self.claims:
            claim.close()


class WarmPool:
    """N warm worker processes, each confined by bubblewrap when available; or, given
    ``lanes`` of a ``WarmLanes``, one worker per lane."""

    def __init__(self, jobs=None, *, hidden=(), use_sandbox=None, lanes=None):
        self.jobs = len(lanes) if lanes else jobs or os.cpu_count() or 1
        self.hidden = list(hidden)
        self.use_sandbox = _use_sandbox(use_sandbox)
        self._slots = queue.Queue()
        for lane in lanes or [None] * self.jobs:
            self._slots.put(_Worker(self, lane))
        self._executor = concurrent.futures.ThreadPoolExecutor(self.jobs)

    def start(self):
        """Start every worker now (each imports torch while the caller goes on)."""
        for worker in list(self._slots.queue):
            worker.ensure_started()

    def submit(self, cells, files, limits=Limits(), shared=(), tests=()):
        """Run ``cells``; ``shared``: the indices of those the instructor wrote, the same
        for every student, which the worker compiles once ahead; ``tests``: the indices of
        the test cells, which the child runs under the grader's watch."""
        return self._executor.submit(self._run, cells, files, limits, list(shared), list(tests))

    def _run(self, cells, files, limits, shared, tests):
        worker = self._slots.get()
        try:
            return worker.run({"cells": cells, "files": files, "limits": limits.__dict__, "shared": shared,
                               "tests": tests})
        finally:
            self._slots.put(worker)

    def close(self):
        self._executor.shutdown(wait=True)
        while not self._slots.empty():
            self._slots.get().release()


class _Worker:
    """One warm worker: a process of its own, or a lane of a WarmLanes (and a process of
    its own, on the lane's slot, should the lane fail)."""

    def __init__(self, pool, lane=None):
        if lane is None:
            # The slot names the user id this worker's children run as; it is claimed
            # machine-wide, so concurrent grading runs never share one.
            self.slot, self._claim = sandbox.claim_slot()
            self.lane, self.cgroups = None, _slot_cgroups(self.slot)
        else:  # claimed, and its cgroups made, by the WarmLanes' owner (for a process of our own, should it fail)
            (self.slot, self.lane), self._claim = lane, None
            self.cgroups = sandbox.SlotCgroups(self.slot).create()
        self.pool, self.proc, self.ready = pool, None, False
        self.reader = self.writer = None
        self.scratch = _scratch(f"autograder-slot{self.slot}-")

    def ensure_started(self):
        if self.lane is not None:
            if self.reader is None:
                self.reader, self.writer = MessageReader(self.lane), self.lane.makefile("wb")
            return
        if self.proc is None or self.proc.poll() is not None:
            self.proc = _worker_process([str(self.slot)], hidden=self.pool.hidden, scratch=self.scratch,
                                        use_sandbox=self.pool.use_sandbox, cgroups=[self.cgroups],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self.reader, self.writer, self.ready = MessageReader(self.proc.stdout), self.proc.stdin, False

    def wait_ready(self):
        if not self.ready:
            try:
                hello = self.reader.next(START_UP_MARGIN)
            except ProtocolError:
                hello = None
            if not isinstance(hello, dict) or not hello.get("ready"):
                code = "" if self.proc is None else f" (exit code {self.proc.poll()})"
                raise RuntimeError(f"executor worker {self.slot} failed to start{code}")
            self.ready = True

    def run(self, job):
        for attempt in (1, 2):
            try:
                self.ensure_started()
                self.wait_ready()
                write_message(self.writer, job)
                return self._reply(job)
            except ProtocolError as exc:  # no second try: the job itself may be what held it up
                log.warning("executor worker %s: %s", self.slot, exc)
                self.stop()
                return _failed_run(job, f"the executor was stopped: {exc}")
            except (OSError, RuntimeError) as exc:
                log.warning("executor worker %s: %s (attempt %s)", self.slot, exc, attempt)
                self.stop()
        return _failed_run(job, "the executor failed on this submission")

    def _reply(self, job):
        """The executor's answer to ``job``, within the longest the job may take there."""
        cells = len(job["cells"])
        timeout = longest_job(job["limits"]["timeout"], cells) + START_UP_MARGIN
        reply = self.reader.next(timeout, limit=MESSAGE_LIMIT * (cells + 1))  # a result per cell, and the rest
        if reply is MessageReader.TIMEOUT:
            raise ProtocolError(f"it did not answer within {timeout:g} s")
        if reply is None:
            raise RuntimeError("executor worker died")
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return Run(reply["cells"], reply["notes"], reply["seconds"])

    def stop(self):
        if self.lane is not None:  # a lane cannot be restarted: go on with a process of our own
            self.lane.close()
            self.lane = None
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        self.reader = self.writer = None
        self.ready = False

    def release(self):
        """Stop for good: the process or lane, the scratch folder and the slot."""
        self.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)
        if self._claim is not None:
            self.cgroups.remove()
            self._claim.close()


def _failed_run(job, note):
    return Run([{"status": "crashed", "outputs": [], "seconds": 0.0} for _ in job["cells"]], [note])


def run_in_kernel(cells, files, limits=Limits(), kernel_name="python3"):
    """Execute the cells in a fresh Jupyter kernel, as stock nbgrader does (no sandbox)."""
    # Imported here: ``grade`` starts the warm executor by way of this module before it
    # imports anything heavy, and nbformat takes 0.2 s.
    import nbformat
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
