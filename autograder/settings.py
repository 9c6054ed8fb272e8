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
# The students' hand-out: what their notebooks and check helper import, and JupyterLab. Their
# requirements.txt pins these, and every other package of the course's pins they pull in.
STUDENT_PACKAGES = ("torch", "numpy", "matplotlib", "jupyterlab", "ipykernel", "ipython", "nbformat", "nbclient")
