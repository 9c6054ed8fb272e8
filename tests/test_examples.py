"""The example submissions `make demo` grades are generated, and in sync with the masters."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("build_submissions", ROOT / "examples" / "build_submissions.py")
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)


def test_example_submissions_match_a_fresh_build():
    for assignment in sorted(p.name for p in (ROOT / "source").iterdir() if p.is_dir()):
        folder = build.OUT / assignment
        expected = build.submissions(assignment)
        assert sorted(p.name for p in folder.iterdir()) == sorted(expected), assignment
        for name, text in expected.items():
            assert (folder / name).read_text() == text, f"{assignment}/{name}: run examples/build_submissions.py"
