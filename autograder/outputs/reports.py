"""Reports and exports: grades.csv, the instructor's report.html, plain feedback pages,
and the grade table printed at the end of a run."""
import csv
import html
import statistics

import numpy


def write_grades_csv(path, rows, question_ids):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "assignment", *question_ids, "score", "max_score", "status", "notes"])
        for row in rows:
            writer.writerow([row.student_id, row.assignment,
                             *[_points(row.questions.get(q, 0.0)) for q in question_ids],
                             _points(row.score), _points(row.max_score), row.status, " | ".join(row.notes)])


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


def _charts(rows, question_ids):
    """The score histogram and the pass rate of each question, as HTML bars: part of the
    page, readable by a screen reader, no plotting library to load in a grading run."""
    esc = html.escape
    top = max((r.max_score for r in rows), default=1) or 1
    counts, edges = numpy.histogram([r.score for r in rows], bins=min(20, max(5, len(rows))), range=(0, top))
    tallest = max(int(counts.max()), 1)
    bars = "".join(
        f"<div class='col' title='{low:g} to {high:g}: {n} students'>"
        f"<span style='height:{100 * n / tallest:.1f}%'></span></div>"
        for n, low, high in zip(counts, edges, edges[1:]))
    histogram = (f"<figure class='chart hist-chart'><figcaption>Score distribution (out of {top:g}); "
                 f"tallest bar: {tallest} students</figcaption><div class='hist' role='img' "
                 f"aria-label='students per score range'>{bars}</div>"
                 f"<div class='axis'><span>0</span><span>{top:g}</span></div></figure>")
    rates = []
    for q in question_ids:
        graded = [r.questions[q] for r in rows if not isinstance(r.questions.get(q), str)]
        full = [r for r in rows if q in r.questions]
        maximum = max((v for v in graded), default=0)
        rates.append(100 * sum(1 for v in graded if v > 0 and v >= maximum) / len(full) if full and maximum else 0)
    passed = "".join(f"<tr><td>{esc(q)}</td><td class='bar'><span style='width:{rate:.1f}%'></span></td>"
                     f"<td>{rate:.0f}%</td></tr>" for q, rate in zip(question_ids, rates))
    questions = (f"<figure class='chart'><figcaption>Questions passed (full points), % of students</figcaption>"
                 f"<table class='rates'>{passed}</table></figure>")
    return f"<div class='charts'>{histogram}{questions}</div>"


CHART_STYLE = (".charts{display:flex;gap:3em;flex-wrap:wrap}.chart{margin:0}"
               ".hist-chart{width:24em}.hist{display:flex;align-items:flex-end;gap:2px;height:8em;border-bottom:1px solid #333}"
               ".hist .col{flex:1;height:100%;display:flex;align-items:flex-end}"
               ".hist span{display:block;width:100%;background:#4477aa}"
               ".axis{display:flex;justify-content:space-between;font-size:.8em}"
               ".rates td{border:none;padding:.1em .4em}.rates .bar{width:16em}"
               ".rates .bar span{display:block;height:1em;background:#228833}")


def write_report(path, rows, question_ids, assignment):
    esc = html.escape
    scores = [r.score for r in rows]
    summary = (f"{len(rows)} submissions; mean {statistics.mean(scores):.2f}, median "
               f"{_points(statistics.median(scores))} out of {rows[0].max_score:g}") if rows else "no submissions"
    slow = sorted((r for r in rows if r.seconds), key=lambda r: r.seconds, reverse=True)[:10]
    unusual = [r for r in rows if r.status != "graded"]
    parts = [f"<!doctype html><meta charset='utf-8'><title>Grading report: {esc(assignment)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}"
             f"{CHART_STYLE}</style>",
             f"<h1>Grading report: {esc(assignment)}</h1><p>{esc(summary)}</p>",
             _charts(rows, question_ids),
             "<h2>Submissions that were not simply graded</h2>"]
    if unusual:
        parts.append("<table><tr><th>student</th><th>status</th><th>notes</th></tr>" + "".join(
            f"<tr><td>{esc(r.student_id)}</td><td>{esc(r.status)}</td><td>{esc(' | '.join(r.notes))}</td></tr>"
            for r in unusual) + "</table>")
    else:
        parts.append("<p>None: every submission was graded in full.</p>")
    parts.append("<h2>Slowest submissions</h2><table><tr><th>student</th><th>seconds</th></tr>" + "".join(
        f"<tr><td>{esc(r.student_id)}</td><td>{r.seconds:.2f}</td></tr>" for r in slow) + "</table>")
    parts.append("<h2>All grades</h2><table><tr><th>student</th>" + "".join(f"<th>{esc(q)}</th>" for q in question_ids)
                 + "<th>score</th><th>status</th></tr>" + "".join(
        f"<tr><td>{esc(r.student_id)}</td>" + "".join(f"<td>{esc(_points(r.questions.get(q, 0.0)))}</td>" for q in question_ids)
        + f"<td>{_points(r.score)}/{_points(r.max_score)}</td><td>{esc(r.status)}</td></tr>" for r in rows) + "</table>")
    path.write_text("\n".join(parts))


def write_plain_feedback(path, row):
    """Feedback for a submission nbgrader could not grade: the reason and the points."""
    esc = html.escape
    items = "".join(f"<li>{esc(q)}: {_points(v)}</li>" for q, v in row.questions.items())
    notes = "".join(f"<li>{esc(n)}</li>" for n in row.notes)
    path.write_text(f"<!doctype html><meta charset='utf-8'><title>Feedback: {esc(row.assignment)}</title>"
                    f"<h1>{esc(row.assignment)}: {_points(row.score)} / {_points(row.max_score)}</h1>"
                    f"<p>Your submission could not be graded in full: <b>{esc(row.status)}</b>.</p>"
                    f"<ul>{items}</ul>" + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""))


def add_notes_to_feedback(path, row):
    """Put the grader's notes on a submission (cells restored, time-outs, files ignored...)
    at the top of its nbgrader feedback page."""
    if not row.notes and row.status in ("graded", "needs manual grading"):
        return
    esc = html.escape
    notes = "".join(f"<li>{esc(n)}</li>" for n in row.notes)
    block = ("<div class='autograder-notes' style='border:1px solid #c90;background:#fff8e5;"
             "padding:.5em 1em;margin:1em'><h4>Notes from the grader</h4>"
             f"<p>Status: <b>{esc(row.status)}</b></p>" + (f"<ul>{notes}</ul>" if notes else "") + "</div>")
    page = path.read_text()
    body = page.find("<body")
    at = page.find(">", body) + 1 if body >= 0 else 0
    path.write_text(page[:at] + block + page[at:])
