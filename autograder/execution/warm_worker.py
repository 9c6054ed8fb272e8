"""The warm executor: one process with torch, numpy, matplotlib and IPython imported,
which forks a fresh, confined child for every submission.

Started by ``execution.WarmPool`` (inside bubblewrap when available) as
``python -m autograder.execution.warm_worker SLOT``, it speaks length-prefixed JSON on
stdin/stdout: it says ``{"ready": true}`` once warm, then answers each job
``{"cells": [source, ...], "files": {name: text}, "limits": {...}, "shared": [index, ...],
"tests": [index, ...]}`` (``shared``: the cells the instructor wrote, compiled once ahead;
``tests``: the test cells) with
``{"cells": [{"status", "outputs", "seconds"}, ...], "notes": [...], "seconds"}``.
Started by ``execution.WarmLanes`` as ``... --lanes SLOT:FD SLOT:FD ...``, it warms up
once and forks a lane per inherited socket, each speaking the same protocol to one
grading process: torch is imported once for all of them. ``--no-optimizer-warm-up``
skips warming torch's optimizers (seconds) for assignments that use none.

A cell that runs past the time limit is interrupted (SIGINT), then killed; a child
that dies (timeout, segfault, ``os._exit``) is replaced by a new fork that replays the
cells that had succeeded, and grading goes on with the next cell. A child whose
messages break the protocol (out of order, too long), or a submission that runs past
its time budget, is stopped for good: its later cells are not run.
"""
import os

# Thread pools must not exist when we fork: a child would inherit a locked pool.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
os.environ["NBCHECK_MODE"] = "record"

import ast  # noqa: E402
import codeop  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import matplotlib  # noqa: E402
import matplotlib.pyplot  # noqa: E402,F401
import numpy  # noqa: E402,F401
import torch  # noqa: E402
import torch.utils.data  # noqa: E402,F401
from IPython.core.async_helpers import _should_be_async  # noqa: E402
from IPython.core.compilerop import CachingCompiler  # noqa: E402
from IPython.core.displayhook import DisplayHook  # noqa: E402
from IPython.core.displaypub import DisplayPublisher  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from traitlets import Type  # noqa: E402
from traitlets.config import Config  # noqa: E402

from autograder.scoring import nbcheck  # noqa: E402
from autograder.execution import protocol
from autograder.execution import warden
from autograder.execution.protocol import (INTERRUPT_GRACE, MAX_RESTARTS, MESSAGE_LIMIT, MessageReader,  # noqa: E402
                                 ProtocolError, cells_allowance, encode, read_message, start_allowance,
                                 write_message)
from autograder.execution.sandbox import (Limits, SlotCgroups, Sweeper, confine_child, enter_cgroups,  # noqa: E402
                                private_mounts, submission_space)

torch.set_num_threads(1)
torch.set_num_interop_threads(1)
# Test cells import the check helper as `nbcheck`: give them this pristine copy,
# imported before any student code could patch what it relies on.
sys.modules["nbcheck"] = nbcheck
nbcheck._torch()  # capture the Tensor methods observations use, before any student code

STREAM_LIMIT = 64 * 1024  # characters kept per stream and cell; the rest is counted
RICH_LIMIT = 512 * 1024  # bytes of display data and results kept per cell
LEARN_LIMIT = 96 * 1024  # bytes of an instructor's cell the zygote compiles ahead (one socket record)
# This module itself: run as a script it is __main__, a name IPython then gives the user's namespace.
MODULE = sys.modules[__name__]
WARDEN = None  # the guard of test cells (warden.Warden), made once the process is warm


class CappedStream:
    """A text stream that keeps the first STREAM_LIMIT characters of a cell's output."""

    def __init__(self, name, outputs):
        self.name, self.outputs, self.dropped = name, outputs, 0

    def write(self, text):
        text = str(text)
        kept = sum(len(o["text"]) for o in self.outputs
                   if o.get("output_type") == "stream" and o["name"] == self.name)
        room = max(0, STREAM_LIMIT - kept)
        if len(text) > room:
            self.dropped += len(text) - room
            text = text[:room]
        if text:
            last = self.outputs[-1] if self.outputs else None
            if last and last.get("output_type") == "stream" and last["name"] == self.name:
                last["text"] += text
            else:
                self.outputs.append({"output_type": "stream", "name": self.name, "text": text})
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False

    def finish(self):
        if self.dropped:
            self.outputs.append({"output_type": "stream", "name": self.name,
                                 "text": f"\n[... {self.dropped} more characters of output dropped]\n"})


class Capture:
    """Where the shell's outputs go while one cell runs."""
    outputs = []
    rich_bytes = 0
    rich_dropped = 0

    @classmethod
    def reset(cls):
        cls.outputs, cls.rich_bytes, cls.rich_dropped = [], 0, 0
        return cls.outputs

    @classmethod
    def add_rich(cls, output):
        """Keep a display output or result while the cell stays under RICH_LIMIT."""
        size = len(json.dumps(output["data"], default=str))
        if cls.rich_bytes + size > RICH_LIMIT:
            cls.rich_dropped += 1
            return
        cls.rich_bytes += size
        cls.outputs.append(output)

    @classmethod
    def finish(cls):
        if cls.rich_dropped:
            cls.outputs.append({"output_type": "stream", "name": "stdout",
                                "text": f"\n[... {cls.rich_dropped} more displayed outputs dropped]\n"})


class CapturingDisplayPublisher(DisplayPublisher):
    def publish(self, data, metadata=None, *args, **kwargs):
        Capture.add_rich({"output_type": "display_data", "data": data, "metadata": metadata or {}})

    def clear_output(self, wait=False):
        Capture.outputs.clear()


class CapturingDisplayHook(DisplayHook):
    def write_output_prompt(self):
        pass

    def write_format_data(self, format_dict, md_dict=None):
        Capture.add_rich({"output_type": "execute_result", "data": format_dict,
                          "metadata": md_dict or {}, "execution_count": None})

    def finish_displayhook(self):
        pass


class AheadCompiler(CachingCompiler):
    """IPython's compiler, answering from what the zygote compiled ahead: the instructor's
    cells, which every child runs (compiling them is a tenth of a child's time).

    ``learn`` parses a cell and compiles each of its statements as IPython's run_ast_nodes
    will, under the compiler flags of that moment; a child's lookups are keyed by the
    source, file name, mode and flags in force, so a student's ``from __future__`` import
    or ``%autoawait`` switch finds nothing and compiles as usual. The trees are handed out
    only while nothing can change them (``usable``: no AST transformer, IPython's default
    interactivity).

    Unlike IPython's, it keeps the code of the cells it learns, and of a test cell while it
    runs (``unlisted``), out of linecache, where the student's code, and the tracebacks and
    ``inspect`` lookups it makes, would find the hidden tests' lines."""

    def __init__(self):
        super().__init__()
        self.trees = {}  # (source, file name, mode, flags) -> its AST
        self.codes = {}  # (id of a statement of those trees, file name, mode, flags) -> its code
        self.usable = lambda: False  # set by the shell
        self.guarded = None  # (source of the test cell running, its warden.CellWatch)
        self.unlisted = False  # whether the cell about to run is a test cell

    def cache(self, transformed_code, number=0, raw_code=None):
        # A test cell's code stays out of linecache, where student code could read it.
        name = (self.get_code_name(raw_code, transformed_code, number) if self.unlisted
                else super().cache(transformed_code, number, raw_code))
        # The warden takes checks only from code compiled under the test cell's own name.
        if self.guarded is not None and raw_code == self.guarded[0] and self.guarded[1].filename is None:
            self.guarded[1].filename = name
        return name

    def learn(self, raw, transformed, number, autoawait):
        name = self.get_code_name(raw, transformed, number)
        flags = self.flags
        tree = super().ast_parse(transformed, filename=name)
        codes = {}
        try:
            last = len(tree.body) - 1
            for index, node in enumerate(tree.body):
                mode = "single" if index == last and isinstance(node, ast.Expr) else "exec"
                module = ast.Interactive([node]) if mode == "single" else ast.Module([node], [])
                with self.extra_flags(ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if autoawait else 0):
                    codes[(id(node), name, mode, self.flags)] = super().__call__(module, name, mode)
        finally:
            self.flags = flags  # a __future__ import in it holds for its own later statements only
        # Both or neither: the codes are keyed by the ids of the tree's statements, which
        # stay theirs only while the tree is kept.
        self.trees[(transformed, name, "exec", flags)] = tree
        self.codes.update(codes)

    def ast_parse(self, source, filename="<unknown>", symbol="exec"):
        tree = self.trees.get((source, filename, symbol, self.flags)) if self.usable() else None
        return tree if tree is not None else super().ast_parse(source, filename, symbol)

    def __call__(self, source, filename, symbol, **kwargs):
        body = getattr(source, "body", ())
        code = (self.codes.get((id(body[0]), filename, symbol, self.flags))
                if len(body) == 1 and not kwargs and self.usable() else None)
        if code is None:
            return super().__call__(source, filename, symbol, **kwargs)
        for feature in codeop._features:  # as codeop.Compile does after compiling
            if code.co_flags & feature.compiler_flag:
                self.flags |= feature.compiler_flag
        return code


class GradingShell(InteractiveShell):
    displayhook_class = CapturingDisplayHook
    display_pub_class = CapturingDisplayPublisher
    compiler_class = Type(AheadCompiler)

    def showtraceback(self, *args, **kwargs):
        pass  # errors are reported from run_cell's result, not printed

    def showsyntaxerror(self, *args, **kwargs):
        pass

    def enable_gui(self, gui=None):
        pass  # no event loop: figures are rendered inline after each cell

    known_transforms = {}  # source -> its transform, worked out ahead (static_transforms)
    known_awaits = {}  # transformed source -> whether it awaits at top level, likewise
    pristine_transformers = None

    def transformers(self):
        """What IPython transforms input with (student code may add to it)."""
        manager = self.input_transformer_manager
        return (manager, *map(tuple, (manager.cleanup_transforms, manager.line_transforms,
                                      manager.token_transformers, self.input_transformers_post)))

    def transform_cell(self, raw_cell):
        known = self.known_transforms.get(raw_cell)
        if known is not None and self.transformers() == self.pristine_transformers:
            return known
        return super().transform_cell(raw_cell)

    def should_run_async(self, raw_cell, *, transformed_cell=None, preprocessing_exc_tuple=None):
        known = self.known_awaits.get(transformed_cell)
        if known is not None and self.autoawait and preprocessing_exc_tuple is None:
            return known
        return super().should_run_async(raw_cell, transformed_cell=transformed_cell,
                                        preprocessing_exc_tuple=preprocessing_exc_tuple)


_static = {}  # source -> [IPython's transform of it, whether that awaits], in a lane, across its jobs


def static_transforms(shell, sources):
    """IPython's input transforms of the cells whose transform depends on their source alone,
    and whether each awaits at top level (IPython compiles the cell once more to find
    out), worked out in the lane and remembered: every student's child runs the same test
    cells, and doing this again in each child costs a sixth of its time.

    ``sources`` are the instructor's cells only: the lane has no time or memory limit to
    work on a student's cell under (a transform can take a minute). A cell of one line
    also goes through IPython's prefilter, which looks at the namespace at the time the
    cell runs: those stay for the child to transform."""
    known = {}
    for source in set(sources):
        if source not in _static:
            _static[source] = _ahead(shell, source)
        if _static[source] is not None:
            known[source] = _static[source]
    return known


def _ahead(shell, source):
    try:
        transformed = shell.input_transformer_manager.transform_cell(source)
        if len(transformed.splitlines()) == 1 or shell.input_transformers_post:
            return None
        return [transformed, _should_be_async(transformed)]
    except Exception:  # let the child meet the error, as a kernel would
        return None


def make_shell():
    # History off from the start: an enabled history manager opens its sqlite file (and
    # starts a thread) as it is made, and every child would inherit that descriptor.
    shell = GradingShell.instance(config=Config(HistoryManager={"enabled": False}), history_length=0,
                                  colors="nocolor")
    shell.enable_matplotlib("inline")
    shell.pristine_transformers = shell.transformers()
    shell.compile.usable = lambda: not shell.ast_transformers and shell.ast_node_interactivity == "last_expr"
    return shell


def error_output(exc):
    return {"output_type": "error", "ename": type(exc).__name__, "evalue": str(exc)[:nbcheck.ERROR_TEXT_LIMIT],
            "traceback": [entry[:nbcheck.ERROR_TEXT_LIMIT]
                          for entry in traceback.format_exception(type(exc), exc, exc.__traceback__)[-20:]]}


def is_memory_error(exc):
    text = f"{type(exc).__name__}: {exc}"
    return isinstance(exc, MemoryError) or "can't allocate memory" in text or "not enough memory" in text


def run_cell(shell, source, test=False):
    """Run a cell, capturing its outputs; ``test``: an instructor's test cell, whose code is
    kept out of linecache while it runs and out of IPython's record of the last cell after."""
    outputs = Capture.reset()
    out, err = CappedStream("stdout", outputs), CappedStream("stderr", outputs)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    shell.compile.unlisted = test
    started = time.perf_counter()
    try:
        result = shell.run_cell(source, store_history=False, silent=False)
    finally:
        sys.stdout, sys.stderr = saved
        shell.compile.unlisted = False
    if test:
        shell.last_execution_result = None  # its info holds the cell's source, for the next cell to read
    out.finish()
    err.finish()
    Capture.finish()
    exc = result.error_before_exec or result.error_in_exec
    status = "ok"
    if exc is not None:
        outputs.append(error_output(exc))
        status = ("timeout" if isinstance(exc, KeyboardInterrupt)
                  else "memory" if is_memory_error(exc) else "error")
    return {"status": status, "outputs": outputs, "seconds": time.perf_counter() - started}


def run_watched(shell, guard, source, checks, modules):
    """Run a cell; a test cell (``checks``: the names of its checks) under the warden's
    watch, with the observations it took. Observation records a cell published itself are
    dropped: only the warden takes them."""
    findings = [] if checks is None else guard.begin(source, checks, modules)
    result = run_cell(shell, source, test=checks is not None)
    if checks is not None:
        records, after = guard.end(modules)
        findings += after
        result["observations"] = {name: list(record) for name, record in records.items()}
    outputs = result["outputs"]
    kept = [o for o in outputs if nbcheck.OBSERVATION_MIME not in o.get("data", ())]
    if len(kept) < len(outputs):
        findings.append(warden.Finding(warden.TAMPERING, "a cell published observation records itself"))
        outputs[:] = kept
    result["findings"] = [[f.kind, f.text] for f in findings]
    return result


class Zygote:
    """A pristine fork of the warm worker, made before any job arrives, that forks the
    per-submission children.

    The worker itself has held earlier students' code in its memory; a child forked from
    it could dig that out. Children forked from the zygote never see any job but their
    own, which reaches them over a socket of their own.
    """

    def __init__(self, shell, private_fds=(), cgroups=None):
        """``cgroups``: the slot's (SlotCgroups), which the zygote joins so that every child
        is born in them (moving a process into a cgroup costs milliseconds)."""
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            self.control.close()
            for fd in private_fds:  # the grader's channel: never within a student's reach
                os.close(fd)
            if cgroups is not None:
                enter_cgroups(cgroups)
            # Children never collect the warm objects: the collector would touch, and so
            # copy, every page they share with the zygote.
            gc.freeze()
            try:
                _zygote_loop(theirs, shell)
            finally:
                os._exit(0)
        theirs.close()
        self.taught = set()  # sources sent to learn

    def spawn(self):
        """A new child: (pid, socket to send it its job and read its results)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        socket.send_fds(self.control, [b"fork"], [theirs.fileno()])
        theirs.close()
        reply = self.control.recv(64)
        if not reply:
            raise RuntimeError("the zygote process died")
        return int(reply), ours

    def reap(self, pid):
        """Wait for a child to end; its wait status."""
        self.control.send(b"wait %d" % pid)
        return int(self.control.recv(64))

    def discard(self, pid):
        """Kill a child that is done, without waiting for it to go."""
        self.control.send(b"discard %d" % pid)

    def learn(self, cells, indices, transforms):
        """Have the zygote compile ahead the instructor's cells among ``cells`` (those at
        ``indices``, as the grader marks them), for every later child. Only these: what
        the zygote holds, every child inherits."""
        for index in indices:
            source = cells[index]
            if source in self.taught or source not in transforms:
                continue
            self.taught.add(source)
            record = b"learn " + json.dumps([source, transforms[source][0]]).encode()
            if len(record) <= LEARN_LIMIT:
                self.control.send(record)


def _zygote_loop(control, shell):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the children
    discarded = set()
    while True:
        message, fds, _, _ = socket.recv_fds(control, LEARN_LIMIT, 1)
        if not message:
            return
        for pid in list(discarded):
            if os.waitpid(pid, os.WNOHANG)[0]:
                discarded.discard(pid)
        if message.startswith(b"discard "):
            pid = int(message.split()[1])
            os.kill(pid, signal.SIGKILL)
            discarded.add(pid)
        elif message == b"fork":
            pid = os.fork()
            if pid == 0:
                control.close()
                with socket.socket(fileno=fds[0]) as conn:
                    _child(conn, shell)
                os._exit(0)
            os.close(fds[0])
            control.send(b"%d" % pid)
        elif message.startswith(b"learn "):
            source, transformed = json.loads(message[6:])
            WARDEN.cover([source])  # pristine here: every child inherits the snapshot
            try:
                shell.compile.learn(source, transformed, shell.execution_count, shell.autoawait)
            except Exception:  # it does not compile: the children will say so, as a kernel would
                pass
        elif message.startswith(b"wait "):
            try:
                _, status = os.waitpid(int(message.split()[1]), 0)
            except ChildProcessError:
                status = 0
            control.send(b"%d" % status)


def _child(conn, shell):
    """In a submission's process: receive the job, confine, replay, run, report."""
    # Bound before any student code runs, which may replace the module's names.
    guard, run, write, report = WARDEN, run_watched, write_message, _report
    stream = conn.makefile("rwb")
    try:
        job = read_message(stream)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # C-level writes must not reach the worker's protocol
            os.dup2(devnull, fd)
        os.close(devnull)
        cells = job["cells"]
        confine_child(Limits(**job["limits"]), job["slot"], job["workdir"], channel=conn.fileno(),
                      cells=len(job["replay"]) + len(cells) - job["start"], namespaces=job["namespaces"])
        sys.path.insert(0, job["workdir"])  # the assignment's support files
        # Its own folder is the only place it may write: temporary files go there too.
        os.environ["TMPDIR"] = tempfile.tempdir = job["workdir"]
        signal.signal(signal.SIGINT, signal.default_int_handler)
        shell.known_transforms = {source: transformed for source, (transformed, _) in job["transforms"].items()}
        shell.known_awaits = dict(job["transforms"].values())
        tests = {int(index): names for index, names in job["tests"].items()}
        guard.cover(cells[index] for index in tests)  # before any student code: a cell the zygote was not taught
        modules = job["test_modules"]
        for index in job["replay"]:
            run_cell(shell, cells[index], test=index in tests)
        for index in range(job["start"], len(cells)):
            write(stream, {"start": index})
            report(stream, index, run(shell, guard, cells[index], tests.get(index), modules))
        write(stream, {"done": True})
    except BaseException as exc:  # reported as the reason the cell's process died
        write_message(stream, {"fatal": f"{type(exc).__name__}: {exc}"})


def _report(stream, index, result):
    """Send a cell's result to the lane; one longer than the protocol allows, as an error."""
    try:
        write_message(stream, {"index": index, **result}, limit=MESSAGE_LIMIT)
    except ProtocolError as exc:
        error = {"output_type": "error", "ename": "OutputTooLarge", "traceback": [],
                 "evalue": f"the cell's outputs are too large to report ({exc})"}
        write_message(stream, {"index": index, "status": "error", "outputs": [error], "seconds": result["seconds"]})


BROKE_PROTOCOL = "the process broke the grader's protocol and was killed"
OVER_BUDGET = "the submission ran past its time budget and was stopped"


class Dismissed(Exception):
    """A submission the lane stops for good: its process broke the protocol, or it ran past
    its time budget. Cell ``index`` gets ``status``; no later cell runs."""

    def __init__(self, index, status, reason):
        super().__init__(reason)
        self.index, self.status = index, status


def run_job(zygote, sweeper, job, slot, shell, *, mounts, cgroups):
    """Run one submission's cells in forked children; never raises for student faults.
    ``mounts``: whether this lane has a mount namespace of its own (private_mounts);
    ``cgroups``: the slot's (SlotCgroups)."""
    limits = Limits(**job.get("limits", {}))
    cgroups.limit(limits)
    cells = job["cells"]
    results = [None] * len(cells)
    notes = []
    with submission_space(limits, slot, mounts) as workdir:
        for name, text in job.get("files", {}).items():
            with open(os.path.join(workdir, name), "w") as f:
                f.write(text)
        started = time.perf_counter()
        shared = job.get("shared", ())
        transforms = static_transforms(shell, [cells[i] for i in shared])
        zygote.learn(cells, shared, transforms)
        tests = {str(index): _check_names(cells[index]) for index in job.get("tests", ())}
        modules = sorted(warden.imported_modules(cells[int(index)] for index in tests))
        # The submission's wall-clock budget, whatever its processes say: every cell its time,
        # and every process (added as it is forked) the time to start and replay.
        budget_end = time.monotonic() + cells_allowance(limits.timeout, len(cells))
        start, restarts = 0, 0
        try:
            while start < len(cells):
                replay = [i for i in range(start) if results[i]["status"] == "ok"]
                budget_end += start_allowance(limits.timeout, len(replay))
                task = {"cells": cells, "transforms": transforms, "start": start, "limits": job.get("limits", {}),
                        "tests": tests, "test_modules": modules, "slot": slot, "workdir": workdir,
                        "namespaces": mounts, "replay": replay}
                try:
                    start = _run_child(zygote, task, limits, results, budget_end)
                except Dismissed as exc:
                    if exc.index < len(cells):
                        results[exc.index] = _failed(exc.status, limits, str(exc))
                    _not_run(results, exc.index + 1)
                    notes.append(f"{exc}" + ("; later cells were not run" if exc.index + 1 < len(cells) else ""))
                    break
                if start < len(cells):
                    restarts += 1
                    if restarts > MAX_RESTARTS:
                        _not_run(results, start)
                        notes.append(f"gave up after {MAX_RESTARTS} crashes; later cells were not run")
                        break
                    cgroups.settle()  # what the dead process held must not be charged to its replay
        finally:
            sweeper.sweep(slot)
    cgroups.settle()
    return {"cells": results, "notes": notes, "seconds": time.perf_counter() - started}


def _check_names(source):
    try:
        return [spec.name for spec in nbcheck.parse_checks(source)]
    except nbcheck.TestCellError:
        return []


def _not_run(results, start):
    for i in range(start, len(results)):
        results[i] = {"status": "not run", "outputs": [], "seconds": 0.0}


def _run_child(zygote, task, limits, results, budget_end):
    """Run a child from task["start"]; return the index to resume from (len(cells) = done).

    Only the lane sets deadlines: the child's first cell has the time limit from its start
    (the replay before it has an allowance of its own), every later cell from the end of
    the one before, and no wait outlasts ``budget_end``. The child's messages must come in
    order, each cell's start then its result, then done: anything else, or the budget
    running out, raises Dismissed."""
    cells, index = task["cells"], task["start"]
    pid, conn = zygote.spawn()
    reaped = None
    try:
        write_message(conn.makefile("wb"), task)
    except OSError:
        pass  # the child died at once; reading below reports it
    reader = MessageReader(conn)
    running, interrupted = False, False
    deadline = time.monotonic() + start_allowance(limits.timeout, len(task["replay"]))
    try:
        while True:
            message = _receive(reader, deadline, budget_end, index)
            if index == len(cells):  # only its last word may follow, or its death
                if message == {"done": True}:
                    zygote.discard(pid)  # it is exiting: no need to wait for it
                    pid = None
                elif message is not None and "fatal" not in message:
                    raise Dismissed(index, "crashed", f"{BROKE_PROTOCOL}: a message out of order")
                return index
            if message is MessageReader.TIMEOUT and running and not interrupted:
                os.kill(pid, signal.SIGINT)
                interrupted, deadline = True, time.monotonic() + INTERRUPT_GRACE
            elif message is MessageReader.TIMEOUT:
                os.kill(pid, signal.SIGKILL)
                detail = "did not stop when interrupted" if interrupted else "did not start in time"
                results[index] = _failed("timeout", limits, detail)
                return index + 1
            elif message is None or "fatal" in message:  # the child died
                if message is None:
                    reaped = zygote.reap(pid)
                reason = message["fatal"] if message else _death_reason(reaped)
                results[index] = _failed("timeout" if interrupted else "crashed", limits, reason)
                return index + 1
            elif not running and message == {"start": index}:
                running = True
                if index == task["start"]:
                    deadline = time.monotonic() + limits.timeout
            elif running and (result := _result(message, index)) is not None:
                results[index] = _settle(result, interrupted, limits)
                index, running, interrupted = index + 1, False, False
                # The next cell's time runs from now; after the last, saying done may take
                # what is left of the budget.
                deadline = time.monotonic() + limits.timeout if index < len(cells) else budget_end
            else:
                raise Dismissed(index, "crashed", f"{BROKE_PROTOCOL}: a message out of order")
    finally:
        conn.close()
        if reaped is None and pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            zygote.reap(pid)


def _receive(reader, deadline, budget_end, index):
    """The child's next message, or TIMEOUT at ``deadline``; Dismissed when it breaks the
    protocol or the budget runs out first."""
    try:
        message = reader.next(max(0.0, min(deadline, budget_end) - time.monotonic()))
    except ProtocolError as exc:
        raise Dismissed(index, "crashed", f"{BROKE_PROTOCOL}: {exc}") from None
    if message is MessageReader.TIMEOUT and budget_end <= deadline:
        raise Dismissed(index, "timeout", OVER_BUDGET)
    return message


def _result(message, index):
    """The result of cell ``index`` in a message from its child, or None if it is not one."""
    result = {key: message.get(key) for key in ("status", "outputs", "seconds")}
    valid = (message.get("index") == index and isinstance(result["status"], str)
             and isinstance(result["outputs"], list) and all(isinstance(o, dict) for o in result["outputs"])
             and isinstance(result["seconds"], (int, float)))
    for key, kind in (("observations", dict), ("findings", list)):  # a test cell's, from the warden
        if key in message:
            valid = valid and isinstance(message[key], kind)
            result[key] = message[key]
    # Decoded and encoded again a message can grow (1e15 comes back as 1000000000000000.0),
    # and the grader reads the reply under MESSAGE_LIMIT per cell.
    return result if valid and len(encode(result)) <= MESSAGE_LIMIT else None


def _settle(result, interrupted, limits):
    if result["status"] == "timeout":  # KeyboardInterrupt: ours, or the student's own
        if interrupted:
            result["outputs"].append(_timeout_output(limits))
        else:
            result["status"] = "error"
    return result


def _timeout_output(limits):
    return {"output_type": "error", "ename": "CellTimeout",
            "evalue": f"the cell ran longer than {limits.timeout:g} s and was interrupted",
            "traceback": []}


def _failed(status, limits, detail):
    if status == "timeout":
        output = _timeout_output(limits)
        output["evalue"] = output["evalue"].replace("interrupted", f"stopped ({detail})")
    else:
        output = {"output_type": "error", "ename": "KernelDied",
                  "evalue": f"the process running this cell died: {detail}", "traceback": []}
    return {"status": status, "outputs": [output], "seconds": 0.0}


def _death_reason(status):
    if os.WIFSIGNALED(status):
        return f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"it exited with code {os.WEXITSTATUS(status)}"


def serve(reader, writer, shell, slot, private_fds=()):
    """Answer one grading process's jobs until it closes the channel."""
    # Before the zygote: its children must see the spaces this lane mounts.
    mounts = private_mounts()
    if os.geteuid() == 0 and not mounts:
        print("warning: the executor may not make namespaces: submissions share /dev/shm and SysV IPC, "
              "and their folders are not bounded in size", file=sys.stderr)
    cgroups = SlotCgroups(slot).usable()
    zygote, sweeper = Zygote(shell, private_fds, cgroups), Sweeper()
    write_message(writer, {"ready": True, "pid": os.getpid(), "nbcheck": nbcheck.__file__})
    while (job := read_message(reader)) is not None:
        try:
            reply = run_job(zygote, sweeper, job, slot, shell, mounts=mounts, cgroups=cgroups)
        except Exception as exc:  # a fault of the executor itself: report it, stay up
            reply = {"error": "".join(traceback.format_exception(exc))}
        write_message(writer, reply)


def serve_lanes(shell, lanes):
    """Fork a lane per (slot, socket fd); wait for them all."""
    pids = []
    for slot, fd in lanes:
        pid = os.fork()
        if pid == 0:
            for _, other in lanes:
                if other != fd:
                    os.close(other)
            with socket.socket(fileno=fd) as conn, conn.makefile("rwb") as stream:
                serve(stream, stream, shell, slot, private_fds=[fd])
            os._exit(0)
        pids.append(pid)
    for _, fd in lanes:
        os.close(fd)
    for pid in pids:
        os.waitpid(pid, 0)


# torch's common layers, once forward and backward: the first use of each in a process
# costs milliseconds (lazy set-up in torch), which every child would pay again.
TORCH_WARM_UP = """\
import torch
from torch import nn
warm = nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4), nn.Tanh(),
                     nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Sigmoid(), nn.Dropout(0.5), nn.Linear(3, 1))
nn.functional.mse_loss(warm(torch.rand(2, 3, 5, 5)), torch.rand(2, 1)).backward()
warm.load_state_dict(warm.state_dict())
"""

# Each optimizer class wraps its step method the first time one is made: made here, the
# warden's snapshot holds the wrapped methods, and a student's optimizer changes nothing.
OPTIMIZER_WARM_UP = """
torch.optim.SGD(warm.parameters(), lr=0.1).step()
for kind in vars(torch.optim).values():
    if isinstance(kind, type) and issubclass(kind, torch.optim.Optimizer):
        try:
            kind(warm.parameters())
        except Exception:  # the base class, or one that needs arguments of its own
            pass
"""


def warm_up(shell, optimizers):
    """Run the shell's own code paths once, torch's common layers (TORCH_WARM_UP) and, with
    ``optimizers``, torch's lazily imported optimizer machinery, whose first use costs
    seconds (OPTIMIZER_WARM_UP), for every submission to come. The names this defines are removed: a
    student's code starts from a kernel's namespace."""
    before = set(shell.user_ns)
    run_cell(shell, TORCH_WARM_UP + (OPTIMIZER_WARM_UP if optimizers else ""))
    for name in set(shell.user_ns) - before:
        del shell.user_ns[name]


def main():
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    args = sys.argv[1:]
    optimizers = "--no-optimizer-warm-up" not in args
    args = [a for a in args if a != "--no-optimizer-warm-up"]
    global WARDEN
    shell = make_shell()
    warm_up(shell, optimizers)
    # The warden must see the SIGINT handler every child sets, not one this process inherited
    # (a grading run started in the background of a script inherits SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    WARDEN = warden.Warden(shell, machinery=[MODULE, protocol, warden, json, json.encoder,
                                             json.JSONEncoder, Capture, CappedStream, CapturingDisplayPublisher,
                                             CapturingDisplayHook, AheadCompiler, warden.Warden])
    WARDEN.seal()
    if args[:1] == ["--lanes"]:
        serve_lanes(shell, [tuple(map(int, lane.split(":"))) for lane in args[1:]])
    else:
        serve(stdin, stdout, shell, int(args[0]) if args else 0)


if __name__ == "__main__":
    main()
