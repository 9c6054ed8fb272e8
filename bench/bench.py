"""Grading speed: stock ``nbgrader autograde`` against ``python -m autograder grade``.

    python bench/bench.py [--n 100] [--assignment param_access] [--timeout 5] [--jobs 0] [--repeat 3]
    python bench/bench.py --ours-only --n 50 200 400     # memory and throughput as N grows

Builds N submissions (mostly correct, some partly wrong from the catalog of wrong answers,
some broken, one infinite loop), grades them both ways in fresh course folders (ours
``--repeat`` times, once before stock and the rest after; the median run counts), fails
(exit 1) unless every per-question score is identical, and prints per-submission p50/p95
seconds (the infinite loop left out), submissions per minute, the peak memory of each
process tree (RSS summed over its processes, and PSS, which counts shared pages once) and
the speed-up. Stock nbgrader runs with its own configuration: one fresh kernel per
notebook, one notebook after the other; ours without partial credit, as stock grades.
"""
import argparse
import importlib.util
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from autograder.grading import pipeline  # noqa: E402
from autograder.grading.course import Course  # noqa: E402
_spec = importlib.util.spec_from_file_location("build_submissions", ROOT / "examples" / "build_submissions.py")
examples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(examples)
BIN = Path(sys.executable).parent  # nbgrader and alembic of this environment
BROKEN = [  # answer-cell sources a student might hand in that do not run
    "def {name}(*args):\n    return [1, 2\n",  # SyntaxError
    "{name} = undefined_helper()\n",  # NameError at import time of the cell
    "def {name}(*args):\n    raise RuntimeError('not finished')\n",
]


@dataclass
class Outcome:
    wall: float
    per_submission: dict  # {student: seconds}
    scores: dict  # {student: {grade_id: points}}
    peak_rss: int
    peak_pss: int


def build_mix(assignment, n, seed=0):
    """[(student, kind, notebook)]: ~60% correct, ~28% partly wrong, ~10% broken, one infinite loop."""
    rng = random.Random(seed)
    cases = [c for c in examples.CATALOG["case"] if c["assignment"] == assignment]
    answer_ids = [examples.meta(c)["grade_id"] for c in examples.filled(assignment).cells
                  if examples.meta(c).get("solution") and c.cell_type == "code"]
    mix = []
    for i in range(n):
        student = f"s{i:04d}"
        if i == n // 2:
            kind, nb = "loop", examples.filled(assignment, {rng.choice(answer_ids): "while True:\n    pass"})
        elif i % 10 == 3:
            gid = rng.choice(answer_ids)
            kind, nb = "broken", examples.filled(assignment, {gid: rng.choice(BROKEN).format(name=gid)})
        elif i % 10 in (1, 5, 8):
            replace = dict(rng.choice(cases)["replace"])
            if rng.random() < 0.4:  # a second mistake on another question
                other = rng.choice([c for c in cases if not set(c["replace"]) & set(replace)])
                replace.update(other["replace"])
            kind, nb = "partly wrong", examples.filled(assignment, replace)
        else:
            kind, nb = "correct", examples.filled(assignment)
        mix.append((student, kind, nb))
    return mix


class PeakMemory:
    """Samples the memory of a process and all its descendants until stopped.

    RSS every ``every`` seconds; PSS, one sample in ``pss_every``: the kernel walks the
    page table of each process to count it, about 8 ms for one with torch loaded. The
    sampling takes CPU from what it watches, which matters for ours (both cores busy),
    not for stock (one): at RSS every 0.2 s and PSS every 2 s it took 0.7 CPU-s of a
    30 CPU-s run of ours.
    """

    def __init__(self, pid, every=0.5, pss_every=10):
        self.root, self.every, self.pss_every = psutil.Process(pid), every, pss_every
        self.rss = self.pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        samples = 0
        while not self._stop.wait(self.every):
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            self.rss = max(self.rss, self._sum(procs, lambda p: p.memory_info().rss))
            if samples % self.pss_every == 0:
                self.pss = max(self.pss, self._sum(procs, lambda p: p.memory_full_info().pss))
            samples += 1

    @staticmethod
    def _sum(procs, read):
        total = 0
        for proc in procs:
            try:
                total += read(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def stop(self):
        self._stop.set()
        self._thread.join()


def tool_env():
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def timed_run(argv, cwd, log):
    """Run a command, watching its memory; (wall seconds, PeakMemory)."""
    with open(log, "w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=tool_env(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        memory = PeakMemory(proc.pid)
        code = proc.wait()
        wall = time.perf_counter() - started
        memory.stop()
    if code != 0:
        sys.exit(f"error: {' '.join(map(str, argv))} failed (exit {code}); see {log}")
    return wall, memory


def auto_scores(db, assignment):
    """{student: {grade_id: points}} of the autograded questions, read as the grader reads them."""
    grades = pipeline.gradebook_scores(Course(db_url=f"sqlite:///{db}"), assignment)
    return {student: {gid: grade.score for gid, grade in found.items() if grade.auto}
            for student, found in grades.items()}


def run_stock(folder, assignment, mix, timeout):
    """Stock nbgrader: its own configuration (kernel per notebook), our masters."""
    folder.mkdir(parents=True)
    shutil.copytree(ROOT / "source" / assignment, folder / "source" / assignment)
    (folder / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.CourseDirectory.course_id = 'bench'\n"
        f"c.Execute.timeout = {int(timeout)}\n")
    nbgrader = [str(BIN / "nbgrader")]
    subprocess.run(nbgrader + ["generate_assignment", assignment, "--log-level=ERROR"], cwd=folder, check=True,
                   env=tool_env(), stdin=subprocess.DEVNULL)
    for student, _, nb in mix:
        target = folder / "submitted" / student / assignment
        target.mkdir(parents=True)
        nbformat.write(nb, target / f"{assignment}.ipynb")
    wall, memory = timed_run(nbgrader + ["autograde", assignment, "--log-level=ERROR"], folder,
                             folder / "autograde.log")
    # Stock nbgrader grades one notebook after the other, in student order: the time of
    # each is the gap between its autograded file and the one before (the first one also
    # carries the application's start-up, so it is left out).
    finished = sorted((os.stat(folder / "autograded" / s / assignment / f"{assignment}.ipynb").st_mtime, s)
                      for s, _, _ in mix)
    per = {s: t - finished[i - 1][0] for i, (t, s) in enumerate(finished) if i > 0}
    return Outcome(wall, per, auto_scores(folder / "gradebook.db", assignment),
                   memory.rss, memory.pss)


def run_ours(folder, assignment, mix, timeout, jobs):
    submissions = folder / "submissions"
    submissions.mkdir(parents=True)
    for student, _, nb in mix:
        nbformat.write(nb, submissions / f"{student}.ipynb")
    work = folder / "work"
    argv = [sys.executable, "-m", "autograder", "grade", str(submissions), "--assignment", assignment,
            "--out", str(folder / "out"), "--work", str(work), "--timeout", str(timeout),
            "--jobs", str(jobs), "--force",
            # Stock nbgrader's tests are all or nothing: so are ours here, for the scores to compare.
            "--set", "JudgeChecks.partial_credit=False"]
    wall, memory = timed_run(argv, ROOT, folder / "grade.log")
    per = {}
    for student, _, _ in mix:
        state = work / "autograded" / student / assignment / ".autograder.json"
        per[student] = json.loads(state.read_text())["seconds"]
    return Outcome(wall, per, auto_scores(work / "gradebook.db", assignment),
                   memory.rss, memory.pss)


def percentiles(per, mix):
    """p50, p95 of per-submission seconds, the deliberate infinite loop left out."""
    kind = {student: kind for student, kind, _ in mix}
    values = sorted(v for s, v in per.items() if kind[s] != "loop")
    if len(values) < 2:
        return (values[0],) * 2 if values else (float("nan"),) * 2
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94]


def differences(stock, ours, students):
    found = []
    for student in students:
        expected, got = stock.scores.get(student, {}), ours.scores.get(student, {})
        if not expected or not got:
            found.append(f"{student}: no grades from {'stock' if not expected else 'ours'}")
            continue
        for gid in sorted(set(expected) | set(got)):
            if expected.get(gid) != got.get(gid):
                found.append(f"{student} {gid}: stock {expected.get(gid)}, ours {got.get(gid)}")
    return found


def report(label, outcome, mix):
    p50, p95 = percentiles(outcome.per_submission, mix)
    n = len(mix)
    return (f"{label:<28} {outcome.wall:9.1f} s  {p50:7.3f} s  {p95:7.3f} s  {n / outcome.wall * 60:9.0f}"
            f"  {outcome.peak_rss / 2**20:8.0f} MiB  {outcome.peak_pss / 2**20:8.0f} MiB")


HEADER = (f"{'':<28} {'wall':>11}  {'p50':>9}  {'p95':>9}  {'subs/min':>9}  {'peak RSS':>12}  {'peak PSS':>12}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100], help="submissions (several with --ours-only)")
    parser.add_argument("--assignment", default="param_access")
    parser.add_argument("--timeout", type=int, default=5, help="seconds per cell, both graders (default 5)")
    parser.add_argument("--jobs", type=int, default=0, help="our grading processes (default: one per core)")
    parser.add_argument("--ours-only", action="store_true", help="skip stock nbgrader: our figures for each N")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of ours against the one of stock; the median counts (default 3)")
    parser.add_argument("--keep", help="keep the course folders here (default: a temporary folder)")
    args = parser.parse_args(argv)
    base = Path(args.keep or tempfile.mkdtemp(prefix="autograder-bench-"))
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
          f"assignment {args.assignment}; timeout {args.timeout} s per cell")
    try:
        if args.ours_only:
            print(HEADER)
            for n in args.n:
                mix = build_mix(args.assignment, n)
                ours = run_ours(base / f"ours-{n}", args.assignment, mix, args.timeout, args.jobs)
                print(report(f"autograder grade, N={n}", ours, mix), flush=True)
            return 0
        if len(args.n) != 1:
            parser.error("give one --n when comparing with stock nbgrader")
        mix = build_mix(args.assignment, args.n[0])
        kinds = {k: sum(1 for _, kind, _ in mix if kind == k) for k in dict.fromkeys(m[1] for m in mix)}
        print("submissions: " + ", ".join(f"{v} {k}" for k, v in kinds.items()), flush=True)
        # Ours takes seconds, stock minutes: one run of ours is a snapshot of how busy this
        # machine (its host, for a virtual one) is at that moment. Runs of ours before and
        # after stock's, and their median, say more.
        runs = [run_ours(base / "ours-1", args.assignment, mix, args.timeout, args.jobs)]
        print(f"autograder grade done in {runs[0].wall:.1f} s; now stock nbgrader autograde ...", flush=True)
        stock = run_stock(base / "stock", args.assignment, mix, args.timeout)
        for run in range(2, args.repeat + 1):
            runs.append(run_ours(base / f"ours-{run}", args.assignment, mix, args.timeout, args.jobs))
        ours = sorted(runs, key=lambda r: r.wall)[(len(runs) - 1) // 2]
        print(HEADER)
        print(report("stock nbgrader autograde", stock, mix))
        print(report("python -m autograder grade", ours, mix) + (f"  (median of {len(runs)} runs)" if len(runs) > 1 else ""))
        students = [student for student, _, _ in mix]
        questions = sum(len(s) for s in stock.scores.values())
        for number, run in enumerate(runs, 1):
            wrong = differences(stock, run, students)
            if wrong:
                print(f"\nscores DIFFER on {len(wrong)} of {questions} question grades (run {number} of ours):")
                print("\n".join("  " + line for line in wrong))
                return 1
        print(f"\nscores identical: {questions} question grades over {len(mix)} submissions, in each run")
        print(f"speed-up: {stock.wall / ours.wall:.1f}x (wall time, stock / ours)")
        if len(runs) > 1:
            print(f"runs of ours: {', '.join(f'{r.wall:.1f} s' for r in runs)} (in order; the first before "
                  f"stock's), speed-ups {min(stock.wall / r.wall for r in runs):.1f}x to "
                  f"{max(stock.wall / r.wall for r in runs):.1f}x")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
