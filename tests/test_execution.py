"""The warm executor: limits, recovery, sandbox and isolation between submissions."""
import os
import socket

import pytest

from autograder.scoring import nbcheck
from autograder.execution import sandbox
from autograder.execution import WarmLanes, WarmPool
from autograder.execution.sandbox import Limits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = Limits(timeout=2.0, memory_mb=512)


@pytest.fixture(scope="module")
def pool():
    if os.environ.get("REQUIRE_SANDBOX") and not sandbox.bwrap_available():
        pytest.fail("REQUIRE_SANDBOX is set but bubblewrap (bwrap) is not installed")
    pool = WarmPool(1, hidden=[ROOT])
    yield pool
    pool.close()


def run(pool, *cells, files=None, limits=FAST, shared=(), tests=()):
    return pool.submit(list(cells), files or {}, limits, shared, tests).result(timeout=120)


def text(cell):
    return "".join(o.get("text", "") for o in cell["outputs"] if o["output_type"] == "stream")


def test_outputs_and_results_are_captured(pool):
    result = run(pool, "print('hello')\n6 * 7")
    cell = result.cells[0]
    assert cell["status"] == "ok"
    assert text(cell) == "hello\n"
    assert cell["outputs"][-1]["data"]["text/plain"] == "42"


def test_code_starts_from_a_kernels_namespace(pool):
    """The warm-up imports torch in the shell; a student who forgot to is not spared the error."""
    result = run(pool, "torch.zeros(1)", "sorted(k for k in globals() if not k.startswith('_'))")
    assert result.cells[0]["status"] == "error"
    assert result.cells[0]["outputs"][-1]["ename"] == "NameError"
    names = eval(result.cells[1]["outputs"][-1]["data"]["text/plain"])
    assert names == ["In", "Out", "exit", "get_ipython", "open", "quit"]


def test_ipython_syntax_and_a_students_own_input_transformer(pool):
    """The instructor's cells are transformed ahead in the lane; IPython syntax still works,
    and a transformer the student adds still applies to them."""
    cell = "a = ONE\n%time b = 2\nprint(a, b)"
    first = run(pool, "ONE = 'one'", cell, shared=[1])
    assert "Wall time" in text(first.cells[1]) and text(first.cells[1]).endswith("one 2\n")
    second = run(pool, "get_ipython().input_transformers_post.append(\n"
                       "    lambda lines: [line.replace('ONE', '1') for line in lines])", cell, shared=[1])
    assert second.cells[1]["status"] == "ok", second.cells[1]["outputs"]
    assert text(second.cells[1]).endswith("1 2\n")


def test_top_level_await_and_a_student_turning_it_off(pool):
    """Whether a cell awaits at top level is worked out in the lane: such a cell still runs,
    and is still an error once the student turns autoawait off."""
    cell = "import asyncio\nawait asyncio.sleep(0)\nprint('awaited')"
    assert text(run(pool, cell, shared=[0]).cells[0]) == "awaited\n"
    off = run(pool, "%autoawait off", cell, shared=[1])
    assert off.cells[1]["status"] == "error", off.cells[1]["outputs"]


def test_a_cell_that_breaks_the_compiler_fails_alone(pool):
    """Python's compiler gives up on this cell (recursion): the lane, which works on cells
    ahead, leaves it to the child, where it fails; the other cells still run (they failed
    with it when the lane raised)."""
    deep = "x = " + "1 + " * 3000 + "1\nprint(x)"
    result = run(pool, "y = 1", deep, "print('after', y)", shared=[1])
    assert [c["status"] for c in result.cells[::2]] == ["ok", "ok"], result.notes
    assert result.cells[1]["status"] in ("error", "crashed")
    assert "RecursionError" in str(result.cells[1]["outputs"])
    assert text(result.cells[2]) == "after 1\n"


def compiled_ahead(source):
    """A cell that prints whether ``source`` is among the cells its process got compiled ahead."""
    return f"print(any(key[0].rstrip() == {source.rstrip()!r} for key in get_ipython().compile.trees))"


def test_the_instructors_cells_compiled_ahead_run_as_they_would_have(pool):
    """Cells marked as the instructor's are compiled once, in the zygote: their results,
    tracebacks and __future__ imports are those of cells compiled in the child."""
    token = os.urandom(6).hex()
    cells = [f"from __future__ import annotations\ndef f(x: Missing):\n    return x + 1  # {token}\nf(41)",
             "def g(x: AlsoMissing):\n    pass\nprint(g.__annotations__)",
             "def h():\n    raise ValueError('boom')\nh()"]
    plain, learned = (run(pool, *cells, compiled_ahead(cells[0]), shared=shared) for shared in ([], [0, 2]))
    assert text(learned.cells[3]) == "True\n" and text(plain.cells[3]) == "False\n"
    assert learned.cells[:3] == [dict(c, seconds=l["seconds"]) for c, l in zip(plain.cells[:3], learned.cells)]
    assert learned.cells[0]["outputs"][0]["data"]["text/plain"] == "42"
    assert text(learned.cells[1]) == "{'x': 'AlsoMissing'}\n"  # the shell keeps the import, as IPython does
    assert "raise ValueError('boom')" in "".join(learned.cells[2]["outputs"][0]["traceback"])
    # The zygote learned the import in a cell of its own, not for every student after.
    later = run(pool, cells[1], shared=[0])
    assert later.cells[0]["outputs"][-1]["ename"] == "NameError"


def test_an_instructors_cell_that_does_not_compile_fails_as_it_would_have(pool):
    """It parses, but its second statement does not compile: the zygote keeps nothing of it."""
    token = os.urandom(4).hex()
    broken = f"x = {token!r}\nreturn x"
    kept = f"print(any({token!r} in code.co_consts for code in get_ipython().compile.codes.values()))"
    plain, learned = (run(pool, broken, "print('next')", compiled_ahead(broken), kept, shared=shared)
                      for shared in ([], [0]))
    for result in (plain, learned):
        assert result.cells[0]["outputs"][-1]["ename"] == "SyntaxError"
        assert [text(c) for c in result.cells[1:]] == ["next\n", "False\n", "False\n"]


def test_only_cells_marked_as_the_instructors_reach_the_zygote(pool):
    student = f"answer = {os.urandom(6).hex()!r}\nprint(len(answer))"
    assert text(run(pool, student).cells[0]) == "12\n"
    assert text(run(pool, compiled_ahead(student)).cells[0]) == "False\n"


def test_only_the_masters_unchanged_locked_cells_count_as_the_instructors():
    """What the grader marks for the zygote to learn: a locked or test cell whose checksum
    is still the master's (nbgrader's OverwriteCells writes it); not a test cell that
    differs from the master, nor an answer cell."""
    import nbformat
    from nbgrader import utils

    from autograder.nbgrader_ext import instructors_cells

    def cell(source, **flags):
        new = nbformat.v4.new_code_cell(source)
        new.metadata.nbgrader = {"grade_id": f"c{len(source)}", "grade": False, "solution": False,
                                 "locked": False, "schema_version": 3, **flags}
        new.metadata.nbgrader["checksum"] = utils.compute_checksum(new)
        return new

    test, locked, answer, forged = (cell("check(f(1))", grade=True, points=1), cell("import torch", locked=True),
                                    cell("def f(x):\n    return x", solution=True),
                                    cell("print('mine')", grade=True, points=1))
    forged.source = "print('my own code')"  # the checksum is the master's, the source is not
    unknown = cell("print('no such cell')", locked=True)
    del unknown.metadata.nbgrader["grade_id"]  # as OverwriteCells leaves a cell the master lacks
    assert instructors_cells([test, locked, answer, forged, unknown]) == [0, 1]


# Looks for a test cell's code where a cell's code is commonly found: the callers' lines
# (inspect), linecache, and IPython's record of the last cell run.
SEEK = """
import inspect, linecache
def cells_code():
    return [''.join(entry[2]) for name, entry in list(linecache.cache.items()) if name.startswith('<')]
FOUND = []
def answer():
    FOUND.extend(''.join(caller.code_context or []) for caller in inspect.stack())
    FOUND.extend(cells_code())
    return 42
"""
SEEK_AFTER = ("last = get_ipython().last_execution_result\n"
              "FOUND.extend(cells_code() + [last.info.raw_cell if last is not None else ''])\n"
              "print(sorted({token for token in TOKENS if any(token in text for text in FOUND)}))")


@pytest.mark.parametrize("shared", [[], [1]], ids=["compiled in the child", "compiled ahead"])
def test_a_test_cells_code_is_not_where_the_students_code_looks(pool, shared):
    """While a test cell runs, the student's function it calls finds its code neither among
    its callers' lines nor in linecache; after, the next cell finds it nowhere either."""
    tokens = [f"hidden_{os.urandom(4).hex()}" for _ in range(2)]
    test = f"{tokens[0]} = 1\nanswer()  # {tokens[1]}"
    halves = [(token[:8], token[8:]) for token in tokens]  # the probe's own code must not hold them
    cells = [SEEK + f"TOKENS = [head + tail for head, tail in {halves!r}]", test, SEEK_AFTER]
    as_answer = run(pool, *cells, shared=shared)
    as_test = run(pool, *cells, shared=shared, tests=[1])
    assert text(as_answer.cells[2]) == f"{sorted(tokens)}\n"  # the probe finds an ordinary cell's code
    assert text(as_test.cells[2]) == "[]\n", as_test.cells


def test_an_errors_text_is_bounded(pool):
    """A huge exception message is shown cut, in the error and in each traceback entry."""
    result = run(pool, "raise ValueError('x' * 100_000)")
    error = result.cells[0]["outputs"][-1]
    assert error["evalue"] == "x" * nbcheck.ERROR_TEXT_LIMIT
    assert error["traceback"] and max(map(len, error["traceback"])) <= nbcheck.ERROR_TEXT_LIMIT


def test_infinite_loop_is_interrupted_and_later_cells_run(pool):
    result = run(pool, "x = 1", "while True:\n    pass", "print(x + 1)")
    assert [c["status"] for c in result.cells] == ["ok", "timeout", "ok"]
    assert text(result.cells[2]) == "2\n"


def test_a_loop_that_swallows_interrupts_is_killed_and_state_replayed(pool):
    stubborn = "while True:\n    try:\n        pass\n    except BaseException:\n        pass"
    result = run(pool, "x = 41", stubborn, "print(x + 1)")
    assert [c["status"] for c in result.cells] == ["ok", "timeout", "ok"]
    assert text(result.cells[2]) == "42\n"


@pytest.mark.parametrize("fatal", ["import os\nos._exit(3)", "import ctypes\nctypes.string_at(0)"])
def test_a_dead_process_is_replaced_and_grading_goes_on(pool, fatal):
    result = run(pool, "y = 'kept'", fatal, "print(y)")
    assert [c["status"] for c in result.cells] == ["ok", "crashed", "ok"]
    assert "died" in result.cells[1]["outputs"][0]["evalue"]
    assert text(result.cells[2]) == "kept\n"


def test_sys_exit_is_an_ordinary_error(pool):
    result = run(pool, "import sys\nsys.exit(1)", "print('after')")
    assert result.cells[0]["status"] == "error"
    assert text(result.cells[1]) == "after\n"


def test_memory_bomb_hits_the_limit_not_the_machine(pool):
    result = run(pool, "blob = bytearray(8 * 2**30)", "import torch\nt = torch.empty(2**33)", "print('alive')")
    assert [c["status"] for c in result.cells] == ["memory", "memory", "ok"]


def test_output_flood_is_capped(pool):
    result = run(pool, "for i in range(300000):\n    print(i)", limits=Limits(timeout=20))
    flood = text(result.cells[0])
    assert len(flood) < 100_000
    assert "more characters of output dropped" in flood


def test_course_files_are_hidden_and_the_network_is_closed(pool):
    if not sandbox.bwrap_available():
        pytest.skip("bubblewrap is not installed: no file-system sandbox to test")
    probe = ("import os\n"
             f"print(sorted(os.listdir({ROOT!r})))\n"
             f"print(os.path.exists({os.path.join(ROOT, 'source')!r}))")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=1).close()  # open to this process
        listener.accept()[0].close()
        listener.settimeout(0.5)
        net = ("import socket\n"
               f"client = socket.socket()\nclient.settimeout(1)\nclient.connect(('127.0.0.1', {port}))\n"
               "print('CONNECTED')")
        result = run(pool, probe, net)
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody came from the sandbox
    listing, exists = text(result.cells[0]).splitlines()
    assert "source" not in listing and exists == "False"
    assert result.cells[1]["status"] == "error" and "CONNECTED" not in text(result.cells[1])


def test_student_code_runs_as_an_unprivileged_user(pool):
    if os.geteuid() != 0:
        pytest.skip("the switch to a per-slot user needs the executor to start as root")
    result = run(pool, "import os\nprint(os.getuid())")
    assert int(text(result.cells[0])) >= sandbox.UNPRIVILEGED_UID_BASE


def test_nothing_carries_over_from_one_submission_to_the_next(pool):
    secret = "s3cr3t-" + os.urandom(8).hex()
    first = ("import builtins, os, tempfile\n"
             f"builtins.LEFTOVER = {secret!r}\n"
             f"open('note.txt', 'w').write({secret!r})\n"
             f"open(os.path.join(tempfile.gettempdir(), 'note.txt'), 'w').write({secret!r})")
    assert run(pool, first).cells[0]["status"] == "ok"
    second = ("import builtins, os, tempfile\n"
              "print(hasattr(builtins, 'LEFTOVER'), os.path.exists('note.txt'),\n"
              "      os.path.exists(os.path.join(tempfile.gettempdir(), 'note.txt')))")
    assert text(run(pool, second).cells[0]).split() == ["False", "False", "False"]


def memory_scan(needle):
    """A cell that prints whether ``needle`` is anywhere in its process's writable memory."""
    # Read every writable mapping of the child's own memory (ctypes: /proc/self/mem is
    # closed to a process that switched user), looking for HEAD followed by TAIL: the
    # scan never builds the whole secret itself.
    half = len(needle) // 2
    return (f"HEAD, TAIL = {needle[:half]!r}, {needle[half:]!r}\n"
            "import ctypes\nfound = False\n"
            "for line in open('/proc/self/maps').read().splitlines():\n"
            "    fields = line.split()\n"
            "    start, end = (int(x, 16) for x in fields[0].split('-'))\n"
            "    if not fields[1].startswith('rw') or end - start > 2**30:\n"
            "        continue\n"
            "    region = ctypes.string_at(start, end - start)\n"
            "    at = region.find(HEAD)\n"
            "    while at >= 0 and not found:\n"
            "        found = region[at + len(HEAD):at + len(HEAD) + len(TAIL)] == TAIL\n"
            "        at = region.find(HEAD, at + 1)\n"
            "print(found)")


def test_the_memory_scan_finds_a_secret_of_its_own_submission(pool):
    secret = "zz-" + os.urandom(12).hex()
    result = run(pool, f"answer = {secret!r}", memory_scan(secret.encode()), limits=Limits(timeout=60))
    assert text(result.cells[1]).strip() == "True"


def test_a_child_cannot_find_an_earlier_submissions_code_in_memory(pool):
    secret = "zz-" + os.urandom(12).hex()
    assert run(pool, f"answer = {secret!r}").cells[0]["status"] == "ok"
    result = run(pool, memory_scan(secret.encode()), limits=Limits(timeout=60))
    assert text(result.cells[0]).strip() == "False"


# --- lanes: one warm worker serving several grading processes ---------------------------------

SOCKETS_SEEN = ("import os, stat\n"
                "def is_socket(fd):\n"
                "    try:\n"
                "        return stat.S_ISSOCK(os.fstat(fd).st_mode)\n"
                "    except OSError:\n"
                "        return False\n"
                "print(sum(is_socket(fd) for fd in range(4096)))")


def test_lanes_run_concurrently_as_users_of_their_own_and_keep_the_channel_out_of_reach():
    lanes = WarmLanes(2, hidden=[ROOT])
    pools = [WarmPool(hidden=[ROOT], lanes=[lane]) for lane in lanes.lanes]
    try:
        futures = [pool.submit(["import os, time\ntime.sleep(1)\nprint(os.getuid())", SOCKETS_SEEN,
                                f"print(os.path.exists({os.path.join(ROOT, 'source')!r}))"], {}, FAST)
                   for pool in pools]
        results = [future.result(timeout=120) for future in futures]
    finally:
        for pool in pools:
            pool.close()
        lanes.close()
    uids = {text(result.cells[0]) for result in results}
    assert len(uids) == 2
    for result in results:
        assert text(result.cells[1]) == "1\n"  # its own results channel, not the lane's
        assert text(result.cells[2]) == "False\n"


def test_a_lane_that_dies_gives_way_to_a_worker_of_its_own():
    lanes = WarmLanes(1, hidden=[ROOT])
    pool = WarmPool(hidden=[ROOT], lanes=lanes.lanes)
    try:
        before = run(pool, "print(6 * 7)")
        lanes.proc.kill()
        lanes.proc.wait()
        after = run(pool, "print(6 * 8)")
    finally:
        pool.close()
        lanes.close()
    assert text(before.cells[0]) == "42\n"
    assert text(after.cells[0]) == "48\n"
