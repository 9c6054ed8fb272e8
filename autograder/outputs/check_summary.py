"""The checks that failed most, with what they most often found, from the grade rows:
where the report tells the next lecture to start."""
from collections import Counter
from dataclasses import dataclass


@dataclass
class FailedCheck:
    question: str
    check: str
    students: int  # how many failed it
    outcome: str  # its commonest reason (what it found, or the error); "" for a hidden check
    outcome_students: int  # how many failed it for that reason


def most_failed(rows, limit):
    """The ``limit`` checks most students failed, most first (ties in the order met)."""
    students, outcomes = Counter(), {}
    for row in rows:
        for question, checks in row.failed.items():
            messages = row.messages.get(question, [])
            for check in checks:
                students[question, check] += 1
                outcome = _outcome(check, messages)
                if outcome:
                    outcomes.setdefault((question, check), Counter())[outcome] += 1
    found = []
    for (question, check), count in students.most_common(limit):
        outcome, times = (outcomes.get((question, check)) or Counter({"": 0})).most_common(1)[0]
        found.append(FailedCheck(question, check, count, outcome, times))
    return found


def _outcome(check, messages):
    """A public check's reason from its message, "<check>: <reason>[ Hint: <hint>]" (the hint,
    the same for everyone, comes last); hidden checks have none."""
    for message in messages:
        if message.startswith(f"{check}: "):
            reason = message[len(check) + 2:]
            return reason.rpartition(" Hint: ")[0] or reason
    return ""

