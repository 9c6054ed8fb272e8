"""Grading for the parameter-management course: intake -> sandboxed execution -> scoring -> reports."""
