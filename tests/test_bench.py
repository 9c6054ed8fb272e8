"""The speed bench, small: stock nbgrader and our grader give identical scores (no timing asserted)."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("bench", ROOT / "bench" / "bench.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_mix_has_every_kind_of_submission():
    kinds = [kind for _, kind, _ in bench.build_mix("param_access", 4)]
    assert sorted(kinds) == ["broken", "correct", "loop", "partly wrong"]


def test_stock_nbgrader_and_ours_give_identical_scores(capsys):
    assert bench.main(["--n", "4", "--timeout", "3", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    assert "scores identical: 24 question grades over 4 submissions, in each run" in out
    assert "speed-up:" in out and "runs of ours: " in out and "(median of 2 runs)" in out


def test_a_score_difference_is_reported():
    stock = bench.Outcome(1.0, {}, {"s1": {"q1": 2.0, "q2": 2.0}}, 0, 0)
    ours = bench.Outcome(1.0, {}, {"s1": {"q1": 2.0, "q2": 0.0}}, 0, 0)
    assert bench.differences(stock, ours, ["s1"]) == ["s1 q2: stock 2.0, ours 0.0"]
    assert bench.differences(stock, ours, ["s1", "s2"])[-1] == "s2: no grades from stock"
