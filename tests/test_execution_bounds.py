"""Every job is bounded: a submission's process cannot keep its lane waiting, and an
executor that stops answering cannot keep the grader waiting.

The attacks speak the executor's protocol on the socket each submission's process
inherits (the only socket it holds)."""
import os
import socket
import struct
import sys
import threading
import time

import pytest

from autograder import execution
from autograder.execution import sandbox
from autograder.execution import WarmPool
from autograder.execution.protocol import MESSAGE_LIMIT, read_message, write_message
from autograder.execution.sandbox import Limits

from test_execution import FAST, ROOT, pool  # noqa: E402,F401 (the same pool fixture)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")

WITHIN = 60  # seconds any job here may take, start-up included: proof that it ended

# What an attacking cell starts with: every socket it holds, and ways to write on them.
CHANNEL = """
import os, socket, stat, struct, time
from autograder.execution.protocol import write_message
socks, seen = [], set()
for fd in [int(name) for name in os.listdir('/proc/self/fd')]:
    try:
        found = os.fstat(fd)
    except OSError:
        continue
    if stat.S_ISSOCK(found.st_mode) and found.st_ino not in seen:
        seen.add(found.st_ino)
        socks.append(socket.socket(fileno=os.dup(fd)))
def raw(data):
    for s in socks:
        s.sendall(data)
def send(message):
    for s in socks:
        write_message(s.makefile('wb'), message)
"""


def run(pool, *cells, limits=FAST, shared=()):
    return pool.submit(list(cells), {}, limits, shared).result(timeout=WITHIN)


def text(cell):
    return "".join(o.get("text", "") for o in cell["outputs"] if o["output_type"] == "stream")


# --- a submission's process against its lane ---------------------------------------------------

BREAKS = {
    # Were deadlines the child's to set, its own start again, well within the time limit,
    # would keep the cell it is in running for ever.
    "its own start, every half second": "while True:\n    send({'start': 1})\n    time.sleep(0.5)",
    "the start of a later cell": "send({'start': 2})\ntime.sleep(3600)",
    "bytes that are not JSON": "raw(struct.pack('>I', 5) + b'nope!')\ntime.sleep(3600)",
    "JSON that is not an object": "send([1, 2])\ntime.sleep(3600)",
    # Refused on its announced length: read whole, it would cost the lane, which has no
    # limits, as much memory.
    "a message of 256 MiB": "raw(struct.pack('>I', 2**28))\nfor _ in range(256):\n    raw(bytes(2**20))\n"
                            "time.sleep(3600)",
}


@pytest.mark.parametrize("attack", BREAKS.values(), ids=BREAKS.keys())
def test_a_process_that_breaks_the_protocol_is_killed_and_its_submission_stopped(pool, attack):
    result = run(pool, "x = 1", CHANNEL + attack, "print(x)")
    assert [c["status"] for c in result.cells] == ["ok", "crashed", "not run"]
    assert "broke the grader's protocol" in result.cells[1]["outputs"][0]["evalue"]
    assert any("broke the grader's protocol" in note for note in result.notes), result.notes


def test_a_process_that_forges_its_last_result_cannot_outlast_the_budget(pool):
    """In order, the protocol cannot tell a forged result from a real one; a process that
    then never says it is done, ignoring interrupts, is stopped at the submission's budget."""
    forge = CHANNEL + ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                       "send({'index': 1, 'status': 'ok', 'outputs': [], 'seconds': 0.0})\n"
                       "time.sleep(3600)")
    result = run(pool, "x = 1", forge)
    assert [c["status"] for c in result.cells] == ["ok", "ok"]
    assert any("ran past its time budget" in note for note in result.notes), result.notes


def test_outputs_too_large_for_the_protocol_are_an_error_of_that_cell(pool):
    """Display metadata is not capped: the cell's result would break the protocol, so its
    process reports an error instead, and the later cells run."""
    big = ("from IPython.display import display\n"
           f"display({{'text/plain': 'x'}}, metadata={{'pad': 'x' * {MESSAGE_LIMIT}}}, raw=True)")
    result = run(pool, "x = 1", big, "print(x)")
    assert [c["status"] for c in result.cells] == ["ok", "error", "ok"]
    assert result.cells[1]["outputs"][0]["ename"] == "OutputTooLarge"
    assert text(result.cells[2]) == "1\n"


def test_a_students_cell_is_transformed_only_in_its_own_process(pool):
    """IPython's input transforms take a minute on 64 KB of ``!echo`` lines. The lane, which
    has no time limit, works ahead on the instructor's cells only: a student's cell times
    out in its own process."""
    echo = "!echo\n" * (64 * 1024 // 6)
    result = run(pool, echo, echo, echo, "print('after')")
    assert [c["status"] for c in result.cells] == ["timeout", "timeout", "timeout", "ok"]
    assert text(result.cells[3]) == "after\n"


# --- the executor against the grader -------------------------------------------------------------

QUICK = Limits(timeout=0.1, memory_mb=512)  # a job the grader waits for a few seconds at most


def _play(sock, behaviour):
    """The executor's end of a lane, played as told until the grader hangs up."""
    stream = sock.makefile("rwb", buffering=0)
    try:
        if behaviour != "mute":
            write_message(stream, {"ready": True})
            read_message(stream)  # the job
        if behaviour == "oversize":
            stream.write(struct.pack(">I", 2**31))
        if behaviour == "trickle":  # a reply that never ends
            stream.write(struct.pack(">I", 2**20))
            while True:
                stream.write(b" ")
                time.sleep(0.05)
        while sock.recv(1 << 16):
            pass
    except OSError:
        pass
    finally:
        stream.close()
        sock.close()


@pytest.mark.parametrize("behaviour", ["mute", "silent", "trickle", "oversize"])
def test_an_executor_that_does_not_answer_is_replaced(behaviour, monkeypatch):
    """A lane that never says it is ready, never answers, answers for ever, or announces an
    answer of 2 GiB: the grader stops waiting, the submission is marked crashed, and the
    next one runs in a new executor."""
    slot, claim = sandbox.claim_slot()
    ours, theirs = socket.socketpair()
    threading.Thread(target=_play, args=(theirs, behaviour), daemon=True).start()
    pool = WarmPool(hidden=[ROOT], lanes=[(slot, ours)])
    try:
        with monkeypatch.context() as patch:
            patch.setattr(execution, "START_UP_MARGIN", 0.5)  # far too short for a real executor to start
            failed = pool.submit(["print(6 * 7)"], {}, QUICK).result(timeout=WITHIN)
        recovered = pool.submit(["print(6 * 7)"], {}, FAST).result(timeout=WITHIN)
    finally:
        pool.close()
        claim.close()
    assert [c["status"] for c in failed.cells] == ["crashed"]
    assert any("executor" in note for note in failed.notes), failed.notes
    assert text(recovered.cells[0]) == "42\n"
