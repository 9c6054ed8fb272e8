"""Speed and recall of similarity.html on a large synthetic class.

    python bench/similarity_bench.py [--n 1000] [--assignment tied_layers] [--copied 0.05]

Builds N submissions from the master's answers and the catalog of other answers (right and
wrong, tests/wrong_answers.toml), each student adding a line of their own to each answer;
a share of the students copy an earlier student's whole notebook, renaming its variables
and swapping two of its lines. Prints the seconds the report took (fingerprints, pairs,
page), how many planted copies it lists and how many other pairs.
"""
import argparse
import importlib.util
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from autograder.outputs import similarity  # noqa: E402
_spec = importlib.util.spec_from_file_location("build_submissions", ROOT / "examples" / "build_submissions.py")
examples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(examples)
LOCALS = r"\b(name|param|p|key|value|layer|total|before|after|history|loss|opt|optimizer|model|net)\b"


def variants(assignment):
    """{question: [answers a student might write]}: the master's, then the catalog's."""
    ids = [examples.meta(c)["grade_id"] for c in examples.filled(assignment).cells
           if examples.meta(c).get("solution") and c.cell_type == "code"]
    master = examples.filled(assignment)
    found = {gid: [next(c.source for c in master.cells if examples.meta(c).get("grade_id") == gid)] for gid in ids}
    for entry in examples.CATALOG.get("case", []) + examples.CATALOG.get("correct", []):
        if entry.get("assignment") == assignment:
            for gid, source in entry["replace"].items():
                if gid in found:
                    found[gid].append(source.strip("\n"))
    return found


def own_line(source, rng):
    """The answer with one statement of the student's own, at the second line's indent."""
    lines = source.splitlines()
    at = rng.randrange(1, len(lines)) if len(lines) > 1 else 1
    indent = re.match(r"\s*", lines[min(at, len(lines) - 1)]).group()
    extra = rng.choice(["{i}check = {n} * scale + offset_{n}", "assert len(items_{n}) > {n}, 'shape {n}'",
                        "print('step', {n}, flush=True)", "buffer_{n} = [{n}, {i}] + list(range({n}))"])
    return "\n".join(lines[:at] + [indent + extra.format(i="v", n=rng.randrange(10**6))] + lines[at:])


def copied(source, rng):
    """A copy: its variables renamed, two neighbouring lines swapped."""
    renamed = re.sub(LOCALS, lambda m: f"{m.group()}_{rng.randrange(100)}", source)
    lines = renamed.splitlines()
    if len(lines) > 3:
        i = rng.randrange(1, len(lines) - 1)
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    return "\n".join(lines)


def build_class(assignment, n, copied_share, seed=0):
    """({student: notebook}, {planted pairs})."""
    rng = random.Random(seed)
    pool = variants(assignment)
    answers, planted = {}, set()
    for i in range(n):
        student = f"s{i:04d}"
        if i > 10 and rng.random() < copied_share:
            source = rng.choice(sorted(answers))
            answers[student] = {gid: copied(text, rng) for gid, text in answers[source].items()}
            planted.add((source, student))
        else:
            answers[student] = {gid: own_line(rng.choice(texts), rng)
                                for gid, texts in pool.items()}
    return {s: examples.filled(assignment, a) for s, a in answers.items()}, planted


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--assignment", default="tied_layers")
    parser.add_argument("--copied", type=float, default=0.05, help="share of students who copy (default 0.05)")
    args = parser.parse_args(argv)
    notebooks, planted = build_class(args.assignment, args.n, args.copied)
    release = nbformat.read(ROOT / "release" / args.assignment / f"{args.assignment}.ipynb", as_version=4)
    with tempfile.TemporaryDirectory() as folder:
        started, cpu = time.perf_counter(), time.process_time()
        matches = similarity.write(Path(folder) / "similarity.html", notebooks, release, args.assignment)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    listed = {m.students for m in matches}
    found = {pair for pair in planted if pair in listed or pair[::-1] in listed}
    answers = sum(len(similarity.answers(nb, release)) for nb in notebooks.values())
    print(f"{args.n} submissions, {answers} answers, {args.assignment}: similarity.html in {seconds:.2f} s "
          f"({cpu:.2f} s of CPU)")
    print(f"planted copies listed: {len(found)} of {len(planted)}; other pairs listed: {len(listed - found)}; "
          f"{len(matches)} (question, pair) entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
