"""``python -m autograder check NOTEBOOK``: a student's own run of the public tests.

The notebook runs in the same executor as grading, and is judged by the same code
(``nbcheck.report``) that ``check_notebook`` uses from a JupyterLab cell.
"""
from pathlib import Path

from autograder import graded_metadata
from autograder import intake
from autograder.scoring import nbcheck
from autograder import settings
from autograder.execution import WarmPool
from autograder.scoring.nbcheck import is_test_cell
from autograder.nbgrader_ext import support_files
from autograder.execution.sandbox import Limits


def main(notebook, timeout=settings.TIMEOUT):
    path = Path(notebook)
    if not path.is_file():
        print(f"error: no such notebook: {path}")
        return 2
    nb, notes, status = intake.read_notebook(path)
    if nb is None:
        print(f"error: {path} cannot be checked: {status}")
        return 2
    code = [c for c in nb.cells if c.cell_type == "code"]
    tests = [i for i, cell in enumerate(code) if is_test_cell(cell)]
    pool = WarmPool(1, hidden=[])
    try:
        run = pool.submit([c.source for c in code], support_files(path.parent), Limits(timeout=timeout),
                          tests=tests).result()
    finally:
        pool.close()
    taken = {}
    for cell, result in zip(code, run.cells):
        cell.outputs = result["outputs"]
        graded_metadata.write_cell(cell, result, result.get("observations", {}) if is_test_cell(cell) else None)
        taken[id(cell)] = (result["status"], graded_metadata.take_observations(cell))
    text, verdicts = nbcheck.report(nb, path.name, lambda cell: taken[id(cell)])
    print(text)
    for note in notes + run.notes:
        print(f"note: {note}")
    return 0 if all(verdict.passed for verdict in verdicts) else 1
