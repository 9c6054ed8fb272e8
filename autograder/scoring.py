"""Judging test cells from recorded observations, in the grader's own process.

A test cell's trusted source (the master's, restored by nbgrader) states its checks as
``check(name, observe, expect=..., same=..., tol=..., hint=...)``. Before the cell runs
in the student's process the criteria are cut out (``strip_criteria``); afterwards the
observations it recorded are compared with the criteria read here (``judge_cell``), and
the cell's outputs are replaced by the verdict: one line per check, public checks with
what was expected and found, hidden checks with only their name and pass/fail.
"""
import ast
from dataclasses import dataclass, field

from autograder import nbcheck

CRITERIA = ("expect", "same", "tol")
PRIVATE = CRITERIA + ("hint",)  # never sent into the student's process
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


@dataclass(frozen=True)
class CheckSpec:
    name: str
    criteria: dict
    hint: str
    hidden: bool


@dataclass
class CellVerdict:
    passed: bool
    lines: list = field(default_factory=list)
    failed: list = field(default_factory=list)  # names of failed checks (hidden ones included)
    public_messages: list = field(default_factory=list)


class TestCellError(ValueError):
    """A test cell that does not follow the check convention (a fault of the master)."""


def _check_calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name == "check":
                yield node


def _hidden_lines(source):
    hidden, inside = set(), False
    for number, line in enumerate(source.splitlines(), start=1):
        if line.strip() == HIDDEN_BEGIN:
            inside = True
        elif line.strip() == HIDDEN_END:
            inside = False
        elif inside:
            hidden.add(number)
    return hidden


def parse_checks(source):
    """The checks a test cell states, in order, with their criteria read as literals."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise TestCellError(f"test cell is not valid Python: {exc}") from exc
    hidden = _hidden_lines(source)
    specs = []
    for call in _check_calls(tree):
        if not call.args or not isinstance(call.args[0], ast.Constant) or not isinstance(call.args[0].value, str):
            raise TestCellError(f"line {call.lineno}: a check's name must be a string literal")
        try:
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg in PRIVATE}
        except ValueError as exc:
            raise TestCellError(f"line {call.lineno}: criteria must be literals ({exc})") from exc
        specs.append(CheckSpec(name=call.args[0].value,
                               criteria={k: kwargs[k] for k in CRITERIA if k in kwargs},
                               hint=kwargs.get("hint", ""), hidden=call.lineno in hidden))
    return specs


def strip_criteria(source):
    """The test cell as the student's process may see it: criteria and hints removed."""
    tree = ast.parse(source)
    for call in _check_calls(tree):
        call.keywords = [kw for kw in call.keywords if kw.arg not in PRIVATE]
    return ast.unparse(tree)


def recorded_observations(outputs):
    """{check name: (value, error)} from a cell's outputs; the first record of a name wins."""
    found = {}
    for output in outputs:
        data = output.get("data", {}) if output.get("output_type") == "display_data" else {}
        record = data.get(nbcheck.OBSERVATION_MIME)
        if isinstance(record, dict) and isinstance(record.get("name"), str):
            found.setdefault(record["name"], (record.get("value"), record.get("error")))
    return found


def _cell_problem(outputs, status):
    if status and status not in ("ok", "error"):
        return {"timeout": "the cell ran out of time", "memory": "the cell ran out of memory",
                "crashed": "the process running the cell died", "not run": "the cell was not run"}.get(status, status)
    errors = [o for o in outputs if o.get("output_type") == "error"]
    if errors:
        return f"{errors[-1].get('ename')}: {str(errors[-1].get('evalue'))[:200]}"
    return None


def judge_cell(source, outputs, status="ok"):
    """Verdict of one executed test cell, from its trusted source and recorded outputs."""
    specs = parse_checks(source)
    if not specs:
        raise TestCellError("test cell states no check")
    seen = recorded_observations(outputs)
    problem = _cell_problem(outputs, status)
    verdict = CellVerdict(passed=True)
    for spec in specs:
        label = f"hidden test {spec.name}" if spec.hidden else spec.name
        if spec.name not in seen:
            ok, reason = False, "did not run" + (f" ({problem})" if problem else "")
        else:
            value, error = seen[spec.name]
            if error is not None:
                ok, reason = False, f"could not look at your answer: {error}"
            else:
                ok, reason = nbcheck.judge(value, **spec.criteria)
        if ok:
            verdict.lines.append(f"[pass] {label}")
            continue
        verdict.passed = False
        verdict.failed.append(spec.name)
        if spec.hidden:
            verdict.lines.append(f"[fail] {label}")
        else:
            message = f"{spec.name}: {reason}" + (f" Hint: {spec.hint}" if spec.hint else "")
            verdict.public_messages.append(message)
            verdict.lines.append(f"[fail] {message}")
    return verdict


def verdict_outputs(verdict):
    """nbformat outputs that show the verdict; an error output makes nbgrader score 0."""
    outputs = [{"output_type": "stream", "name": "stdout", "text": "\n".join(verdict.lines) + "\n"}]
    if not verdict.passed:
        outputs.append({"output_type": "error", "ename": "ChecksFailed",
                        "evalue": f"{len(verdict.failed)} of {len(verdict.lines)} checks failed",
                        "traceback": [line for line in verdict.lines if line.startswith("[fail]")]})
    return outputs
