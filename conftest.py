"""pytest configuration shared by the whole suite, nbval's included.

A plain `pytest` re-executes every lesson in notebooks/ with nbval in strict mode
(outputs compared), so what a student reads is exactly what the code prints.
"""
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# Only these parts of an output may differ between two runs; each regex is replaced
# by a fixed token before nbval compares a fresh output with the committed one.
NBVAL_SANITIZE = {
    # CPython object addresses, e.g. "<function f at 0x7f3a2c1b5e50>"
    r"0x[0-9a-fA-F]{6,16}": "0xADDRESS",
    # wall-clock timings a lesson may print, e.g. "took 0.0123 s"
    r"\b\d+\.\d+ ?(?:s|ms|µs)\b": "TIME",
}

# Notebooks outside the lessons are data (test fixtures, student copies, masters);
# they are graded by the test suite, not re-executed by nbval.
collect_ignore_glob = ["source/*", "release/*", "tests/*.ipynb", "submitted/*", "autograded/*",
                       "feedback/*", "bench/*", "out/*", ".venv/*", "dist/*"]


def pytest_configure(config):
    if getattr(config.option, "nbval_sanitize_with", "unset") is None:
        patterns = "".join(f"[{i}]\nregex: {rx}\nreplace: {rep}\n\n"
                           for i, (rx, rep) in enumerate(NBVAL_SANITIZE.items()))
        folder = tempfile.mkdtemp(prefix="nbval-")
        (Path(folder) / "sanitize.cfg").write_text(patterns)
        config.option.nbval_sanitize_with = str(Path(folder) / "sanitize.cfg")
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
