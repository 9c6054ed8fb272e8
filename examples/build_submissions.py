"""Build the example submissions that `make demo` grades, from the masters and the
student versions (never edit examples/submissions/ by hand; tests check it is in sync).

    python examples/build_submissions.py

For each assignment: a full answer, a partial one (two mistakes from the catalog of
wrong answers), the blank student version, a broken file, an answer with an infinite
loop, and one that cheats (monkeypatching, always-equal objects, a printed fake pass).
"""
import json
import tomllib
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "examples" / "submissions"
CATALOG = tomllib.loads((ROOT / "tests" / "wrong_answers.toml").read_text())
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
# A student's answer to each question graded by hand, by the grade id of its cell.
MANUAL_ANSWERS = {
    "plot_reading_answer": (
        "The output bias moves every prediction by the same amount, so its gradient is the mean "
        "error: the first steps fix the average and it drops to almost nothing. 2.weight has the "
        "largest norm because the shared layer adds up the gradients of its two uses. No gradient "
        "vanishes or explodes: the curves stay within about a factor of ten. Unit 2 of layer 0 is "
        "dead, its weights never change; a LeakyReLU would keep it alive."),
    "tied_embeddings_answer": (
        "Tying saves V x d = 50,000 x 768 = 38.4 million parameters, about 154 MB in float32. It "
        "does not save computation: the lookup and the d x V output product are both still done "
        "for every token. The gradient of the shared matrix is the sum of the gradients of the "
        "embedding and of the output layer."),
    "frozen_still_moves": (
        "zero_grad(set_to_none=False) leaves the frozen layer's .grad as zeros instead of None, so "
        "SGD still updates it: weight decay pulls the weights towards zero and momentum keeps "
        "moving them. Use zero_grad() with set_to_none=True, or build a new optimiser with only "
        "the parameters that require a gradient."),
}
CHEAT = ("import builtins, torch\n"
         "torch.allclose = lambda *a, **k: True\n"
         "torch.equal = lambda *a, **k: True\n"
         "builtins.isinstance = lambda *a, **k: True\n"
         "print('[pass] every check')\n")


def meta(cell):
    return cell.metadata.get("nbgrader", {})


def filled(assignment, replace=None):
    """The student version with every answer taken from the master, then ``replace`` applied."""
    replace = replace or {}
    nb = nbformat.read(ROOT / "release" / assignment / f"{assignment}.ipynb", as_version=4)
    master = nbformat.read(ROOT / "source" / assignment / f"{assignment}.ipynb", as_version=4)
    answers = {meta(c)["grade_id"]: c.source for c in master.cells if meta(c).get("solution")}
    for cell in nb.cells:
        if not meta(cell).get("solution"):
            continue
        gid = meta(cell)["grade_id"]
        if gid in replace:
            cell.source = replace[gid].strip("\n")
        elif cell.cell_type == "markdown":
            cell.source = MANUAL_ANSWERS[gid]
        else:
            cell.source = "\n".join(line for line in answers[gid].splitlines() if line.strip() not in MARKERS)
    return nb


def submissions(assignment):
    """{file name: file content} of the example submissions of one assignment."""
    cases = [c for c in CATALOG["case"] if c["assignment"] == assignment]
    two = {}
    for case in cases:  # two mistakes on two different questions
        if len(two) < 2 and not set(case["replace"]) & set(two):
            two.update(case["replace"])
    first_code = next(meta(c)["grade_id"] for c in filled(assignment).cells
                      if meta(c).get("solution") and c.cell_type == "code")
    blank = nbformat.read(ROOT / "release" / assignment / f"{assignment}.ipynb", as_version=4)
    loop = filled(assignment)
    cheat = filled(assignment, cases[0]["replace"])
    for cell in loop.cells:
        if meta(cell).get("grade_id") == first_code:
            cell.source = "while True:\n    pass"
    for cell in cheat.cells:
        if meta(cell).get("grade_id") == first_code:
            cell.source = CHEAT + cell.source
    full = nbformat.writes(filled(assignment))
    return {
        "ada_full.ipynb": full,
        "ben_partial.ipynb": nbformat.writes(filled(assignment, two)),
        "cy_blank.ipynb": nbformat.writes(blank),
        "dee_broken.ipynb": full[: len(full) // 2],  # a download cut short
        "eve_loop.ipynb": nbformat.writes(loop),
        "fay_cheat.ipynb": nbformat.writes(cheat),
    }


def main():
    for assignment in sorted(p.name for p in (ROOT / "source").iterdir() if p.is_dir()):
        folder = OUT / assignment
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in submissions(assignment).items():
            (folder / name).write_text(text)
    print(json.dumps({a.name: sorted(p.name for p in a.iterdir()) for a in sorted(OUT.iterdir())}))


if __name__ == "__main__":
    main()
