"""OUTDIR/similarity.html: pairs of students whose answers to a question are alike.

What a student wrote is their answer cell minus every line the release already had (the
stub, the signature, the docstring): two students who left the stub share nothing. Each
answer is fingerprinted once with copydetect (MOSS's method): pygments' Python lexer makes
every name one symbol and drops comments and spacing, so renamed variables still match.
Every k-gram is a fingerprint (a winnowing window of 1): which are kept then depends on no
hash value, and Python salts its string hashes per process, so the report is the same on
every run. An inverted index from fingerprint to answers gives the pairs that share one,
and only those are compared: the cost grows with the answers and their sharing, not with
the square of the class.

A fingerprint in more answers to a question than ``SIMILARITY_MAX_SHARED`` is what many
students write on their own (MOSS's ``-m``): it matches nothing but still counts in the
answer's length, so what is left of an answer many wrote is no evidence. A pair's similarity
is the mean of the shares of each answer the other matches (JPlag's default); both are shown.

Why copydetect: on the master's 10-line ``train`` answer, a renamed copy / the same with two
statements swapped / an independent correct answer score 1.00 / 0.76 / 0.33 with it (k=20);
difflib's SequenceMatcher gives 0.88 / 0.80 / 0.69 on the text and 1.00 / 0.91 / 0.72 on
copydetect's filtered code (no threshold separates copies from independent work), and a
token 4-gram Jaccard of our own 1.00 / 0.83 / 0.38 (as good, with the same lexing to write).
Each costs 5 to 8 ms a pair lexing included; with fingerprints made once, copydetect's
comparison costs 0.4 ms, and the index spares all but the pairs that share something.
"""
import html
import io
import sys
import types
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations

from autograder import settings
from autograder.outputs import reports

# copydetect imports matplotlib's pyplot for its own HTML report, which this module does not
# use: half a CPU-second, a twentieth of a grading run. Imported with stand-ins for it,
# which leave sys.modules once it is in (a real import of matplotlib later is unaffected).
_PLOTTING = ("matplotlib", "matplotlib.pyplot")
_stand_ins = {name: types.ModuleType(name) for name in _PLOTTING if name not in sys.modules}
sys.modules.update(_stand_ins)
try:
    from copydetect import CodeFingerprint, compare_files
    from copydetect.utils import highlight_overlap
finally:
    for _name, _module in _stand_ins.items():
        if sys.modules.get(_name) is _module:
            del sys.modules[_name]

# Only this much of an answer is read: lexing cost grows with it, and a copy shows well before.
MAX_ANSWER_CHARS = 20_000


@dataclass
class Match:
    question: str
    students: tuple  # (student a, student b)
    shares: tuple  # (share of a's answer found in b's, share of b's found in a's)
    answers: tuple  # the written code of each, as HTML with the matched parts in <mark>

    @property
    def similarity(self):
        return sum(self.shares) / 2


def _grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def written(source, given):
    """The lines of ``source`` that are not lines of ``given`` (the released cell)."""
    known = {line.strip() for line in given.splitlines()}
    return "\n".join(line for line in source[:MAX_ANSWER_CHARS].splitlines() if line.strip() not in known)


def answers(notebook, release_nb):
    """{grade id: what the student wrote} for the answer cells of ``notebook``."""
    released = {_grade_id(c): c for c in release_nb.cells if c.metadata.get("nbgrader", {}).get("solution")}
    found = {}
    for cell in notebook.cells:
        given = released.get(_grade_id(cell))
        if given is not None and _grade_id(cell) not in found and cell.cell_type == given.cell_type:
            found[_grade_id(cell)] = written(cell.source, given.source)
    return found


def _fingerprint(text, is_code, k):
    if is_code:
        return CodeFingerprint("answer.py", k, 1, fp=io.StringIO(text), language="python")
    # Prose has no names to rename: it is compared as words, whatever their case and spacing.
    return CodeFingerprint("answer.txt", k, 1, fp=io.StringIO(" ".join(text.split())), filter=False)


def find(notebooks, release_nb, threshold=settings.SIMILARITY_THRESHOLD, k=settings.SIMILARITY_KGRAM,
         min_chars=settings.SIMILARITY_MIN_CHARS, max_shared=settings.SIMILARITY_MAX_SHARED):
    """Every (question, pair of students) whose answers are at least ``threshold`` similar,
    the most similar first. ``notebooks``: {student: notebook}."""
    code = {_grade_id(c): c.cell_type == "code" for c in release_nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")}
    by_question = defaultdict(dict)  # {question: {student: fingerprint}}
    made = {}  # {(question, text): fingerprint}: an answer many handed in is lexed once
    for student, nb in notebooks.items():
        for question, text in answers(nb, release_nb).items():
            if len("".join(text.split())) < min_chars:  # shorter still once filtered: not worth lexing
                continue
            if (question, text) not in made:
                made[question, text] = _fingerprint(text, code[question], k)
            if made[question, text].token_coverage >= min_chars:
                by_question[question][student] = made[question, text]
    matches = []
    for question, prints in by_question.items():
        shared = Counter(h for fingerprint in prints.values() for h in fingerprint.hashes)
        common = {h for h, count in shared.items() if count > max_shared}
        holders = defaultdict(list)  # the inverted index: fingerprint -> the answers that have it
        for student, fingerprint in prints.items():
            # Common passages match nothing, unlike copydetect's boilerplate they still count
            # in the answer's length: what is left of an answer many wrote is no evidence.
            fingerprint.hashes -= common
            for h in fingerprint.hashes:
                holders[h].append(student)
        pairs = {pair for students in holders.values() for pair in combinations(students, 2)}
        for a, b in sorted(pairs):
            _, shares, slices = compare_files(prints[a], prints[b])
            if sum(shares) / 2 >= threshold:
                shown = tuple(highlight_overlap(prints[s].raw_code, cut, "<mark>", "</mark>", escape_html=True)[0]
                              for s, cut in zip((a, b), slices))
                matches.append(Match(question, (a, b), tuple(float(s) for s in shares), shown))
    order = list(code)
    matches.sort(key=lambda m: (-m.similarity, order.index(m.question), m.students))
    return matches


# The report's page style, and two answers side by side.
STYLE = (reports.PAGE_STYLE + ".pair{display:flex;gap:1em}.pair>div{flex:1;min-width:0}"
         "pre{background:#f6f6f6;padding:.5em;overflow-x:auto;white-space:pre-wrap}mark{background:#fd6}")


def write(path, notebooks, release_nb, assignment, threshold=settings.SIMILARITY_THRESHOLD):
    """Write the report; return its matches."""
    esc = html.escape
    matches = find(notebooks, release_nb, threshold)
    by_pair = defaultdict(list)
    for number, match in enumerate(matches):
        by_pair[match.students].append(number)
    parts = [f"<!doctype html><meta charset='utf-8'><title>Similar answers: {esc(assignment)}</title>",
             f"<style>{STYLE}</style><h1>Similar answers: {esc(assignment)}</h1>",
             f"<p>Answers to the same question at least {threshold:.0%} alike, with the code the release "
             "gave removed; names, comments and spacing are ignored, and so are passages more than "
             f"{settings.SIMILARITY_MAX_SHARED} students wrote. Matched code is highlighted.</p>"]
    if not matches:
        parts.append("<p>No pair of answers is that similar.</p>")
    else:
        parts.append("<h2>Pairs of students</h2><table><tr><th>students</th><th>questions</th></tr>" + "".join(
            f"<tr><td>{esc(a)} and {esc(b)}</td><td>"
            + ", ".join(f"<a href='#m{n}'>{esc(matches[n].question)} ({matches[n].similarity:.0%})</a>" for n in numbers)
            + "</td></tr>" for (a, b), numbers in sorted(by_pair.items(), key=lambda item: -len(item[1])))
            + "</table><h2>Answers, the most similar first</h2>")
    for number, m in enumerate(matches):
        sides = "".join(f"<div><h4>{esc(student)} ({share:.0%} of it matched)</h4><pre>{code}</pre></div>"
                        for student, share, code in zip(m.students, m.shares, m.answers))
        parts.append(f"<h3 id='m{number}'>{esc(m.question)}: {esc(m.students[0])} and {esc(m.students[1])}, "
                     f"{m.similarity:.0%}</h3><div class='pair'>{sides}</div>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return matches
