"""Every default of a grading run, in one place.

Which value wins: a flag on the command line, then the course's ``nbgrader_config.py``
(``c.ExecuteSandboxed.timeout``, ``c.ExecuteSandboxed.memory_mb``), then these.
"""
from autograder.scoring.nbcheck import CELL_TIMEOUT

TIMEOUT = CELL_TIMEOUT  # seconds a cell may run (held by nbcheck.py, which ships alone to students)
MEMORY_MB = 2048  # memory a submission may add to the warm process
FILE_MB = 64  # largest file a submission may write
PROCESSES = 64  # processes a submission's user may own
SCRATCH_MB = 256  # what a submission may store in its folder and its /dev/shm, together
SCRATCH_FILES = 4096  # files and folders it may make there
CPUS = 1.0  # processor cores a submission's processes may keep busy together (cgroup)
JOBS = 0  # grading processes; 0: one per core
HIDDEN_VISIBILITY = "after_published"  # Gradescope: when students see the hidden tests' results
VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
REPORT_TOP = 10  # rows of the report's lists of the checks that failed most and the slowest submissions
# Late work: the course's policy (nbgrader_ext/late_policy.py, which nbgrader's AssignLatePenalties
# calls); a course changes it with c.LatePolicy.<name> in its nbgrader_config.py.
LATE_PERCENT = 10.0  # % of the score taken off for each day (or hour) late, a period begun counting whole
LATE_PER = "day"  # "day" or "hour"
LATE_GRACE_HOURS = 1.0  # a submission at most this late loses nothing
LATE_CAP_PERCENT = 50.0  # never more than this % off...
LATE_ZERO_AFTER_DAYS = 7.0  # ...unless later than this: a score of zero (0: never)
# Similar answers (similarity.html): the share of two answers that must match for the pair
# to be listed; the length of a fingerprint, in characters of code with names, comments and
# spacing removed (about a statement); the shortest answer compared (shorter, as a one-line
# `return sum(...)`, copying cannot be told from coincidence); a passage in more answers
# than this is what many students write on their own, not a sign of copying.
SIMILARITY_THRESHOLD = 0.75
SIMILARITY_KGRAM = 20
SIMILARITY_MIN_CHARS = 30
SIMILARITY_MAX_SHARED = 10
PARTIAL_CREDIT = True  # a test cell's points are shared among its checks (c.JudgeChecks.partial_credit)
# The students' hand-out: what their notebooks and check helper import, and JupyterLab. Their
# requirements.txt pins these, and every other package of the course's pins they pull in.
STUDENT_PACKAGES = ("torch", "numpy", "matplotlib", "jupyterlab", "ipykernel", "ipython", "nbformat", "nbclient")
