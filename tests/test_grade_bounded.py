"""Every grading job is bounded, end to end: students who attack the executor's clock,
its memory or the work it does outside their process are graded in ONE ``grade`` run
next to a correct bystander, and the run ends with a row for every student.

Each attacker gives correct answers. The cell that attacks is stopped, so the question it
answers earns nothing; the others earn what they are worth.
"""
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
from make_course import CORRECT, TESTS  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")

from test_execution_bounds import CHANNEL  # noqa: E402 (the sockets an attacking cell finds)

TIMEOUT = 3.0
BATCH_BUDGET = 120  # seconds the whole run may take, start-up included: proof that it ended

# Says the cell it runs in starts now, every 2 s: were deadlines the child's to set,
# each message would push back that cell's deadline, and the run would never end.
RESET = CHANNEL + """
streams = [s.makefile('wb') for s in socks]
while True:
    for stream in streams:
        write_message(stream, {{'start': {index}}})
    time.sleep(2)
"""
# One message of 256 MiB (a valid one: a start), for the executor, which has no limits,
# to hold in its memory.
FLOOD = CHANNEL + """
pad = 256 * 2**20
head, tail = b'{{"start": {index}, "pad": "', b'"}}'
chunk = b'x' * 2**20
for s in socks:
    s.sendall(struct.pack('>I', len(head) + pad + len(tail)) + head)
    for _ in range(pad // len(chunk)):
        s.sendall(chunk)
    s.sendall(tail)
"""
# 64 KB of shell escapes: IPython's input transforms take a minute on it, which must not
# be spent outside the student's process, where there is no time limit.
ECHO = "\n" + "!echo\n" * (64 * 1024 // 6)


def code_index(grade_id):
    """Where the cell is among the notebook's code cells (the executor's cell numbers)."""
    nb = kit.release_notebook()
    return [c for c in nb.cells if c.cell_type == "code"].index(kit.cell(nb, grade_id))


# pygments' Scala lexer backtracks for hours on an unterminated string of backslashes, and a
# notebook's metadata names the lexer of its feedback page.
BACKSLASHES = '\n# "' + "\\" * 60


def highlighter():
    nb = kit.submission({"make_layer": CORRECT["make_layer"] + BACKSLASHES})
    nb.metadata["language_info"] = {"name": "scala", "pygments_lexer": "scala"}
    return nb


def students():
    attack_cell = code_index("freeze")
    return {
        "highlighter": highlighter(),
        "by_full": kit.submission(),
        "resetter": kit.submission({"freeze": CORRECT["freeze"] + RESET.format(index=attack_cell)}),
        "flooder": kit.submission({"freeze": CORRECT["freeze"] + FLOOD.format(index=attack_cell)}),
        "echoer": kit.submission({name: CORRECT[name] + ECHO for name in ("make_layer", "count_params", "tie")}),
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("bounded")
    for name, nb in students().items():
        kit.write(nb, base / "submissions" / f"{name}.ipynb")
    return kit.run(base / "submissions", base / "out", kit.course_copy(tmp_path_factory), timeout=TIMEOUT,
                   memory_mb=1024, deadline=BATCH_BUDGET)


def test_the_batch_ends_with_a_row_for_every_student(graded):
    assert set(graded.rows) == set(graded.csv) == set(students())
    for student in graded.rows:
        assert graded.feedback_path(student).exists()


def test_the_bystander_scores_full(graded):
    assert kit.points(graded.rows["by_full"]) == kit.auto_points_if(set(TESTS.values()))


@pytest.mark.parametrize("student", ["resetter", "flooder"])
def test_writing_on_the_executors_channel_stops_only_the_attacking_cell(graded, student):
    assert kit.points(graded.rows[student]) == kit.auto_points_if({"test_make_layer", "test_count_params",
                                                                   "test_tie"})
    assert "broke the grader's protocol" in graded.notes(student)


def test_cells_that_are_slow_to_transform_time_out_in_the_students_process(graded):
    assert kit.points(graded.rows["echoer"]) == kit.auto_points_if({"test_freeze"})
    assert "make_layer: timeout" in graded.notes("echoer")


def test_a_notebook_naming_a_backtracking_lexer_gets_its_page_and_leaves_the_others_theirs(graded):
    assert kit.points(graded.rows["highlighter"]) == kit.auto_points_if(set(TESTS.values()))
    for student in ("highlighter", "by_full"):
        assert "could not be" not in graded.feedback_path(student).read_text()


def test_highlighting_gives_way_to_the_plain_code_when_a_lexer_backtracks():
    """In a process of its own, as in a grading process (signals reach its main thread)."""
    script = ("from autograder.nbgrader_ext.feedback import CachedHighlight\n"
              f"print(CachedHighlight(pygments_lexer='scala')({BACKSLASHES!r}))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=BATCH_BUDGET,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('<div class="highlight"><pre>\n# &quot;\\\\'), done.stdout[:200]


def test_a_markdown_cell_of_brackets_costs_its_page_no_minutes():
    """nbconvert's strip_files_prefix is quadratic in a run of "[": the page's filter of that
    name must not be (without the bound this takes an hour)."""
    script = ("from autograder.nbgrader_ext.feedback import FeedbackHTMLExporter\n"
              "strip = FeedbackHTMLExporter().environment.filters['strip_files_prefix']\n"
              "text = 'files/ ' + '[' * 400000 + 'x' + '](' * 200000\n"
              "print(strip(text) == text, strip('[a](files/b.png)'))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=BATCH_BUDGET,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "[a](b.png)"], done.stdout
