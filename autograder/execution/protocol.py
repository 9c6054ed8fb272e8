"""Messages between the grader and its warm workers: 4-byte length, then a JSON object;
and the time a job may take there, which both sides must agree on.

Kept apart from warm_worker.py so the grader can speak it without importing torch.
"""
import json
import os
import select
import struct
import time

# Bytes of one message from a submission's process: several times what a cell's capped
# outputs (warm_worker's STREAM_LIMIT and RICH_LIMIT) take, JSON-escaped.
MESSAGE_LIMIT = 8 * 2**20
INTERRUPT_GRACE = 2.0  # seconds a cell has to stop after SIGINT before it is killed
MAX_RESTARTS = 3  # processes a submission may lose, and have replaced, before its later cells are given up


class ProtocolError(Exception):
    """A peer sent what the protocol does not allow, or did not answer in time."""


def cells_allowance(timeout, cells):
    """Seconds a submission's cells may run: each its time limit and the grace after an interrupt."""
    return cells * (timeout + INTERRUPT_GRACE)


def start_allowance(timeout, replayed):
    """Seconds a submission's new process may take to start and replay ``replayed`` cells."""
    return timeout * (replayed + 1)


def longest_job(timeout, cells):
    """The most a submission of ``cells`` cells may take in the executor: its cells, and a
    start for each process it may need (the first and MAX_RESTARTS replacements), each
    replaying every cell."""
    return cells_allowance(timeout, cells) + (MAX_RESTARTS + 1) * start_allowance(timeout, cells)


def encode(message):
    """A message's JSON, as it is sent (without the length)."""
    return json.dumps(message, separators=(",", ":")).encode()


def read_message(stream):
    """The next message from a trusted peer's file object; None at the end of the stream."""
    header = stream.read(4)
    if len(header) < 4:
        return None
    (size,) = struct.unpack(">I", header)
    return json.loads(stream.read(size))


def write_message(stream, message, limit=None):
    """Send ``message``; with ``limit``, raise ProtocolError rather than send one longer."""
    data = encode(message)
    if limit is not None and len(data) > limit:
        raise ProtocolError(f"a message of {len(data)} bytes, more than {limit}")
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


class MessageReader:
    """Length-prefixed messages from a socket or pipe that may not be trusted: each must
    arrive within a timeout and be no longer than a limit. Reading is linear in what
    arrives, and a message announced longer than the limit is refused before it is read."""
    TIMEOUT = object()

    def __init__(self, source):
        self.fd, self.buffer = source.fileno(), bytearray()

    def next(self, timeout, limit=MESSAGE_LIMIT):
        """The next message; None at the end of the stream; TIMEOUT if it is not all there
        within ``timeout`` seconds (a later call goes on with it). Raises ProtocolError."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 4:
                (size,) = struct.unpack_from(">I", self.buffer)
                if size > limit:
                    raise ProtocolError(f"a message of {size} bytes announced, more than {limit}")
                if len(self.buffer) >= 4 + size:
                    data = self.buffer[4:4 + size]
                    del self.buffer[:4 + size]  # from the front of a bytearray: no copy of the rest
                    return _decode(data)
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return self.TIMEOUT
            try:
                chunk = os.read(self.fd, 1 << 20)
            except ConnectionResetError:  # the peer went away with our data unread
                return None
            if not chunk:
                return None
            self.buffer += chunk


def _decode(data):
    try:
        message = json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
        raise ProtocolError(f"a message that is not JSON ({type(exc).__name__})") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message that is not a JSON object")
    return message
