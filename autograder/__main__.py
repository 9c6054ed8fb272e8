"""Command line: ``python -m autograder {grade,check,gradescope} ...``; it only wires the stages."""
import argparse
import logging
import sys
from pathlib import Path

from autograder import settings


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    grade = commands.add_parser("grade", help="grade a folder (or .zip) of submissions")
    grade.add_argument("submissions", help="folder of <student>.ipynb, of <student>/ folders, "
                                           "an nbgrader submitted/ tree, or a .zip of one of these")
    grade.add_argument("--assignment", required=True, help="assignment name (a folder of source/)")
    grade.add_argument("--out", required=True, help="folder for grades.csv, feedback/ and report.html")
    grade.add_argument("--work", help="folder for nbgrader's submitted/, autograded/, feedback/ and the "
                                      "gradebook (default: the course directory)")
    grade.add_argument("--db", help="gradebook SQLAlchemy URL (default: sqlite gradebook.db in the course)")
    limits = ("(default: the course's nbgrader_config.py, else {})").format
    grade.add_argument("--timeout", type=float, help="seconds per cell " + limits(settings.TIMEOUT))
    grade.add_argument("--memory", type=int, help="MiB a submission may allocate " + limits(settings.MEMORY_MB))
    grade.add_argument("--jobs", type=int, default=settings.JOBS, help="parallel executors (default: one per core)")
    grade.add_argument("--executor", choices=["fork", "kernel"], default="fork",
                       help="fork: warm sandboxed processes (default); kernel: a Jupyter kernel per notebook")
    grade.add_argument("--force", action="store_true", help="grade again even unchanged submissions")
    grade.add_argument("--course", default=None, help="course directory (default: this repository)")

    check = commands.add_parser("check", help="run a notebook's public tests, as a student")
    check.add_argument("notebook")
    check.add_argument("--timeout", type=float, default=settings.TIMEOUT,
                       help=f"seconds per cell (default {settings.TIMEOUT:g})")

    bundle = commands.add_parser("gradescope", help="build a Gradescope autograder bundle")
    bundle.add_argument("--assignment", required=True)
    bundle.add_argument("-o", "--output", default="autograder.zip")
    bundle.add_argument("--hidden-visibility", default=settings.HIDDEN_VISIBILITY, choices=settings.VISIBILITIES)
    bundle.add_argument("--timeout", type=float, help="seconds per cell " + limits(settings.TIMEOUT))
    bundle.add_argument("--memory", type=int, help="MiB a submission may allocate " + limits(settings.MEMORY_MB))

    args = parser.parse_args(argv)
    # Our progress lines at INFO; nbgrader's own chatter only when it warns.
    logging.basicConfig(level=logging.ERROR, format="%(message)s", stream=sys.stderr)
    logging.getLogger("autograder").setLevel(logging.INFO)

    if args.command == "grade":
        from autograder.grading.course import REPO_ROOT, Course, start_warm_lanes
        course = Course(root=args.course or REPO_ROOT, work=args.work, db_url=args.db, timeout=args.timeout,
                        memory_mb=args.memory, jobs=args.jobs, executor=args.executor)
        course.hide(args.submissions, args.out)
        # The warm executor imports torch while this process imports nbgrader below.
        lanes = start_warm_lanes(course, args.assignment, args.force)
        from autograder.grading import grade as grading
        from autograder.outputs import reports
        rows = grading.run(args.submissions, args.assignment, args.out, course=course, force=args.force,
                           lanes=lanes)
        print(reports.grade_table(rows, grading.question_ids(course.master(args.assignment))))
        print(f"\nwrote {Path(args.out) / 'grades.csv'}, {Path(args.out) / 'report.html'} "
              f"and {len(rows)} feedback pages in {Path(args.out) / 'feedback'}")
        return 0
    if args.command == "check":
        from autograder.grading import check as checking
        return checking.main(args.notebook, timeout=args.timeout)
    if args.command == "gradescope":
        from autograder.outputs import gradescope
        gradescope.build(args.assignment, args.output, hidden_visibility=args.hidden_visibility,
                         timeout=args.timeout, memory_mb=args.memory)
        return 0


if __name__ == "__main__":
    sys.exit(main())
