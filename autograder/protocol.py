"""Messages between the grader and its warm workers: 4-byte length, then JSON.

Kept apart from warm_worker.py so the grader can speak it without importing torch.
"""
import json
import os
import select
import struct
import time


def read_message(stream):
    header = stream.read(4)
    if len(header) < 4:
        return None
    (size,) = struct.unpack(">I", header)
    return json.loads(stream.read(size))


def write_message(stream, message):
    data = json.dumps(message).encode()
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


class MessageReader:
    """Length-prefixed messages from a child's pipe, with a timeout per message."""
    TIMEOUT = object()

    def __init__(self, sock):
        self.fd, self.buffer = sock.fileno(), b""

    def next(self, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 4:
                (size,) = struct.unpack(">I", self.buffer[:4])
                if len(self.buffer) >= 4 + size:
                    data, self.buffer = self.buffer[4:4 + size], self.buffer[4 + size:]
                    return json.loads(data)
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.fd], [], [], wait)
            if not ready:
                return self.TIMEOUT
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                return None
            self.buffer += chunk
