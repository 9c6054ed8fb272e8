"""The instructor's report: its charts are HTML bars drawn from the grade rows."""
import re

from autograder.outputs import reports
from autograder.grading.grade import StudentRow


def test_report_charts_count_students_and_full_marks(tmp_path):
    scores = [0.0, 1.0, 1.0, 2.0, 2.0, 2.0]  # q1 out of 2; q2 always full, q3 pending for one
    rows = [StudentRow(f"s{i}", "demo", {"q1": s, "q2": 1.0, "q3": "pending" if i == 0 else 3.0}, s + 4.0, 6.0,
                       "graded") for i, s in enumerate(scores)]
    reports.write_report(tmp_path / "report.html", rows, ["q1", "q2", "q3"], "demo",
                         points={"q1": 2.0, "q2": 1.0, "q3": 3.0})
    page = (tmp_path / "report.html").read_text()
    counts = [int(n) for n in re.findall(r"title='[^']*: (\d+) students'", page)]
    # Six bins of one point over 0..6; the last one holds its upper edge (5 and 6 points).
    assert counts == [0, 0, 0, 0, 1, 5]
    questions = re.findall(r"<tr><td>(q\d)</td><td class='bar'>.*?<td>(\d+)%</td><td>([\d.]+) / \d+</td>"
                           r"<td>(.*?)</td></tr>", page)
    # A pending answer is neither passed nor failed: q3 is full for everyone graded on it.
    assert questions == [("q1", "50", "1.33", ""), ("q2", "100", "1.00", ""), ("q3", "100", "3.00", "1 pending")]
    ticks = re.findall(r"<span style='left:[\d.]+%'>(\d+)</span>", page)
    assert ticks == ["0", "1", "2", "3", "4", "5", "6"]  # the score axis is labelled every point
    assert "<img" not in page
