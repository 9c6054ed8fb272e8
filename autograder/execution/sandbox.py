"""Confinement of untrusted student code.

Three layers:

* ``bwrap_command`` wraps a whole executor process in bubblewrap: no network, its own
  PID namespace, and of the file system only the system's programs and libraries and
  the Python installation, read-only; the course directory, the submissions, the
  outputs, the home directory and /tmp are empty tmpfs mounts wherever they would show.
* ``submission_space`` gives each submission, when the executor runs as root, a folder
  on a tmpfs of its own, bounded in size and files, which is also its /dev/shm, in a
  mount namespace of its lane's (``private_mounts``); it goes when the submission ends.
* ``confine_child`` runs in each forked child before any student code: no inherited
  descriptor but its channel, resource limits (address space, processor time,
  processes, file size) and, when the executor runs as root, an IPC namespace of its
  own and a switch to an unprivileged user of its own so that a student cannot signal,
  trace or read another student's process or files.

Without root a submission gets a plain folder and shares /dev/shm and SysV IPC with the
others; without bubblewrap the file system and the network are open.
"""
import contextlib
import ctypes
import fcntl
import functools
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from autograder import settings

UNPRIVILEGED_UID_BASE = 61000  # one uid per executor slot: 61000, 61001, ...
MAX_SLOTS = 1000


def slot_user(slot):
    """The user id a slot's submissions run as, when the executor runs as root."""
    return UNPRIVILEGED_UID_BASE + slot


@dataclass(frozen=True)
class Limits:
    timeout: float = settings.TIMEOUT  # seconds per cell
    memory_mb: int = settings.MEMORY_MB  # address space a submission may add to the warm process
    file_mb: int = settings.FILE_MB
    processes: int = settings.PROCESSES  # counted per user: this submission's processes
    scratch_mb: int = settings.SCRATCH_MB
    scratch_files: int = settings.SCRATCH_FILES
    cpus: float = settings.CPUS

    def cpu_seconds(self, cells):
        """Processor time each process of a submission may use, when its lane has it run
        ``cells`` cells: their time limits, and one more for what runs around them."""
        return math.ceil(self.timeout * (cells + 1))


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


# What a sandbox shows of the machine besides the Python installation, read-only: its
# programs and libraries, and the few settings the dynamic loader and fontconfig read.
# Nothing else is mounted, so no other folder on the machine (another copy of the
# course, an earlier term's, a backup) can be read, wherever it is.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/sys", "/etc/ld.so.cache",
                "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/fonts")


def bwrap_command(argv, *, hidden, scratch, expose=(), writable=()):
    """The bwrap command line that runs ``argv`` confined, with ``scratch`` writable at
    ``sandbox_scratch(scratch)``, where it starts.

    The root is empty but for SYSTEM_PATHS and the Python installation. ``hidden`` are
    directories masked by empty tmpfs mounts (course, submissions, output), should they lie
    inside what is shown; so are the home directory and /tmp. ``expose`` are paths mounted
    read-only (besides the Python installation); ``writable`` are folders bound writable
    where they are (the slots' cgroups).
    """
    cmd, shown = ["bwrap"], Shown()
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            cmd += shown.folders_to(path) + ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            cmd += shown.folders_to(path) + ["--ro-bind", path, path]
            shown.mounted[path] = "system"
    cmd += ["--dev", "/dev", "--proc", "/proc", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--die-with-parent", "--new-session"]
    masks = {os.path.realpath(p) for p in hidden if p and os.path.exists(p)}
    masks.update(os.path.realpath(p) for p in (os.path.expanduser("~"), "/tmp", "/var/tmp"))
    # The Python installation (a venv inside the course dir or /tmp, a pyenv Python under
    # the home directory) and the grading package, at its real place and at the name the
    # worker knows it by, unless already in sight. Outer folders first, so that a mask
    # inside what is shown, or a path shown inside a mask, lies on top.
    shows = {(place, os.path.realpath(path)) for path in set(_exposed_paths()) | set(expose)
             for place in (os.path.abspath(path), os.path.realpath(path))}
    for place, source in sorted([(m, None) for m in masks] + list(shows), key=lambda item: len(item[0])):
        if source is None:
            cmd += shown.folders_to(place) + ["--perms", "0755", "--tmpfs", place]
            shown.mounted[place] = "tmpfs"
        elif shown.over(place)[1] == "tmpfs":
            cmd += shown.folders_to(place) + ["--ro-bind", source, place]
            shown.mounted[place] = "shown"
    for path in writable:
        cmd += ["--bind", path, path]
    Path(scratch).mkdir(parents=True, exist_ok=True)
    inside = sandbox_scratch(scratch)
    cmd += ["--bind", str(scratch), inside, "--chdir", inside, "--"]
    return cmd + list(argv)


class Shown:
    """What a bwrap command line mounts so far: {path: "system" | "tmpfs" | "shown"}, on
    an empty tmpfs root."""

    def __init__(self):
        self.mounted, self.made = {"/": "tmpfs"}, set()

    def over(self, place):
        """(the mount a path lies in, its kind)."""
        top = max((m for m in self.mounted if place == m or place.startswith(m.rstrip("/") + "/")), key=len)
        return top, self.mounted[top]

    def folders_to(self, place):
        """Options that make the folders between ``place`` and the tmpfs it lies on: bwrap
        would make them with mode 0700, closed to the unprivileged users the children
        switch to. Inside a bind they are the machine's own."""
        top, kind = self.over(os.path.dirname(place))
        if kind != "tmpfs":
            return []
        between = [str(p) for p in reversed(Path(place).parents) if len(str(p)) > len(top) and str(p) not in self.made]
        self.made.update(between)
        return [option for folder in between for option in ("--perms", "0755", "--dir", folder)]


CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET = 0x00020000, 0x08000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000
MNT_DETACH = 0x2
SPACE_FOLDERS = ("work", "shm")  # on a submission's tmpfs: its working folder, its /dev/shm


@functools.lru_cache(maxsize=None)
def _libc():
    """Linux's C library, with the calls Python lacks (3.11 has no os.unshare or mount)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.unshare.argtypes = [ctypes.c_int]
    return libc


def _libc_call(name, *args):
    if getattr(_libc(), name)(*args) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{name}: {os.strerror(error)}")


def private_mounts():
    """Give this process (a lane, before it forks its zygote) a mount namespace of its own,
    where its submissions' spaces are mounted out of the machine's and the other lanes'
    sight, and a network namespace of its own (no interface up), so that students graded
    at the same time on other lanes cannot reach it, not even over loopback or an abstract
    socket; whether it could (root, allowed to make namespaces). Without, submissions get
    plain folders and share /dev/shm, an IPC and a network namespace."""
    if os.geteuid() != 0 or sys.platform != "linux":
        return False
    try:
        _libc_call("unshare", CLONE_NEWNS | CLONE_NEWNET)
        _libc_call("mount", None, b"/", None, MS_REC | MS_PRIVATE, None)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def submission_space(limits, slot, mounts):
    """A submission's working folder, in TMPDIR.

    With ``mounts`` (private_mounts) it is on a tmpfs of its own, bounded in size and in
    files (``limits.scratch_mb``, ``scratch_files``), which also holds the /dev/shm its
    processes see; it goes, with all it holds, when the submission ends. Without, it is a
    plain folder, where only the size of each file is bounded (``limits.file_mb``).
    """
    box = tempfile.mkdtemp(prefix="submission-")
    try:
        if not mounts:
            yield box
            return
        # The tmpfs counts its own folders among its inodes.
        options = f"size={limits.scratch_mb}m,nr_inodes={limits.scratch_files + 1 + len(SPACE_FOLDERS)},mode=0711"
        _libc_call("mount", b"tmpfs", box.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options.encode())
        try:
            work, shm = (os.path.join(box, name) for name in SPACE_FOLDERS)
            for folder in (work, shm):
                os.mkdir(folder, 0o700)
            uid = slot_user(slot)
            os.chown(shm, uid, uid)  # the working folder is handed over by confine_child
            _libc_call("mount", shm.encode(), b"/dev/shm", None, MS_BIND, None)
            try:
                yield work
            finally:
                _libc_call("umount2", b"/dev/shm", MNT_DETACH)
        finally:
            _libc_call("umount2", box.encode(), MNT_DETACH)
    finally:
        shutil.rmtree(box, ignore_errors=True)


CGROUP_EMPTYING_WAIT = 2.0  # seconds the processes of a stopped worker have to leave its cgroups
CGROUP_CONTROLLERS = {  # the cgroup v1 controllers a slot uses, and what is lost without each
    "memory": "shared memory and files a submission makes do not count against its memory limit",
    "cpu": "a submission's processes are not held to its share of the processors (Limits.cpus)",
}


class SlotCgroups:
    """The cgroups (v1) of one executor slot, beneath the grading process's own: the
    grading side makes them and binds them writable into the sandbox (the sandbox sees
    the rest of /sys read-only); the slot's zygote joins them, so that each child is born
    in them, and its lane sets the job's limits on them. ``folders``: {controller: folder}.

    A slot runs one submission at a time and its sweep ends what a submission leaves, so
    a slot's cgroup is its submission's. Processes are bounded by the slot's user
    (RLIMIT_NPROC), which counts the same processes a pids cgroup would.
    """

    def __init__(self, slot):
        self.folders = {controller: os.path.join(parent, f"autograder-slot{slot}")
                        for controller, parent in _own_cgroups().items()}
        self.limits = None  # those last set

    def create(self):
        """Make the folders (the grading side, as root); drop those it may not make."""
        for controller, folder in list(self.folders.items()):
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError:
                del self.folders[controller]
        return self

    def usable(self):
        """Keep the folders this process may move processes into (in the sandbox: those bound)."""
        self.folders = {controller: folder for controller, folder in self.folders.items()
                        if os.access(os.path.join(folder, "cgroup.procs"), os.W_OK)}
        return self

    def missing(self):
        """What is lost for want of cgroups, in words ("" when nothing is)."""
        return "; ".join(lost for controller, lost in CGROUP_CONTROLLERS.items() if controller not in self.folders)

    def limit(self, limits):
        """Set ``limits`` on the slot: memory with the scratch space (tmpfs and shared
        memory are charged to the cgroup of the process that writes them), and cpus."""
        if limits == self.limits:
            return
        if "memory" in self.folders:
            _write(self.folders["memory"], "memory.limit_in_bytes", (limits.memory_mb + limits.scratch_mb) * 2**20)
        if "cpu" in self.folders:
            period = int(_read(self.folders["cpu"], "cpu.cfs_period_us"))
            _write(self.folders["cpu"], "cpu.cfs_quota_us", int(limits.cpus * period))
        self.limits = limits

    def settle(self):
        """Wait (a moment at most) until the shared memory of the submission just swept is
        freed: a killed process's IPC namespace releases it after the process has gone, and
        until then it is charged to the slot, and so to the next submission."""
        if "memory" not in self.folders:
            return
        deadline = time.monotonic() + CGROUP_EMPTYING_WAIT
        while _shared_memory(self.folders["memory"]) and time.monotonic() < deadline:
            time.sleep(0.01)

    def remove(self):
        """Remove the folders, once the processes in them are gone: those of a worker just
        killed take a moment to exit."""
        deadline = time.monotonic() + CGROUP_EMPTYING_WAIT
        for folder in self.folders.values():
            while os.path.isdir(folder):
                try:
                    os.rmdir(folder)
                except OSError:  # still in use
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)


def enter_cgroups(cgroups):
    """Move the calling process (a slot's zygote) into the slot's cgroups (SlotCgroups),
    where the children it forks are born (confine_child makes them, not it, what the
    kernel's out-of-memory killer picks first)."""
    for folder in cgroups.folders.values():
        _write(folder, "cgroup.procs", 0)


def _shared_memory(folder):
    """Bytes of shared memory (shm segments, tmpfs) charged to a memory cgroup."""
    for line in _read(folder, "memory.stat").splitlines():
        name, value = line.split()
        if name == "shmem":
            return int(value)
    return 0


def _read(folder, name):
    with open(os.path.join(folder, name)) as f:
        return f.read()


def _write(folder, name, value):
    with open(os.path.join(folder, name), "w") as f:
        f.write(str(value))


def _own_cgroups():
    """{controller: the folder of this process's cgroup} for the controllers of
    CGROUP_CONTROLLERS mounted here as cgroup v1 hierarchies."""
    try:
        with open("/proc/self/cgroup") as f:
            own = {controller: path for _, controllers, path in (line.rstrip("\n").split(":", 2) for line in f)
                   for controller in controllers.split(",")}
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return {}
    folders = {}
    for fields in mounts:
        root, mount, kind = fields[3], fields[4], fields[fields.index("-") + 1:]
        if kind[0] != "cgroup":
            continue
        for controller in kind[2].split(","):
            if controller not in CGROUP_CONTROLLERS or controller not in own or controller in folders:
                continue
            inside = os.path.relpath(own[controller], root)
            if not inside.startswith(".."):  # else a mount of another part of the hierarchy
                folders[controller] = os.path.normpath(os.path.join(mount, inside))
    return folders


def confine_child(limits, slot, workdir, *, channel, cells, namespaces=False):
    """Apply limits and drop privileges in a freshly forked child, before student code.

    Of the descriptors it inherited, it keeps 0-2 and ``channel`` (to its lane) only.
    ``cells``: how many cells it is to run (replayed ones included), which sets its
    processor time (``Limits.cpu_seconds``): the bound of a process no interrupt stops,
    and of the processes it forks, where no cgroup bounds them.
    With ``namespaces`` (its lane could make them, see private_mounts) it gets an IPC
    namespace of its own: SysV shared memory, semaphores and message queues it makes are
    out of other submissions' reach, and go when its processes do. It is born in its
    slot's cgroups (its zygote's, see enter_cgroups), and all it forks is in them too.
    """
    os.closerange(3, channel)
    os.closerange(channel + 1, os.sysconf("SC_OPEN_MAX"))
    # Over its slot's memory limit, the kernel kills the submission's processes, never the
    # zygote that shares the slot's cgroup (raising one's own score needs no privilege).
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")
    if namespaces:
        _libc_call("unshare", CLONE_NEWIPC)
    current = _address_space_bytes()
    budget = current + limits.memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (budget, budget))
    file_bytes = limits.file_mb * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    seconds = limits.cpu_seconds(cells)
    # SIGXCPU at the soft limit; SIGKILL a second later, should it be caught.
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
    if os.geteuid() == 0:
        uid = slot_user(slot)
        os.chown(workdir, uid, uid)
        os.chmod(workdir, 0o700)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        fresh_keyrings()
        # Counted per user, so only this submission's processes count.
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    os.chdir(workdir)


# The kernel's key store: keyctl(2) operations and the special keyrings it names.
SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}.get(platform.machine())
KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_CLEAR = 1, 7
KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING = -4, -5


def fresh_keyrings():
    """In a child switched to its slot's user: a session keyring of its own, and the user's
    keyrings emptied. The kernel keeps a user's keyrings as long as it likes, whatever
    became of the user's processes: what an earlier submission of the slot stored there
    would reach this one. Where the kernel has no key store, there is nothing to share."""
    if SYS_KEYCTL is None:
        return
    syscall, long = _libc().syscall, ctypes.c_long
    syscall(long(SYS_KEYCTL), long(KEYCTL_JOIN_SESSION_KEYRING), None)
    for keyring in (KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING):
        syscall(long(SYS_KEYCTL), long(KEYCTL_CLEAR), long(keyring))


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
            self.proc.stdin.write(f"{slot_user(slot)}\n")
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


def hidden_folders(db_url, *folders):
    """The folders a sandbox hides: the grading process's own, the gradebook's (an SQLite
    file's), and ``folders`` (lists of them)."""
    return [os.getcwd(), *database_dirs(db_url), *(str(f) for group in folders for f in group)]


# Where local database servers keep their Unix sockets.
SERVER_SOCKET_DIRS = ("/run/postgresql", "/var/run/postgresql", "/run/mysqld", "/var/run/mysqld")


def database_dirs(db_url):
    """The gradebook's folders a sandbox hides: an SQLite file's; for a database server,
    the folders of its Unix sockets (those the URL names, and the usual ones of a local
    server), through which a student's process could reach it: the network namespace
    stops TCP, not a socket in the file system."""
    if db_url.startswith("sqlite:///"):
        return [os.path.dirname(os.path.abspath(db_url[len("sqlite:///"):].split("?")[0]))]
    url = urllib.parse.urlsplit(db_url)
    named = [url.hostname or "", *urllib.parse.parse_qs(url.query).get("host", [])]
    sockets = [h for h in urllib.parse.unquote(",".join(named)).split(",") if h.startswith("/")]
    return [*sockets, *(d for d in SERVER_SOCKET_DIRS if os.path.isdir(d))] if "://" in db_url else []
