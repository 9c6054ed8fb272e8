"""Command line: ``python -m autograder {grade,check,gradescope,handout} ...``; it only wires the stages."""
import argparse
import atexit
import logging
import os
import re
import sys
import zipfile
from datetime import datetime
from pathlib import Path

from autograder import settings


def positive(kind):
    """An argparse type: a number above zero."""
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value
    return parse


SETTING = re.compile(r"[A-Za-z_]\w*\.[A-Za-z_]\w*=.*", re.S)  # --set: a trait of a configurable class


def due_date(text):
    """``--due``: ISO 8601 with a time zone (a date without one would mean another moment
    on every machine); ValueError otherwise."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError("no time zone")
    return when


def usage_problem(args):
    """What is wrong with the command line that argparse cannot see (None when nothing): one
    line for the user, found before anything is created."""
    from autograder.grading.course import REPO_ROOT
    course = Path(getattr(args, "course", None) or REPO_ROOT)
    assignment = getattr(args, "assignment", None)
    if not (course / "source").is_dir():
        return f"{course} is not a course directory (it has no source/ folder)"
    known = sorted(p.name for p in (course / "source").iterdir() if p.is_dir())
    if assignment is not None and assignment not in known:
        return f"no assignment {assignment!r} in {course / 'source'}; there are: {', '.join(known)}"
    if args.command == "grade":
        submissions = Path(args.submissions)
        if not submissions.exists():
            return f"no such file or folder: {submissions}"
        if submissions.is_file() and submissions.suffix.lower() != ".ipynb" and not zipfile.is_zipfile(submissions):
            return f"{submissions} is neither a folder, a notebook nor a .zip file"
        if Path(args.out).exists() and not Path(args.out).is_dir():
            return f"--out {args.out} is a file, not a folder"
        if args.roster:
            from autograder.intake.roster import RosterError, read_roster
            try:
                read_roster(args.roster)
            except RosterError as exc:
                return str(exc)
        if args.due is not None:
            try:
                due_date(args.due)
            except ValueError:
                return (f"--due {args.due!r} is not an ISO 8601 date and time with a time zone "
                        "(e.g. 2025-03-01T23:59+01:00)")
        for setting in args.set:
            if not SETTING.fullmatch(setting):
                return f"--set {setting}: write it as CLASS.TRAIT=VALUE, e.g. JudgeChecks.partial_credit=False"
    if args.command == "handout":
        from autograder.outputs import handout
        return handout.problem(args.out, course)
    if args.command == "check" and not (Path(args.notebook).is_file() and args.notebook.endswith(".ipynb")):
        return f"no such notebook: {args.notebook}"
    return None


class OneLineParser(argparse.ArgumentParser):
    """A mistake on the command line is one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message):
        self.exit(2, f"error: {message}\n")


def main(argv=None):
    parser = OneLineParser(prog="python -m autograder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    grade = commands.add_parser("grade", help="grade a folder (or .zip) of submissions, or one notebook")
    grade.add_argument("submissions", help="folder of <student>.ipynb, of <student>/ folders, "
                                           "an nbgrader submitted/ tree, a Canvas or Moodle download, a .zip "
                                           "of one of these, or one notebook")
    grade.add_argument("--assignment", required=True, help="assignment name (a folder of source/)")
    grade.add_argument("--out", required=True, help="folder for grades.csv, feedback/, report.html, "
                                                        "canvas_grades.csv and lms_grades.csv")
    grade.add_argument("--work", help="folder for nbgrader's submitted/, autograded/, feedback/ and the "
                                      "gradebook (default: the course directory)")
    grade.add_argument("--db", help="gradebook SQLAlchemy URL (default: sqlite gradebook.db in the course)")
    limits = ("(default: the course's nbgrader_config.py, else {})").format
    grade.add_argument("--timeout", type=positive(float), help="seconds per cell " + limits(settings.TIMEOUT))
    grade.add_argument("--memory", type=positive(int), help="MiB a submission may allocate "
                                                            + limits(settings.MEMORY_MB))
    grade.add_argument("--jobs", type=int, default=settings.JOBS, help="parallel executors (default: one per core)")
    grade.add_argument("--executor", choices=["fork", "kernel"], default="fork",
                       help="fork: warm sandboxed processes (default); kernel: a Jupyter kernel per notebook")
    grade.add_argument("--similarity-threshold", type=positive(float), default=settings.SIMILARITY_THRESHOLD,
                       help="share of two answers that must match for similarity.html to list them "
                            f"(default {settings.SIMILARITY_THRESHOLD:g})")
    grade.add_argument("--force", action="store_true", help="grade again even unchanged submissions")
    grade.add_argument("--course", default=None, help="course directory (default: this repository)")
    grade.add_argument("--roster", help="CSV file with the columns lms_id[,student_id,name]: the course's "
                                        "students and their ids in the LMS")
    grade.add_argument("--due", help="due date, ISO 8601 with a time zone, recorded in the gradebook "
                                     "(default: the gradebook's, if any); late work loses points")
    grade.add_argument("--file-times", action="store_true",
                       help="a notebook's modification time is its submission time when there is no timestamp.txt")
    grade.add_argument("--set", action="append", default=[], metavar="CLASS.TRAIT=VALUE",
                       help="a setting of nbgrader_config.py for this run only, e.g. "
                            "JudgeChecks.partial_credit=False (repeatable)")

    check = commands.add_parser("check", help="run a notebook's public tests, as a student")
    check.add_argument("notebook")
    check.add_argument("--timeout", type=positive(float), default=settings.TIMEOUT,
                       help=f"seconds per cell (default {settings.TIMEOUT:g})")

    bundle = commands.add_parser("gradescope", help="build a Gradescope autograder bundle")
    bundle.add_argument("--assignment", required=True)
    bundle.add_argument("-o", "--output", default="autograder.zip")
    bundle.add_argument("--hidden-visibility", default=settings.HIDDEN_VISIBILITY, choices=settings.VISIBILITIES)
    bundle.add_argument("--timeout", type=positive(float), help="seconds per cell " + limits(settings.TIMEOUT))
    bundle.add_argument("--memory", type=positive(int), help="MiB a submission may allocate "
                                                             + limits(settings.MEMORY_MB))

    handout = commands.add_parser("handout", help="write the students' hand-out: lessons, release/, "
                                                  "their requirements and README")
    handout.add_argument("--out", required=True, help="a missing or empty folder")

    args = parser.parse_args(argv)
    if args.command == "grade" and args.jobs < 0:
        parser.exit(2, f"error: --jobs must be 0 (one per core) or more, not {args.jobs}\n")
    if args.command == "grade" and args.similarity_threshold > 1:
        parser.exit(2, f"error: --similarity-threshold is a share, at most 1, not {args.similarity_threshold:g}\n")
    problem = usage_problem(args)
    if problem:
        parser.exit(2, f"error: {problem}\n")
    # Our progress lines at INFO; nbgrader's own chatter only when it warns.
    logging.basicConfig(level=logging.ERROR, format="%(message)s", stream=sys.stderr)
    logging.getLogger("autograder").setLevel(logging.INFO)

    if args.command == "grade":
        from autograder.grading.course import REPO_ROOT, Course, start_warm_lanes
        course = Course(root=args.course or REPO_ROOT, work=args.work, db_url=args.db, timeout=args.timeout,
                        memory_mb=args.memory, jobs=args.jobs, executor=args.executor, overrides=args.set)
        course.hide(args.submissions, args.out)
        # The warm executor imports torch while this process imports nbgrader below.
        lanes = start_warm_lanes(course, args.assignment, args.force)
        from autograder.grading import grade as grading
        from autograder.outputs import reports
        rows = grading.run(args.submissions, args.assignment, args.out, course=course, force=args.force,
                           lanes=lanes, roster=args.roster, due=due_date(args.due) if args.due else None,
                           file_times=args.file_times, similarity_threshold=args.similarity_threshold)
        print(reports.grade_table(rows, grading.question_ids(course.master(args.assignment))))
        out = Path(args.out)
        print(f"\nwrote {out / 'grades.csv'}, {out / 'report.html'}, {out / 'similarity.html'}, "
              f"{out / 'canvas_grades.csv'}, {out / 'lms_grades.csv'} "
              f"and {len(rows)} feedback pages in {out / 'feedback'}")
        return 0
    if args.command == "check":
        from autograder.grading import check as checking
        return checking.main(args.notebook, timeout=args.timeout)
    if args.command == "gradescope":
        from autograder.outputs import gradescope
        gradescope.build(args.assignment, args.output, hidden_visibility=args.hidden_visibility,
                         timeout=args.timeout, memory_mb=args.memory)
        return 0
    if args.command == "handout":
        from autograder.outputs import handout
        print(f"wrote {handout.build(args.out)}")
        return 0


def leave(status):
    """End the process with ``status`` once its exit handlers have run and its output is
    flushed, without tearing the interpreter down: freeing, one by one, every object of
    nbgrader, SQLAlchemy and the notebooks read takes about 0.3 s and writes nothing."""
    atexit._run_exitfuncs()  # what interpreter shutdown would run first (temporary folders, logging)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: the shutdown would lose the output too
            pass
    os._exit(status or 0)


if __name__ == "__main__":
    leave(main())
