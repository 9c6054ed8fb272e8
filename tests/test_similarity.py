"""similarity.html: copied answers are listed side by side, renamed or not; what the release
gave, stubs left as given and what many students write on their own are not."""
import subprocess
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import grading_kit as kit  # noqa: E402
from autograder.outputs import similarity  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COUNT = ("def count_params(model):\n"
         "    total = 0\n"
         "    for param in model.parameters():\n"
         "        if param.requires_grad:\n"
         "            total += param.numel()\n"
         "    return total")
COUNT_RENAMED = ("def count_params(model):\n"
                 "    n = 0  # my own loop\n"
                 "    for w in model.parameters():\n"
                 "        if w.requires_grad:\n"
                 "            n += w.numel()\n"
                 "    return n")
# The same function, written independently.
COUNT_OTHER = ("def count_params(model):\n"
               "    sizes = [p.numel() for p in model.parameters()]\n"
               "    return sum(sizes)")
COUNT_ONE_LINE = "def count_params(model):\n    return sum(p.numel() for p in model.parameters())"
EXPLANATION = "Each Parameter object is yielded once by parameters(), however many modules share it."


def pairs(notebooks, release=None, **options):
    return {(m.question, m.students): m for m in similarity.find(notebooks, release or kit.release_notebook(),
                                                                 **options)}


def test_a_copy_with_renamed_variables_is_listed_and_an_independent_answer_is_not():
    found = pairs({"ada": kit.submission({"count_params": COUNT}, explanation="One object, counted once."),
                   "ben": kit.submission({"count_params": COUNT_RENAMED}, explanation="Sharing makes one tensor."),
                   "cy": kit.submission({"count_params": COUNT_OTHER}, explanation="Parameters are deduplicated."),
                   # the obvious one-liner, twice: too short to tell copying from coincidence
                   "dan": kit.submission({"count_params": COUNT_ONE_LINE}, explanation="No copies are made."),
                   "eve": kit.submission({"count_params": COUNT_ONE_LINE}, explanation="It is one object.")})
    assert set(found) == {("count_params", ("ada", "ben"))}, found.keys()
    assert found["count_params", ("ada", "ben")].similarity == 1.0


def test_a_written_answer_copied_in_other_case_and_spacing_is_listed():
    found = pairs({"ada": kit.submission(explanation=EXPLANATION),
                   "ben": kit.submission(explanation="  " + EXPLANATION.lower().replace(" ", "\n"))})
    assert ("explain", ("ada", "ben")) in found


def test_stubs_and_the_code_the_release_gave_are_no_match():
    """Two blank notebooks share the release's class templates and stubs, and nothing else."""
    release = nbformat.read(ROOT / "release" / "save_and_freeze" / "save_and_freeze.ipynb", as_version=4)
    assert pairs({"ada": release, "ben": release}, release) == {}
    assert similarity.answers(release, release) == {c.metadata.nbgrader["grade_id"]: "" for c in release.cells
                                                    if c.metadata.get("nbgrader", {}).get("solution")}


def test_what_more_students_wrote_than_max_shared_is_no_sign_of_copying():
    same = {f"s{i}": kit.submission({"count_params": COUNT}, explanation=f"Answer {i}.") for i in range(4)}
    assert len(pairs(same, max_shared=4)) == 6
    assert pairs(same, max_shared=3) == {}


def test_only_pairs_sharing_a_fingerprint_are_compared(monkeypatch):
    """The inverted index finds the candidates: 40 different answers need no comparison."""
    compared = []
    real = similarity.compare_files
    monkeypatch.setattr(similarity, "compare_files", lambda a, b: compared.append(1) or real(a, b))
    distinct = {f"s{i}": kit.submission({"count_params": "    return " + " + ".join(str(i * 1000 + j) for j in range(8))},
                                        explanation=f"Answer {i}.") for i in range(40)}
    assert pairs(distinct) == {} and compared == []


def test_a_huge_answer_is_read_only_so_far():
    nb = kit.submission({"count_params": COUNT + "\n" + "    x = 1\n" * 2_000_000})
    assert len(similarity.answers(nb, kit.release_notebook())["count_params"]) <= similarity.MAX_ANSWER_CHARS


def test_student_code_is_escaped_in_the_report(tmp_path):
    attack = COUNT.replace("total = 0", "total = 0  # </pre><script>alert(1)</script><pre>")
    page = tmp_path / "similarity.html"
    similarity.write(page, {"ada<b>": kit.submission({"count_params": attack}),
                            "ben": kit.submission({"count_params": attack})}, kit.release_notebook(), "demo")
    text = page.read_text()
    assert "<script" not in text and "<b>" not in text
    assert "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in text and "ada&lt;b&gt;" in text


def test_a_grading_run_writes_the_report_and_links_it(tmp_path, tmp_path_factory):
    subs = tmp_path / "subs"
    for student, answer in {"ada": COUNT, "ben": COUNT_RENAMED, "cy": COUNT_OTHER}.items():
        kit.write(kit.submission({"count_params": answer}, explanation=f"{student} wrote this."),
                  subs / f"{student}.ipynb")
    graded = kit.run(subs, tmp_path / "out", kit.course_copy(tmp_path_factory), jobs=1)
    assert "href='similarity.html'" in (graded.out / "report.html").read_text()
    page = kit.visible_text((graded.out / "similarity.html").read_text())
    assert "count_params: ada and ben, 100%" in page and "cy " not in page


def test_copydetect_comes_without_matplotlib_and_leaves_it_importable():
    """copydetect's pyplot import is stood in for while it loads; a real import works after."""
    probe = ("import sys\n"
             "from autograder.outputs import similarity\n"
             "assert 'matplotlib' not in sys.modules and 'matplotlib.pyplot' not in sys.modules\n"
             "import matplotlib.pyplot as plt\n"
             "print(plt.Figure.__name__)\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Figure"


def test_the_similarity_report_yields_the_processor_to_grading(monkeypatch, tmp_path):
    """It is written in a thread of its own at the lowest priority, while the grading
    processes work; the run's own thread keeps its priority."""
    import os
    import threading

    from autograder.grading import grade
    before = os.getpriority(os.PRIO_PROCESS, 0)  # 0: the calling thread, on Linux
    seen = []
    monkeypatch.setattr(similarity, "write",
                        lambda *args: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
    grade._similarity_report(tmp_path, [], None, "a1", 0.5).result(timeout=30)
    assert seen == [grade.SIMILARITY_NICENESS] and grade.SIMILARITY_NICENESS > before
    assert os.getpriority(os.PRIO_PROCESS, 0) == before
