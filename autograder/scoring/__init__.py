"""Judging test cells from recorded observations, in the grader's own process.

A test cell's trusted source (the master's, restored by nbgrader) states its checks as
``check(name, observe, expect=..., same=..., tol=..., hint=...)``. Before the cell runs
in the student's process the criteria are cut out (``strip_criteria``); afterwards the
observations it recorded are compared with the criteria (``judge_cell``), and the
cell's outputs are replaced by the verdict: one line per check, public checks with what
was expected and found, hidden checks with only their name and pass/fail, each with its
share of the cell's points. The reading and judging live in nbcheck.py, which also ships
to students for their own checks.
"""
from autograder.scoring.nbcheck import (CellVerdict, TestCellError, judge_cell, parse_checks,  # noqa: F401 (re-exported)
                               points_text, recorded_observations, strip_criteria)


def verdict_outputs(verdict):
    """nbformat outputs that show the verdict and give nbgrader the cell's score: an error
    output scores 0, and a cell that earned part of its points ends with it as a result,
    nbgrader's own way of giving partial credit (the exact number, which it reads back)."""
    outputs = [{"output_type": "stream", "name": "stdout", "text": "\n".join(verdict.lines) + "\n"}]
    if verdict.passed:
        return outputs
    if verdict.score:  # pages show the markdown, rounded; nbgrader reads the plain text
        outputs.append({"output_type": "execute_result", "execution_count": None, "metadata": {},
                        "data": {"text/plain": repr(verdict.score),
                                 "text/markdown": f"Points earned: {points_text(verdict.score)}"}})
        return outputs
    outputs.append({"output_type": "error", "ename": "ChecksFailed",
                    "evalue": f"{len(verdict.failed)} of {len(verdict.lines)} checks failed",
                    "traceback": [line for line in verdict.lines if line.startswith("[fail]")]})
    return outputs
