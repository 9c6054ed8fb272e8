"""Reports and exports: grades.csv, the instructor's report.html, plain feedback pages,
and the grade table printed at the end of a run."""
import csv
import html
import statistics
import urllib.parse

import numpy

from autograder import settings
from autograder.outputs import check_summary


def write_grades_csv(path, rows, question_ids):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        # score is after the late penalty: the questions' points add up to score + penalty.
        writer.writerow(["student_id", "assignment", *question_ids, "late_by", "penalty", "score", "max_score",
                         "status", "notes"])
        for row in rows:
            writer.writerow([row.student_id, row.assignment,
                             *[_points(row.questions.get(q, 0.0)) for q in question_ids],
                             _late_by(row), _points(row.penalty),
                             _points(row.score), _points(row.max_score), row.status, " | ".join(row.notes)])


def _late_by(row):
    """Empty when it is not known (or there is no due date), 0 when on time."""
    return "" if row.seconds_late is None else duration(row.seconds_late) if row.seconds_late else "0"


def duration(seconds):
    """A time span as people write it: '1 d 3 h 5 min', '40 s'."""
    minutes, rest = divmod(int(seconds), 60)
    if not minutes:
        return f"{rest} s"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return " ".join(f"{n} {unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "min")) if n)


def _points(value):
    """Points as shown: at most two decimals (a share of 2 points among 9 checks is 0.22)."""
    return value if isinstance(value, str) else f"{round(value, 2):g}"


def grade_table(rows, question_ids):
    """The grade table as plain text, one line per student."""
    headers = ["student", *question_ids, "score", "status"]
    body = [[r.student_id, *[_points(r.questions.get(q, 0.0)) for q in question_ids],
             f"{_points(r.score)}/{_points(r.max_score)}", r.status] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(b) for b in body])


def _charts(rows, question_ids, points):
    """The score histogram and each question's results, as HTML bars and tables: part of the
    page, readable by a screen reader, no plotting library to load in a grading run."""
    esc = html.escape
    top = max((r.max_score for r in rows), default=1) or 1
    counts, edges = numpy.histogram([r.score for r in rows], bins=min(20, max(5, len(rows))), range=(0, top))
    tallest = max(int(counts.max()), 1)
    bars = "".join(
        f"<div class='col' title='{low:g} to {high:g}: {n} students'>"
        f"<span style='height:{100 * n / tallest:.1f}%'></span></div>"
        for n, low, high in zip(counts, edges, edges[1:]))
    ticks = "".join(f"<span style='left:{100 * t / top:.2f}%'>{t:g}</span>" for t in _ticks(top))
    histogram = (f"<figure class='chart hist-chart'><figcaption>Score distribution (out of {top:g})</figcaption>"
                 f"<div class='hist-frame'><div class='y-axis'><span>{tallest}</span><span>0</span></div>"
                 f"<div class='hist' role='img' aria-label='students per score range'>{bars}</div></div>"
                 f"<div class='x-axis'>{ticks}</div>"
                 f"<div class='axis-titles'>points (bars: students per range; tallest {tallest})</div></figure>")
    lines = []
    for q in question_ids:
        graded = [r.questions[q] for r in rows if isinstance(r.questions.get(q), (int, float))]
        pending = sum(1 for r in rows if r.questions.get(q) == "pending")
        maximum = points.get(q) if points else max(graded, default=0)
        mean = statistics.mean(graded) if graded else None
        rate = 100 * sum(1 for v in graded if v > 0 and v >= maximum) / len(graded) if graded and maximum else 0
        shown = f"{rate:.0f}%" if graded else "&ndash;"
        lines.append(f"<tr><td>{esc(q)}</td><td class='bar'><span style='width:{rate:.1f}%'></span></td>"
                     f"<td>{shown}</td><td>{'&ndash;' if mean is None else f'{mean:.2f}'}"
                     f"{f' / {maximum:g}' if points else ''}</td><td>{f'{pending} pending' if pending else ''}</td></tr>")
    questions = ("<figure class='chart'><figcaption>Questions: full points (% of the students graded on it), "
                 "mean points</figcaption><table class='rates'><tr><th>question</th><th colspan='2'>full points</th>"
                 f"<th>mean</th><th>manual grading</th></tr>{''.join(lines)}</table></figure>")
    return f"<div class='charts'>{histogram}{questions}</div>"


def _ticks(top):
    """Round values from 0 to ``top`` for the histogram's axis: at most about ten."""
    step = next(s for s in (m * 10 ** e for e in range(-2, 12) for m in (1, 2, 5)) if top / s <= 10)
    return [i * step for i in range(int(top / step + 1e-9) + 1)]


CHART_STYLE = (".charts{display:flex;gap:3em;flex-wrap:wrap}.chart{margin:0}"
               ".hist-chart{width:26em}.hist-frame{display:flex;height:8em}"
               ".y-axis{display:flex;flex-direction:column;justify-content:space-between;font-size:.8em;"
               "padding-right:.3em;text-align:right;min-width:2em}"
               ".hist{flex:1;display:flex;align-items:flex-end;gap:2px;border-bottom:1px solid #333;"
               "border-left:1px solid #333}"
               ".hist .col{flex:1;height:100%;display:flex;align-items:flex-end}"
               ".hist span{display:block;width:100%;background:#4477aa}"
               ".x-axis{position:relative;height:1.3em;margin-left:2.3em;font-size:.8em}"
               ".x-axis span{position:absolute;transform:translateX(-50%);border-left:1px solid #333;"
               "padding-top:.15em;line-height:1}"
               ".axis-titles{font-size:.8em;color:#555;margin-left:2.3em}"
               ".rates td,.rates th{border:none;padding:.1em .4em}.rates .bar{width:12em}"
               ".rates .bar span{display:block;height:1em;background:#228833}")
PAGE_STYLE = ("body{font-family:'Helvetica Neue',Helvetica,Arial,sans-serif;margin:2em;max-width:76em;"
              "line-height:1.4;color:#333}"
              "table{border-collapse:collapse}"
              "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top;"
              "overflow-wrap:break-word}"
              # Long text (notes, statuses, found values) wraps anywhere: the tables fit the page.
              ".text{overflow-wrap:anywhere}.wide{width:100%}a{color:#2a6496}")


def _student_link(student_id):
    """The student's id, linking to their feedback page (OUTDIR/feedback/, beside the report)."""
    return f"<a href='feedback/{html.escape(urllib.parse.quote(student_id + '.html'))}'>{html.escape(student_id)}</a>"


def _header(name):
    """A column header that may break after its underscores (grade ids are long)."""
    return html.escape(name).replace("_", "_<wbr>")


def write_report(path, rows, question_ids, assignment, *, points=None):
    """``points``: {question: its points}; without it a question's full points are the most
    anyone earned."""
    esc = html.escape
    scores = [r.score for r in rows]
    summary = (f"{len(rows)} submissions; mean {statistics.mean(scores):.2f}, median "
               f"{_points(statistics.median(scores))} out of {rows[0].max_score:g}") if rows else "no submissions"
    pending = sum(1 for r in rows for v in r.questions.values() if v == "pending")
    if pending:
        summary += f" ({pending} answers awaiting manual grading count 0 so far)"
    slow = sorted((r for r in rows if r.seconds), key=lambda r: r.seconds, reverse=True)[:settings.REPORT_TOP]
    unusual = [r for r in rows if r.status != "graded"]
    parts = [f"<!doctype html><meta charset='utf-8'><title>Grading report: {esc(assignment)}</title>",
             f"<style>{PAGE_STYLE}{CHART_STYLE}</style>",
             f"<h1>Grading report: {esc(assignment)}</h1><p>{esc(summary)}</p>",
             "<p><a href='similarity.html'>Similar answers</a>: pairs of students whose answers look copied</p>",
             _charts(rows, question_ids, points),
             "<h2>Checks that failed most</h2>"]
    failed = check_summary.most_failed(rows, settings.REPORT_TOP)
    if failed:
        parts.append("<table class='wide'><tr><th>check</th><th>question</th><th>students who failed it</th>"
                     "<th>most common reason (what it found, or the error)</th></tr>" + "".join(
            f"<tr><td>{esc(f.check)}</td><td>{esc(f.question)}</td><td>{f.students}</td><td class='text'>"
            + (f"{esc(f.outcome)} ({f.outcome_students} of {f.students})" if f.outcome else
               "a hidden check: no details kept")
            + "</td></tr>" for f in failed) + "</table>")
    else:
        parts.append("<p>None: every check passed.</p>")
    parts.append("<h2>Submissions that were not simply graded</h2>")
    if unusual:
        parts.append("<table class='wide'><tr><th>student</th><th>status</th><th>notes</th></tr>" + "".join(
            f"<tr><td>{_student_link(r.student_id)}</td><td>{esc(r.status)}</td>"
            f"<td class='text'>{esc(' | '.join(r.notes))}</td></tr>"
            for r in unusual) + "</table>")
    else:
        parts.append("<p>None: every submission was graded in full.</p>")
    parts.append("<h2>Slowest submissions</h2><table><tr><th>student</th><th>seconds</th></tr>" + "".join(
        f"<tr><td>{_student_link(r.student_id)}</td><td>{r.seconds:.2f}</td></tr>" for r in slow) + "</table>")
    parts.append("<h2>All grades</h2><table class='wide grades'><tr><th>student</th>"
                 + "".join(f"<th>{_header(q)}</th>" for q in question_ids)
                 + "<th>score</th><th>status</th></tr>" + "".join(
        f"<tr><td>{_student_link(r.student_id)}</td>"
        + "".join(f"<td>{esc(_points(r.questions.get(q, 0.0)))}</td>" for q in question_ids)
        + f"<td>{_points(r.score)}/{_points(r.max_score)}</td><td>{esc(r.status)}</td></tr>" for r in rows) + "</table>")
    path.write_text("\n".join(parts))


# What a student can do about a submission that could not be graded, by its status.
ADVICE = [
    ("no notebook submitted",
     "Submit the notebook you answered the questions in: its .ipynb file (in JupyterLab, right-click "
     "it in the file browser and choose Download), not a PDF, an HTML export or a link."),
    ("not this assignment's notebook",
     "The notebook you submitted is not this assignment's: none of its questions were found in it. "
     "Submit {notebook}, the notebook you answered this assignment's questions in."),
    ("file too large",
     "Large outputs make a notebook large. Open it in JupyterLab, clear the outputs (Edit > Clear "
     "Outputs of All Cells), save it (File > Save Notebook) and submit the saved .ipynb file again."),
    ("grading failed",
     "This need not be a problem with your answers. Tell your instructor, who can have it graded again."),
]
DEFAULT_ADVICE = ("Open your notebook in JupyterLab. If it opens and shows your answers, save it (File > Save "
                  "Notebook) and submit that .ipynb file again. If it does not open, the file was damaged or "
                  "is not a notebook (a PDF, an HTML export or a renamed file): submit the .ipynb file you "
                  "worked in, downloaded again from JupyterLab (right-click it, Download).")
FEEDBACK_STYLE = ("body{font-family:'Helvetica Neue',Helvetica,Arial,sans-serif;font-size:14px;line-height:1.43;"
                  "color:#333;margin:0;padding:1em}"
                  ".container{max-width:1140px;margin:0 auto}"
                  ".panel{border:1px solid #ddd;border-radius:4px;margin-bottom:1em}"
                  ".panel-heading{background:#f5f5f5;border-bottom:1px solid #ddd;padding:.6em 1em}"
                  ".panel-heading h4{margin:0;font-size:18px;font-weight:500}"
                  ".panel-body{padding:.5em 1.5em 1em}h2{font-size:20px;font-weight:500}h3{font-size:16px}"
                  ".problem{background:#f2dede;border:1px solid #ebccd1;color:#a94442;padding:.6em 1em;"
                  "border-radius:4px}"
                  ".advice{background:#dff0d8;border:1px solid #d6e9c6;padding:.6em 1em;border-radius:4px}"
                  "li,p{overflow-wrap:anywhere}")


def write_plain_feedback(path, row, notebook=None, graded=False):
    """Feedback for a submission nbgrader could not grade, looking like nbgrader's pages: what
    the problem was, what to do about it, and the points (``notebook``: the file to submit).
    ``graded``: it was graded, but its page could not be made: the points stand."""
    esc = html.escape
    items = "".join(f"<li>{esc(q)}: {esc(_points(v))}</li>" for q, v in row.questions.items())
    notes = "".join(f"<li>{esc(n)}</li>" for n in row.notes)
    if graded:
        body = ("<h2>Your feedback page could not be made</h2><p>Your submission was graded and the points "
                "below stand; the page showing each check could not be made. Your instructor can make it "
                f"again.</p><h3>Points</h3><ul>{items}</ul>")
    else:
        advice = next((text for start, text in ADVICE if row.status.startswith(start)), DEFAULT_ADVICE)
        advice = advice.replace("{notebook}", notebook or f"{row.assignment}.ipynb")
        body = (f"<h2>Your submission could not be graded</h2>"
                f"<p class='problem'>The problem: <b>{esc(row.status)}</b>.</p>"
                f"<h3>What to do</h3><p class='advice'>{esc(advice)}</p>"
                f"<h3>Points</h3><p>Nothing of this submission could be graded, so every question counts 0 "
                f"until a notebook that can be graded is submitted.</p><ul>{items}</ul>")
    path.write_text(
        f"<!doctype html><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
        f"<title>Feedback: {esc(row.assignment)}</title><style>{FEEDBACK_STYLE}</style>"
        f"<div class='container'><div class='panel'><div class='panel-heading'>"
        f"<h4>{esc(row.assignment)} (Score: {_points(row.score)} / {_points(row.max_score)})</h4></div>"
        f"<div class='panel-body'>{body}"
        + (f"<h3>Notes from the grader</h3><ul>{notes}</ul>" if notes else "") + "</div></div></div>")


def verdict_note(question, messages):
    """The note of a failed test cell in grades.csv and the report."""
    return f"{question}: {'; '.join(messages) or 'hidden tests failed'}"


def add_notes_to_feedback(path, row):
    """Put the grader's notes on a submission (cells restored, time-outs, files ignored...)
    at the top of its nbgrader feedback page; not the verdicts, which the page shows in place."""
    verdicts = {verdict_note(q, messages) for q, messages in row.messages.items()}
    shown = [n for n in row.notes if n not in verdicts]
    if not shown and row.status in ("graded", "needs manual grading"):
        return
    esc = html.escape
    notes = "".join(f"<li>{esc(n)}</li>" for n in shown)
    block = ("<div class='autograder-notes' style='border:1px solid #c90;background:#fff8e5;"
             "padding:.5em 1em;margin:1em;overflow-wrap:anywhere'><h4>Notes from the grader</h4>"
             f"<p>Status: <b>{esc(row.status)}</b></p>" + (f"<ul>{notes}</ul>" if notes else "") + "</div>")
    page = path.read_text()
    body = page.find("<body")
    at = page.find(">", body) + 1 if body >= 0 else 0
    path.write_text(page[:at] + block + page[at:])
