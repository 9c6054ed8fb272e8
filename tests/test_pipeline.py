"""The grading core end to end: both executors agree, and a large batch grades cleanly."""
import importlib.util
import logging
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

from autograder.grading.course import Course
from autograder.grading.pipeline import ensure_assignment, grade_notebooks

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("build_submissions", ROOT / "examples" / "build_submissions.py")
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)
ASSIGNMENT = "param_access"


def examples(*names):
    made = build.submissions(ASSIGNMENT)
    return [nbformat.reads(made[name], as_version=4) for name in names]


def test_fork_and_kernel_executors_give_identical_scores():
    notebooks = examples("ada_full.ipynb", "ben_partial.ipynb", "cy_blank.ipynb")
    forked = [r.scores for r in grade_notebooks(ASSIGNMENT, notebooks, executor="fork")]
    kernel = [r.scores for r in grade_notebooks(ASSIGNMENT, notebooks, executor="kernel")]
    assert forked == kernel
    assert len({tuple(sorted(s.items())) for s in forked}) == 3  # three different outcomes


def test_two_hundred_submissions_in_one_run_none_hangs_all_scored_right():
    full, partial = examples("ada_full.ipynb", "ben_partial.ipynb")
    alone = {name: grade_notebooks(ASSIGNMENT, [nb])[0].scores for name, nb in (("full", full), ("partial", partial))}
    batch = [full if i % 2 == 0 else partial for i in range(200)]
    results = grade_notebooks(ASSIGNMENT, batch)
    assert len(results) == 200
    for i, result in enumerate(results):
        assert result.scores == alone["full" if i % 2 == 0 else "partial"], i


def test_nbgrader_still_adds_back_a_test_cell_deleted_from_the_notebook_it_grades():
    """Intake restores deleted test cells; without it (a notebook graded as is), nbgrader's
    OverwriteCells adds them back, also in the version that first checks whether any is
    missing (OverwriteCellsIfMissing)."""
    full, = examples("ada_full.ipynb")
    deleted = nbformat.from_dict(full)
    deleted.cells = [c for c in full.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_count_params"]
    with_it, without_it = grade_notebooks(ASSIGNMENT, [full, deleted])
    assert without_it.scores == with_it.scores and without_it.scores["test_count_params"] == 2.0
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in without_it.notebook.cells]
    assert "test_count_params" in ids


def test_recording_the_master_keeps_nbgraders_chatter_out_of_the_run_log(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    course = Course(work=tmp_path)
    ensure_assignment(course, ASSIGNMENT)
    with Gradebook(course.db_url) as gb:
        assert [n.name for n in gb.find_assignment(ASSIGNMENT).notebooks] == [ASSIGNMENT]
    assert [r.getMessage() for r in caplog.records if r.name == "traitlets"] == []


def test_an_output_nested_too_deeply_costs_only_itself(tmp_path):
    """A displayed value nested 900 deep cannot become a notebook node (recursion): it is
    replaced by a line saying so, and the submission keeps every point it earns."""
    import sys
    sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
    import grading_kit as kit
    from make_course import COURSE, CORRECT
    deep = ("from IPython.display import display\nd = x = {}\nfor _ in range(900):\n    x['k'] = {}\n    x = x['k']\n"
            "display({'application/json': d, 'text/plain': 'deep'}, raw=True)\n")
    nb = kit.submission({"count_params": deep + CORRECT["count_params"]})
    result = grade_notebooks("demo", [nb], course=Course(root=COURSE, work=tmp_path))[0]
    assert result.scores == result.max_scores
    shown = "".join(o.get("text", "") for o in kit.cell(result.notebook, "count_params").outputs)
    assert "nested too deeply" in shown


class _Worker:
    """What _collect asks of a grading process."""

    def __init__(self, pid):
        self.pid, self.alive = pid, True

    def is_alive(self):
        return self.alive


def test_a_grading_process_that_dies_costs_only_the_student_it_was_grading():
    """One process dies mid-student while another, alive, has nothing left to do: the batch
    still ends, that student failed, every other graded."""
    import queue
    import threading

    from autograder.grading.pipeline import _collect
    dying, living = _Worker(101), _Worker(102)
    done = queue.Queue()
    graded = {"success": True, "error": None, "seconds": 0.1}
    for message in [("s1", {"started": 101}), ("s2", {"started": 102}), ("s2", graded),
                    ("s3", {"started": 102}), ("s3", graded)]:
        done.put(message)
    dying.alive = False  # killed while it graded s1
    seen, finished = [], {}
    collecting = threading.Thread(target=lambda: finished.update(
        _collect(done, ["s1", "s2", "s3"], lambda student, result: seen.append(student), [dying, living])))
    collecting.start()
    collecting.join(timeout=30)
    assert not collecting.is_alive(), "the batch waited for ever on the dead process's student"
    assert finished["s1"] == {"success": False, "error": "the grading process died"}
    assert finished["s2"] == finished["s3"] == graded
    assert seen == ["s2", "s3", "s1"]  # the dead one reported too: the dealer deals on
