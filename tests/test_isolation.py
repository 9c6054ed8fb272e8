"""Submissions isolated from each other and bounded: attacks by one student that must
neither reach the next one nor take more than the limits give it.

Most run two submissions in sequence on one warm worker (as a grading run does); the
temporary-folder ones grade a whole batch."""
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from autograder import sandbox
from autograder.execution import WarmPool
from autograder.sandbox import Limits

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
from make_course import TESTS  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = Limits(timeout=5.0, memory_mb=512)


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


def run(pool, *cells, limits=FAST, files=None):
    return pool.submit(list(cells), files or {}, limits).result(timeout=300)


def text(cell):
    return "".join(o.get("text", "") for o in cell["outputs"] if o["output_type"] == "stream")


def printed(result, index=0):
    cell = result.cells[index]
    assert cell["status"] == "ok", cell["outputs"]
    return text(cell)


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
