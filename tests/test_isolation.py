"""Submissions isolated from each other and bounded: attacks by one student that must
neither reach the next one nor take more than the limits give it.

Most run two submissions in sequence on one warm worker (as a grading run does); the
temporary-folder ones grade a whole batch."""
import ctypes
import hashlib
import os
import platform
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest

from autograder.execution import sandbox
from autograder.execution import WarmLanes, WarmPool
from autograder.execution.sandbox import Limits

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
from make_course import TESTS  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = Limits(timeout=5.0, memory_mb=512)
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="per-submission namespaces, tmpfs and cgroups need root")


def _pool(use_sandbox):
    if use_sandbox and not sandbox.bwrap_available():
        if os.environ.get("REQUIRE_SANDBOX"):
            pytest.fail("REQUIRE_SANDBOX is set but bubblewrap (bwrap) is not installed")
        pytest.skip("bubblewrap is not installed")
    return WarmPool(1, hidden=[ROOT], use_sandbox=use_sandbox)


@pytest.fixture(scope="module")
def sandboxed():
    pool = _pool(True)
    yield pool
    pool.close()


@pytest.fixture(scope="module", params=["bwrap", "bare"])
def pool(request):
    """A worker inside bubblewrap, and one without (which shares the machine's /dev/shm and
    IPC namespace unless the executor isolates each submission itself)."""
    pool = _pool(request.param == "bwrap")
    yield pool
    pool.close()


def run(pool, *cells, limits=FAST, files=None):
    return pool.submit(list(cells), files or {}, limits).result(timeout=300)


def text(cell):
    return "".join(o.get("text", "") for o in cell["outputs"] if o["output_type"] == "stream")


def printed(result, index=0):
    cell = result.cells[index]
    assert cell["status"] == "ok", cell["outputs"]
    return text(cell)


# --- shared memory -------------------------------------------------------------------------------

SHM_KEY = 0x5EED0000 + os.getpid() % 0xFFFF
LIBC = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.shmdt.argtypes = [ctypes.c_void_p]
IPC_CREAT = 0o1000
"""


def leave_shared_memory(marker):
    """Student A: a SysV segment and a POSIX one (a file in /dev/shm) holding ``marker``,
    left behind; prints its IPC namespace."""
    return (LIBC + f"MARKER = {marker!r}\n"
            f"segment = libc.shmget({SHM_KEY}, 1 << 20, IPC_CREAT | 0o666)\n"
            "address = libc.shmat(segment, None, 0)\n"
            "ctypes.memmove(address, MARKER, len(MARKER))\n"
            "libc.shmdt(address)\n"
            "try:\n"
            "    with open('/dev/shm/left-behind', 'wb') as f:\n"
            "        f.write(MARKER)\n"
            "    os.chmod('/dev/shm/left-behind', 0o666)\n"
            "except OSError:\n"
            "    pass\n"
            "print(segment >= 0, os.readlink('/proc/self/ns/ipc'))")


def find_shared_memory(marker):
    """Student B: looks for A's segment by its key, every segment of its namespace, and
    A's file in /dev/shm; prints where it found the marker."""
    return (LIBC + f"MARKER = {marker!r}\n"
            "found = []\n"
            f"segment = libc.shmget({SHM_KEY}, 0, 0)\n"
            "if segment >= 0:\n"
            "    address = libc.shmat(segment, None, 0)\n"
            "    if ctypes.string_at(address, len(MARKER)) == MARKER:\n"
            "        found.append('sysv')\n"
            "    libc.shmdt(address)\n"
            "with open('/proc/sysvipc/shm') as f:\n"
            "    found += ['segment'] * (len(f.readlines()) - 1)\n"
            "try:\n"
            "    with open('/dev/shm/left-behind', 'rb') as f:\n"
            "        found += ['posix'] * (MARKER in f.read())\n"
            "except OSError:\n"
            "    pass\n"
            "print(found)")


def processes_in(namespace):
    """The processes of this machine in the IPC namespace ``namespace`` (e.g. 'ipc:[4026...]')."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/ipc") == namespace:
                found.append(pid)
        except OSError:
            continue
    return found


def remove_segment(key):
    """Remove a segment a student left in this process's IPC namespace (without isolation)."""
    libc = ctypes.CDLL(None, use_errno=True)
    segment = libc.shmget(key, 0, 0)
    if segment >= 0:
        libc.shmctl(segment, 0, None)  # IPC_RMID
    try:
        os.remove("/dev/shm/left-behind")
    except OSError:
        pass


@root_only
def test_shared_memory_left_by_a_student_is_gone_for_the_next(pool):
    marker = os.urandom(16).hex().encode()
    try:
        made, namespace = printed(run(pool, leave_shared_memory(marker))).split()
        assert made == "True"
        assert printed(run(pool, find_shared_memory(marker))) == "[]\n"
        # Its namespace, and so its segment, ends with its process: nothing else is in it.
        deadline = time.monotonic() + 10
        while processes_in(namespace) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_in(namespace) == []
    finally:
        remove_segment(SHM_KEY)


@root_only
def test_shared_memory_counts_against_the_memory_limit(sandboxed):
    """SysV segments are outside the address-space limit: a student makes 1 GiB of them,
    attaching one 64 MiB segment at a time. The slot's memory cgroup stops it; the next
    cell and the next student run."""
    if "memory" not in sandbox.SlotCgroups(0).folders:
        pytest.skip("no cgroup v1 memory controller here")
    hoard = (LIBC + "made = []\n"
             "for i in range(16):\n"
             "    segment = libc.shmget(0, 64 << 20, IPC_CREAT | 0o600)\n"
             "    address = libc.shmat(segment, None, 0)\n"
             "    ctypes.memset(address, 1, 64 << 20)\n"
             "    libc.shmdt(address)\n"
             "    made.append(segment)\n"
             "print(len(made) * 64, 'MiB resident')")
    limits = Limits(timeout=30, memory_mb=256, scratch_mb=64)
    result = run(sandboxed, hoard, "print('after')", limits=limits)
    assert result.cells[0]["status"] == "crashed", result.cells[0]["outputs"]
    assert printed(result, 1) == "after\n"
    after = run(sandboxed, "blob = bytearray(200 << 20)\nprint(len(blob) >> 20)", limits=limits)
    assert printed(after) == "200\n"


# --- inherited descriptors -------------------------------------------------------------------------

def write_to_every_descriptor(marker):
    """Student A: lists its descriptors and appends ``marker`` to each that is a file."""
    return ("import os, stat\n"
            "seen = {}\n"
            "for fd in sorted(int(name) for name in os.listdir('/proc/self/fd')):\n"
            "    try:\n"
            "        seen[fd] = os.readlink(f'/proc/self/fd/{fd}')\n"
            "    except OSError:\n"
            "        continue  # the listing's own descriptor, closed by now\n"
            "    try:\n"
            "        if stat.S_ISREG(os.fstat(fd).st_mode):\n"
            "            os.lseek(fd, 0, os.SEEK_END)\n"
            f"            os.write(fd, {marker!r})\n"
            "    except OSError:\n"
            "        pass\n"
            "print(sorted(seen.values()))")


def read_every_descriptor(marker):
    """Student B: reads every file its descriptors lead to, looking for ``marker``."""
    return ("import os, stat\n"
            "found = []\n"
            "for fd in range(3, 1024):\n"
            "    try:\n"
            "        if stat.S_ISREG(os.fstat(fd).st_mode):\n"
            f"            found += [fd] * ({marker!r} in os.pread(fd, 1 << 24, 0))\n"
            "    except OSError:\n"
            "        pass\n"
            "print(found)")


def test_a_child_holds_no_descriptor_but_its_channel(sandboxed):
    listing = eval(printed(run(sandboxed, write_to_every_descriptor(b"marker"))))
    sockets = [target for target in listing if target.startswith("socket:")]
    assert len(sockets) == 1 and listing == sorted(["/dev/null"] * 3 + sockets), listing


def test_what_a_student_writes_to_its_descriptors_does_not_reach_the_next(sandboxed):
    marker = b"fd-marker-" + os.urandom(8).hex().encode()
    assert run(sandboxed, write_to_every_descriptor(marker)).cells[0]["status"] == "ok"
    assert printed(run(sandboxed, read_every_descriptor(marker))) == "[]\n"


def test_torch_numpy_and_matplotlib_work_without_the_warm_processs_descriptors(sandboxed):
    result = run(sandboxed, "import torch, numpy, matplotlib.pyplot as plt\n"
                            "x = torch.nn.Linear(3, 2)(torch.ones(1, 3)).sum()\n"
                            "x.backward()\n"
                            "plt.plot(numpy.arange(3))\nplt.show()\n"
                            "print(float(numpy.ones(4).sum()))")
    assert printed(result) == "4.0\n"
    assert any(o["output_type"] == "display_data" for o in result.cells[0]["outputs"])


# --- the scratch folder ----------------------------------------------------------------------------

FILL_FOLDER = """
import errno, os
def fill(make, count):
    made = 0
    try:
        for i in range(count):
            make(f'junk{i}')
            made += 1
    except OSError as exc:
        return made, errno.errorcode[exc.errno]
    return made, 'unbounded'
def small(name):
    open(name, 'w').close()
def big(name):
    with open(name, 'wb') as f:
        f.write(bytes(1 << 20))
files = fill(small, 2000)
for name in os.listdir('.'):
    if name.startswith('junk'):
        os.remove(name)
mebibytes = fill(big, 64)
print(*files, *mebibytes)
"""


@root_only
def test_a_student_filling_its_folder_is_stopped_and_the_next_starts_empty(pool):
    limits = Limits(timeout=30, memory_mb=512, scratch_mb=8, scratch_files=100)
    files, small_error, mebibytes, big_error = printed(run(pool, FILL_FOLDER, limits=limits)).split()
    assert small_error == big_error == "ENOSPC"
    assert int(files) <= limits.scratch_files and int(mebibytes) <= limits.scratch_mb
    after = run(pool, "import os\nprint(sorted(os.listdir('.')))\n"
                "with open('mine', 'wb') as f:\n    f.write(bytes(4 << 20))\nprint(os.path.getsize('mine') >> 20)",
                limits=limits, files={"helper.py": "X = 1\n"})
    assert printed(after) == "['helper.py']\n4\n"


# --- processor time --------------------------------------------------------------------------------

# Both measure the processor time they get, per second, over the same two seconds.
SPINNERS = """
import os, signal, time
def cpu_seconds(pids):
    total = 0
    for pid in pids:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf('SC_CLK_TCK')
spinners = []
for _ in range(16):
    pid = os.fork()
    if pid == 0:
        try:
            while True:
                pass
        finally:
            os._exit(0)
    spinners.append(pid)
time.sleep(0.5)
cpu, wall = cpu_seconds(spinners), time.monotonic()
time.sleep(2)
share = (cpu_seconds(spinners) - cpu) / (time.monotonic() - wall)
for pid in spinners:
    os.kill(pid, signal.SIGKILL)
print(round(share, 2))
"""
SPINNING_ALONE = """
import time
time.sleep(0.5)
cpu, wall = time.process_time(), time.monotonic()
while time.monotonic() - wall < 2:
    pass
print(round((time.process_time() - cpu) / (time.monotonic() - wall), 2))
"""


@root_only
def test_busy_children_do_not_starve_a_student_graded_alongside():
    """Sixteen busy processes of one student, on one lane, get together no more processor
    time than the cpus limit, and no more than a few times what one busy process of a
    student on the other lane gets (all of a worker's processes would otherwise share one
    scheduling group: the one would get a seventeenth)."""
    if "cpu" not in sandbox.SlotCgroups(0).folders:
        pytest.skip("no cgroup v1 cpu controller here")
    limits = Limits(timeout=10, memory_mb=512, cpus=0.5)
    lanes = WarmLanes(2, hidden=[ROOT])
    pools = [WarmPool(hidden=[ROOT], lanes=[lane]) for lane in lanes.lanes]
    try:
        for pool in pools:
            printed(run(pool, "print('warm')"))
        hog, alone = [pool.submit([cell], {}, limits) for pool, cell in zip(pools, (SPINNERS, SPINNING_ALONE))]
        hog, alone = float(printed(hog.result(timeout=300))), float(printed(alone.result(timeout=300)))
    finally:
        for pool in pools:
            pool.close()
        lanes.close()
    assert hog <= limits.cpus * 1.25, hog  # the quota holds per 100 ms period, to a tick
    assert hog <= 3 * alone, (hog, alone)


def test_a_process_spinning_in_c_is_stopped_by_its_processor_time_budget():
    """The budget (RLIMIT_CPU) holds where no cgroup does: a key derivation in C, which no
    interrupt stops, is killed once it has used the time its cells could take."""
    slot, claim = sandbox.claim_slot()
    workdir = tempfile.mkdtemp(prefix="spin-")
    limits = Limits(timeout=0.5)
    pid = os.fork()
    if pid == 0:
        try:
            sandbox.confine_child(limits, slot, workdir, channel=2, cells=1)  # stderr: no channel to keep
            hashlib.pbkdf2_hmac("sha256", b"spin", b"salt", 10**9)  # minutes
        finally:
            os._exit(0)
    try:
        status = wait_at_most(pid, 30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        claim.close()
    assert status is not None, "the spinning process was not stopped"
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL), status


def wait_at_most(pid, seconds):
    """The wait status of ``pid``, or None if it had to be killed after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


# --- the temporary folder --------------------------------------------------------------------------

def unusual_tmpdirs():
    name = "ag-" + os.urandom(4).hex()
    return {"two levels below /tmp": Path("/tmp") / name / "b",
            "in the home directory": Path.home() / name / "tmp"}


@pytest.mark.parametrize("where", unusual_tmpdirs().items(), ids=lambda item: item[0])
def test_grading_works_wherever_the_temporary_folder_is(where, tmp_path_factory, monkeypatch):
    _, tmpdir = where
    base, course = tmp_path_factory.mktemp("tmpdir"), kit.course_copy(tmp_path_factory)
    kit.write(kit.submission(), base / "submissions" / "correct.ipynb")
    tmpdir.mkdir(parents=True)
    try:
        monkeypatch.setenv("TMPDIR", str(tmpdir))
        monkeypatch.setattr(tempfile, "tempdir", None)
        graded = kit.run(base / "submissions", base / "out", course)
    finally:
        shutil.rmtree(tmpdir.parent, ignore_errors=True)
    assert kit.points(graded.rows["correct"]) == kit.auto_points_if(set(TESTS.values())), graded.notes("correct")


LISTENER = """
import socket, time
server = socket.socket(socket.AF_UNIX)
server.bind("\\0autograder-meeting-point")
server.listen()
server.settimeout(4)
try:
    server.accept()
    print("MET")
except OSError as exc:
    print("alone", type(exc).__name__)
"""
CALLER = """
import socket, time
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    try:
        socket.socket(socket.AF_UNIX).connect("\\0autograder-meeting-point")
        print("REACHED")
        break
    except OSError:
        time.sleep(0.05)
else:
    print("unreachable")
"""


@root_only
def test_students_graded_at_the_same_time_cannot_reach_each_other():
    """Two lanes grade at once; one student listens on an abstract socket, the other tries to
    reach it (a channel that no file-system mask closes)."""
    lanes = WarmLanes(2, hidden=[ROOT])
    pools = [WarmPool(hidden=[ROOT], lanes=[lane]) for lane in lanes.lanes]
    try:
        for pool in pools:
            printed(run(pool, "print('warm')"))
        limits = Limits(timeout=10, memory_mb=512)
        listening, calling = [pool.submit([cell], {}, limits) for pool, cell in zip(pools, (LISTENER, CALLER))]
        heard, said = printed(listening.result(timeout=60)), printed(calling.result(timeout=60))
    finally:
        for pool in pools:
            pool.close()
        lanes.close()
    assert said.strip() == "unreachable" and heard.startswith("alone"), (said, heard)


# --- a database server's socket ----------------------------------------------------------------

@root_only
def test_a_database_servers_unix_socket_is_out_of_reach():
    """The network namespace stops TCP; a server's Unix socket (here a stand-in, where the
    gradebook's URL says the server listens) must be hidden too."""
    if not sandbox.bwrap_available():
        pytest.skip("bubblewrap is not installed")
    folder = tempfile.mkdtemp(dir="/run", prefix="db-socket-")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, ".s.PGSQL.5432")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(path)
        os.chmod(path, 0o777)  # as PostgreSQL leaves its socket: anyone may connect
        server.listen()
        url = f"postgresql+psycopg://grader@/gradebook?host={folder}"
        pool = WarmPool(1, hidden=sandbox.hidden_folders(url, [ROOT]), use_sandbox=True)
        try:
            said = printed(run(pool, "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n"
                                     f"    s.connect({path!r})\n    print('connected')\n"
                                     "except OSError as e:\n    print('refused', type(e).__name__)"))
        finally:
            pool.close()
        assert said.startswith("refused"), said
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


# --- the rest of the machine ------------------------------------------------------------------

@root_only
@pytest.mark.parametrize("parent", ["/var/lib", "/opt", "/home"])
def test_another_copy_of_the_course_elsewhere_on_the_machine_is_out_of_sight(sandboxed, parent):
    """An earlier term's course folder, a backup or another checkout, readable by anyone:
    the sandbox shows only the system's programs and libraries and the Python
    installation, not whatever lies outside the folders it knows to hide."""
    if not os.path.isdir(parent):
        pytest.skip(f"{parent} does not exist here")
    copy = tempfile.mkdtemp(dir=parent, prefix="course-copy-")
    try:
        os.chmod(copy, 0o755)
        master = Path(copy, "source", "param_access", "param_access.ipynb")
        master.parent.mkdir(parents=True)
        master.parent.parent.chmod(0o755)
        master.parent.chmod(0o755)
        master.write_text("the master's solution")
        master.chmod(0o644)
        said = printed(run(sandboxed, f"try:\n    print(open({str(master)!r}).read())\n"
                                      "except OSError as e:\n    print('unreadable', type(e).__name__)"))
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    assert said.startswith("unreadable"), said


# --- the kernel's key store ----------------------------------------------------------------------

KEYS = """
import ctypes, platform
libc = ctypes.CDLL(None, use_errno=True)
ADD_KEY, KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}[platform.machine()]
RINGS = {"session": -3, "user": -4, "user session": -5}
def keys_in(ring):  # KEYCTL_READ of a keyring: the serial numbers of its keys, 4 bytes each
    buffer = ctypes.create_string_buffer(4096)
    size = libc.syscall(ctypes.c_long(KEYCTL), ctypes.c_long(11), ctypes.c_long(ring), buffer, ctypes.c_long(4096))
    return max(size, 0) // 4
"""


@root_only
def test_keys_a_student_stores_in_the_kernel_do_not_reach_the_next(sandboxed):
    """Every submission of a slot runs as its user, whose keyrings the kernel keeps after
    the user's processes are gone."""
    if platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip("the key store's system call numbers are known here for x86_64 and aarch64")
    stored = printed(run(sandboxed, KEYS + (
        "for name, ring in RINGS.items():\n"
        "    libc.syscall(ctypes.c_long(ADD_KEY), b'user', b'left-' + name.encode(), b'answers', ctypes.c_long(7),"
        " ctypes.c_long(ring))\n"
        "print({name: keys_in(ring) for name, ring in RINGS.items()})")))
    assert stored.strip() == "{'session': 1, 'user': 1, 'user session': 1}", stored  # the store works
    found = printed(run(sandboxed, KEYS + "print({name: keys_in(ring) for name, ring in RINGS.items()})"))
    assert found.strip() == "{'session': 0, 'user': 0, 'user session': 0}", found
