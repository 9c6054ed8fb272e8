"""Confinement of untrusted student code.

Two layers:

* ``bwrap_command`` wraps a whole executor process in bubblewrap: no network, its own
  PID namespace, the file system read-only, and the course directory, the submissions,
  the outputs, the home directory and /tmp hidden behind empty tmpfs mounts (only the
  Python installation is mounted back, read-only).
* ``confine_child`` runs in each forked child before any student code: resource
  limits (address space, processes, file size, CPU time) and, when the executor runs
  as root, a switch to an unprivileged user of its own so that a student cannot signal,
  trace or read another student's process or files.
"""
import fcntl
import functools
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

UNPRIVILEGED_UID_BASE = 61000  # one uid per executor slot: 61000, 61001, ...
MAX_SLOTS = 1000


@dataclass(frozen=True)
class Limits:
    timeout: float = 10.0  # seconds per cell
    memory_mb: int = 2048  # address space a submission may add to the warm process
    file_mb: int = 64  # largest file a submission may write
    processes: int = 64  # processes a submission's user may own


@functools.lru_cache(maxsize=None)
def bwrap_available():
    """Whether bubblewrap is installed *and* can make its namespaces here (containers often forbid it)."""
    if shutil.which("bwrap") is None:
        return False
    probe = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "true"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def claim_slot():
    """A slot no other executor on this machine holds: (slot, the open lock file keeping it).

    The lock is released when the file is closed, or when the process ends.
    """
    # Not under TMPDIR: two runs with different temporary folders must not take one slot
    # (its user, its cgroups). Without root a slot names nothing shared: a folder per user.
    folder = Path("/tmp/autograder-slots" + ("" if os.geteuid() == 0 else f"-{os.geteuid()}"))
    folder.mkdir(mode=0o700, exist_ok=True)
    for slot in range(MAX_SLOTS):
        claim = open(folder / f"{slot}.lock", "w")
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return slot, claim
        except BlockingIOError:
            claim.close()
    raise RuntimeError(f"all {MAX_SLOTS} executor slots are taken")


def _exposed_paths():
    """What the executor must still read inside the sandbox: the Python installation, as
    the worker names it (a venv reached through a symlink keeps its name)."""
    paths = {sys.prefix, sys.base_prefix, sysconfig.get_paths()["stdlib"],
             sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return sorted(p for p in paths if os.path.exists(p))


def sandbox_scratch(scratch):
    """Where the folder ``scratch`` appears inside the sandbox: under its own /tmp, whatever
    the folders above it outside, which the per-slot users may not be allowed to cross."""
    return os.path.join("/tmp", os.path.basename(scratch))


def bwrap_command(argv, *, hidden, scratch, expose=()):
    """The bwrap command line that runs ``argv`` confined, with ``scratch`` writable at
    ``sandbox_scratch(scratch)``, where it starts.

    ``hidden`` are directories masked by empty tmpfs mounts (course, submissions, output);
    ``expose`` are paths mounted back read-only (besides the Python installation).
    """
    cmd = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
           "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
           "--die-with-parent", "--new-session"]
    masks = {os.path.realpath(p) for p in hidden if p and os.path.exists(p)}
    masks.update(os.path.realpath(p) for p in (os.path.expanduser("~"), "/tmp", "/var/tmp"))
    for path in sorted(masks, key=len):
        cmd += ["--perms", "0755", "--tmpfs", path]
    # Mount back what a mask covered: a venv inside the course dir or /tmp, a pyenv
    # Python under the home directory, the grading package; at its real place and at the
    # name the worker knows it by.
    for path in sorted(set(_exposed_paths()) | set(expose)):
        for place in sorted({os.path.abspath(path), os.path.realpath(path)}):
            if _mask_over(masks, place) is not None:
                cmd += _folders_to(masks, place) + ["--ro-bind", os.path.realpath(path), place]
    Path(scratch).mkdir(parents=True, exist_ok=True)
    inside = sandbox_scratch(scratch)
    cmd += ["--bind", str(scratch), inside, "--chdir", inside, "--"]
    return cmd + list(argv)


def _mask_over(masks, place):
    return max((m for m in masks if place.startswith(m + os.sep)), key=len, default=None)


def _folders_to(masks, place):
    """Options that make the folders between ``place`` and the mask over it: bwrap would
    make them with mode 0700, closed to the unprivileged users the children switch to."""
    mask = _mask_over(masks, place)
    between = sorted((Path(mask) / p for p in Path(place).relative_to(mask).parents if str(p) != "."),
                     key=lambda p: len(p.parts))
    return [option for folder in between for option in ("--perms", "0755", "--dir", str(folder))]


def confine_child(limits, slot, workdir, *, channel):
    """Apply limits and drop privileges in a freshly forked child, before student code.

    Of the descriptors it inherited, it keeps 0-2 and ``channel`` (to its lane) only.
    """
    os.closerange(3, channel)
    os.closerange(channel + 1, os.sysconf("SC_OPEN_MAX"))
    current = _address_space_bytes()
    budget = current + limits.memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (budget, budget))
    file_bytes = limits.file_mb * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if os.geteuid() == 0:
        uid = UNPRIVILEGED_UID_BASE + slot
        os.chown(workdir, uid, uid)
        os.chmod(workdir, 0o700)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        # Counted per user, so only this submission's processes count.
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    os.chdir(workdir)


class Sweeper:
    """Kills whatever a finished submission left running under its slot's user.

    A small Python process of its own (when the executor runs as root): a sweep forks
    it, a few megabytes, rather than the warm worker with torch loaded.
    """

    def __init__(self):
        self.proc = None
        if os.geteuid() == 0:
            self.proc = subprocess.Popen([sys.executable, "-S", "-c", _SWEEPER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)

    def sweep(self, slot):
        if self.proc is not None:
            self.proc.stdin.write(f"{UNPRIVILEGED_UID_BASE + slot}\n")
            self.proc.stdin.flush()
            if not self.proc.stdout.readline():
                raise RuntimeError("the sweeper process died")


# From a process of that user, kill(-1) signals all the others, and none can fork
# past it (the kernel walks its process list under a lock).
_SWEEPER = """
import os, sys
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        try:
            uid = int(line)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, 9)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    print("swept", flush=True)
"""


def _address_space_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
