"""``python -m autograder grade``: a folder of submissions to grades, feedback and a report."""
import json
import logging
import os
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from tqdm import tqdm

from autograder import graded_metadata
from autograder import intake
from autograder import settings
from autograder.scoring import nbcheck
from autograder.grading import lateness, pipeline, students
from autograder.intake.roster import read_roster
from autograder.outputs import lms_export, reports
from autograder.grading.course import start_warm_lanes

log = logging.getLogger(__name__)
STATE_FILE = ".autograder.json"  # in each autograded folder: the submission it graded
TAMPERING = "tampering suspected"  # the executor found the grading machinery patched or bypassed
PROBLEM_STATUSES = {status: name for status, (name, _) in nbcheck.CELL_PROBLEMS.items()}
SIMILARITY_NICENESS = 19  # the similarity report's thread yields the processor to grading


@dataclass
class StudentRow:
    student_id: str
    assignment: str
    questions: dict  # {grade_id: points, or "pending" for manual grading not done}
    score: float
    max_score: float
    status: str
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    messages: dict = field(default_factory=dict)  # {grade_id: [public messages]}
    failed: dict = field(default_factory=dict)  # {grade_id: [names of its checks that failed]}
    seconds_late: float = None  # None: no due date, or no time known for the submission
    penalty: float = 0.0  # points off for late work, already taken from ``score``


def release_notebook(master):
    """The student version, as nbgrader generates it (what submissions are compared with)."""
    release = master.parent.parent.parent / "release" / master.parent.name / master.name
    return nbformat.read(release if release.exists() else master, as_version=4)


def run(submissions, assignment, out, *, course, force=False, lanes=None, roster=None, lms_grades=True, due=None,
        file_times=False, similarity_threshold=settings.SIMILARITY_THRESHOLD):
    """Grade everything in ``submissions``; write grades.csv, feedback/, report.html,
    similarity.html and the LMS's grade files in ``out``.

    ``due``: the due date to record in the gradebook first (else the gradebook's, if any);
    ``file_times``: a notebook's modification time is its submission time when its folder
    holds no timestamp.txt.

    ``lanes``: the warm executor, if the caller started it ahead (course.start_warm_lanes,
    after ``course.hide(submissions, out)``). ``roster``: a roster CSV file (intake/roster.py).
    ``lms_grades``: write the grade files for an LMS (not for Gradescope, which grades one
    submission per run and takes its results from the row)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    master = course.master(assignment)
    master_nb = nbformat.read(master, as_version=4)
    course.hide(submissions, out)
    if lanes is None:
        lanes = start_warm_lanes(course, assignment, force)
    # With the executor started (a first or forced run: everything will be graded), the
    # grading processes start too, and get ready while intake reads. A later run may find
    # nothing changed: it reads first and starts them only if needed.
    graders = pipeline.Graders(course, assignment, feedback=True, lanes=lanes) if lanes else None
    try:
        release_nb = release_notebook(master)
        found = intake.collect(submissions, assignment, release_nb,
                               roster=read_roster(roster) if roster else None, file_times=file_times)
        if not found:
            raise SystemExit(f"error: no submissions found in {submissions}")
        gradable = any(sub.notebook is not None for sub in found)
        course.work.mkdir(parents=True, exist_ok=True)  # the default gradebook's folder, a roster's names go there
        if gradable:
            # First, as the one run setting up a shared gradebook (pipeline.ensure_assignment).
            pipeline.ensure_assignment(course, assignment, [s.student_id for s in found if s.notebook is not None])
            due = lateness.due_date(course, assignment, record=due)
        to_grade, keys = [], {}
        for sub in found:
            if sub.notebook is None:
                continue
            folder = course.submitted_dir(assignment, sub.student_id)
            state = _state_file(course, assignment, sub.student_id)
            # A new due date or submission time changes the penalty: grade again.
            keys[sub.student_id] = {"sha256": sub.sha256, "submitted_at": _iso(sub.submitted_at), "due": _iso(due)}
            if not force and state.exists() and _unchanged(json.loads(state.read_text()), keys[sub.student_id]):
                continue  # graded before, unchanged
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            # Read back only by nbgrader: compact JSON, cheaper to write than nbformat.write's
            # (which checks it again and indents it with the slow, pure-Python encoder).
            (folder / master.name).write_text(json.dumps(sub.notebook, ensure_ascii=False), encoding="utf-8")
            if sub.submitted_at is not None:
                lateness.write_timestamp(folder, sub.submitted_at)
            to_grade.append(sub)
        if gradable:
            lateness.forget_times(course, assignment, [s.student_id for s in to_grade if s.submitted_at is None])
        log.info("%d submissions found, %d to grade (the others are unchanged or ungradable)",
                 len(found), len(to_grade))
        # What the students wrote is compared while they are graded (this process only waits
        # then); not before the grading processes are forked, which would inherit the thread.
        compared = _similarity_report(out, found, release_nb, assignment, similarity_threshold) if graders else None
        outcomes = _autograde(course, assignment, to_grade, graders, keys)
        # Grades are final: the grading processes may still be writing feedback pages,
        # while this one writes the grade table and the report.
        # With no notebook to read there may be no gradebook either.
        scores = pipeline.gradebook_scores(course, assignment) if gradable else {}
        late = lateness.lateness(course, assignment) if gradable and due is not None else {}
        rows = [_row(course, assignment, master, master_nb, sub, outcomes.get(sub.student_id),
                     scores.get(sub.student_id, {}), unanswered(sub.notebook, release_nb))
                for sub in found]
        for sub, row in zip(found, rows):
            if due is not None and sub.notebook is not None and not row.status.startswith("grading failed"):
                _late_work(row, sub, late.get(sub.student_id))
        if gradable:
            _refresh_feedback(course, assignment, found, to_grade, outcomes)
        reports.write_grades_csv(out / "grades.csv", rows, question_ids(master_nb))
        reports.write_report(out / "report.html", rows, question_ids(master_nb), assignment,
                             points=question_points(master_nb))
        # Someone not on the roster is in neither the gradebook nor the grades sent to the LMS.
        enrolled = [s for s in found if s.status != intake.NOT_ON_ROSTER]
        students.record(course, enrolled)
        if lms_grades:
            lms_export.write(course.config(), course.db_url, assignment, [s.student_id for s in enrolled], out)
        (compared or _similarity_report(out, found, release_nb, assignment, similarity_threshold)).result()
    finally:
        if graders is not None:
            graders.close()
    _copy_feedback_pages(course, assignment, master, found, rows, out / "feedback")
    return rows


def _refresh_feedback(course, assignment, found, to_grade, outcomes):
    """Write again the feedback pages of students graded before whose grades a person has
    changed since (a manual score, a comment); remember, for every page, what it shows."""
    marks = pipeline.grader_marks(course, assignment)
    graded_now = {s.student_id for s in to_grade if outcomes.get(s.student_id, {}).get("success")}
    states = {s.student_id: _state_file(course, assignment, s.student_id)
              for s in found if s.notebook is not None}
    stale = [student for student, state in states.items() if student not in graded_now and state.exists()
             and json.loads(state.read_text()).get("marks") != marks.get(student)]
    if stale:
        pipeline.write_feedback(course, assignment, stale)
    for student in graded_now.union(stale):
        state = json.loads(states[student].read_text())
        states[student].write_text(json.dumps({**state, "marks": marks.get(student)}))


def _similarity_report(out, found, release_nb, assignment, threshold):
    """Write similarity.html in a thread of this process; its future."""
    # Here, not at the top: the grading processes, forked before, need not inherit copydetect.
    # In this thread: its import puts stand-ins in sys.modules for a moment.
    from autograder.outputs import similarity

    def write():
        # Wanted only once all are graded: it takes the processor time grading leaves
        # (Linux sets a thread's own niceness by its thread id).
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SIMILARITY_NICENESS)
        similarity.write(out / "similarity.html", {s.student_id: s.notebook for s in found if s.notebook is not None},
                         release_nb, assignment, threshold)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="similarity")
    future = pool.submit(write)
    pool.shutdown(wait=False)  # the thread ends with its one task
    return future


def _copy_feedback_pages(course, assignment, master, found, rows, folder):
    """OUTDIR/feedback/<student>.html: nbgrader's feedback (hidden tests cleared, made by
    the grading processes), or, for what nbgrader could not grade, a page with the reason."""
    folder.mkdir(parents=True, exist_ok=True)
    for sub, row in zip(found, rows):
        page = folder / f"{sub.student_id}.html"
        produced = course.work / "feedback" / sub.student_id / assignment / f"{master.stem}.html"
        graded = sub.notebook is not None and not row.status.startswith("grading failed")
        if graded and produced.exists():
            shutil.copyfile(produced, page)
            reports.add_notes_to_feedback(page, row)
        else:
            reports.write_plain_feedback(page, row, master.name, graded=graded)


def _state_file(course, assignment, student):
    """What the grader remembers of a student's graded submission (STATE_FILE)."""
    return course.autograded_dir(assignment, student) / STATE_FILE


def _iso(when):
    return when.isoformat() if when is not None else None


def _unchanged(state, key):
    return all(state.get(name) == value for name, value in key.items())


def _late_work(row, sub, late):
    """The penalty nbgrader gave a late submission, taken from its score, and a note saying
    how late it was (or that no one knows)."""
    if late is None or late.submitted_at is None:
        row.notes.append("no submission time known: not checked against the due date")
        return
    row.seconds_late = late.seconds_late
    if not late.seconds_late:
        return
    row.penalty = min(late.penalty, row.score)
    row.score -= row.penalty
    source = f", {sub.time_source}" if sub.time_source else ""
    row.notes.append(f"handed in {reports.duration(late.seconds_late)} late ({late.submitted_at:%Y-%m-%d %H:%M} "
                     f"UTC{source}; due {late.due:%Y-%m-%d %H:%M} UTC): "
                     + (f"{row.penalty:g} points off for late work" if row.penalty else "no points off"))


def _autograde(course, assignment, subs, graders, keys):
    if not subs:
        return {}
    interactive = sys.stderr.isatty()
    bar = tqdm(total=len(subs), desc="grading", unit="nb", disable=not interactive)

    finished = []

    def progress(student, result):
        bar.update(1)
        finished.append(student)
        if not interactive:
            log.info("graded %s (%d/%d)%s", student, len(finished), len(subs), "" if result["success"] else ": FAILED")
        if result["success"]:
            state = _state_file(course, assignment, student)
            state.write_text(json.dumps({**keys[student], "seconds": round(result["seconds"], 4)}))

    try:
        return pipeline.autograde(course, assignment, [s.student_id for s in subs], progress, feedback=True,
                                  graders=graders)
    finally:
        bar.close()


def question_ids(master):
    """Grade ids of the questions (cells with points), in notebook order."""
    master_nb = master if isinstance(master, nbformat.NotebookNode) else nbformat.read(master, as_version=4)
    return [c.metadata.nbgrader["grade_id"] for c in master_nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and "points" in c.metadata.nbgrader]


def question_points(master_nb):
    """{grade id: points} of the questions."""
    questions = question_ids(master_nb)
    return {c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader["points"])
            for c in master_nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") in questions}


UNANSWERED = "not answered"
# What a check says of an answer cell left as released: its stub raised this.
STUB_RAISED = "NotImplementedError"


def unanswered(nb, release_nb):
    """Grade ids of the answer cells of ``nb`` left exactly as the release has them."""
    if nb is None:
        return set()
    released = {c.metadata.nbgrader["grade_id"]: c.source for c in release_nb.cells
                if c.metadata.get("nbgrader", {}).get("solution")}
    return {c.metadata.nbgrader["grade_id"] for c in nb.cells
            if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") in released
            and c.source == released[c.metadata.nbgrader["grade_id"]]}


def _row(course, assignment, master, master_nb, sub, outcome, grades, untouched=frozenset()):
    """The student's row; ``untouched``: answer cells left as released, which read "not answered"."""
    questions = question_ids(master_nb)
    max_score = sum(question_points(master_nb).values())
    row = StudentRow(sub.student_id, assignment, {q: 0.0 for q in questions}, 0.0, max_score,
                     sub.status or "graded", list(sub.notes))
    if sub.notebook is None:
        return row
    if outcome is not None and not outcome["success"]:
        error = (outcome.get("error") or "").strip().splitlines()
        row.status = f"grading failed: {error[-1] if error else 'unknown error'}"
        return row
    if not grades:
        row.status = "grading failed: no grades in the gradebook"
        return row
    statuses = []
    for gid in questions:
        grade = grades.get(gid)
        if grade is None:
            continue
        row.questions[gid] = "pending" if grade.needs_manual and not grade.auto else grade.score
    row.score = sum(v for v in row.questions.values() if v != "pending")
    graded = course.autograded_dir(assignment, sub.student_id) / master.name
    if graded.exists():  # written by nbgrader, which validated it: plain JSON will do
        nb = json.loads(graded.read_text())
        run = graded_metadata.run_of(nb)
        row.seconds = float(run.get("seconds", 0.0))
        row.notes.extend(run.get("notes", []))
        if run.get("tampering"):
            statuses.append(TAMPERING)
            row.notes.append(f"{TAMPERING}: " + "; ".join(run["tampering"]))
        for index, cell in enumerate(nb["cells"]):
            meta = graded_metadata.cell_of(cell)
            gid = cell["metadata"].get("nbgrader", {}).get("grade_id", f"cell {index + 1}")
            problem = PROBLEM_STATUSES.get(meta.get("status"))
            error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
            if problem:
                statuses.append(problem)
                detail = error.get("evalue") if error else ""
                row.notes.append(f"{gid}: {problem}" + (f" ({detail})" if detail else ""))
            elif gid in untouched:
                row.notes.append(f"{gid}: {UNANSWERED}")
            elif error and "verdict" not in meta:  # an answer cell that raised (sys.exit() included)
                row.notes.append(f"{gid}: raised {error.get('ename')}: {error.get('evalue')}")
            verdict = meta.get("verdict")
            if verdict and not verdict["passed"]:
                row.messages[gid] = verdict["messages"]
                row.failed[gid] = verdict["failed"]
                stubbed = untouched and verdict["messages"] and all(STUB_RAISED in m for m in verdict["messages"])
                row.notes.append(f"{gid}: {UNANSWERED}" if stubbed else reports.verdict_note(gid, verdict["messages"]))
    if any(v == "pending" for v in row.questions.values()):
        statuses.append("needs manual grading")
    if statuses:
        row.status = "; ".join(dict.fromkeys(statuses))
    return row

