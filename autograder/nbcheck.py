"""Checks for exercise notebooks: one call per fact a test wants to know.

A test cell states each check as ``check(name, observe, expect=..., same=..., hint=...)``:
``observe`` is a zero-argument callable that looks at the student's objects and
returns plain data (tensors, shapes and tuples become lists).

Two modes, chosen by the NBCHECK_MODE environment variable at call time:

* ``judge`` (default, a student running the cell in JupyterLab): the observation is
  compared with the criteria right here and a failure raises ``CheckFailed`` that says
  what was expected, what was found, and a hint.
* ``record`` (set by the autograder): the observation is only published as a
  display output of MIME type ``OBSERVATION_MIME``. The grader strips the criteria
  from the cell before the student's process sees it and judges the recorded data in
  its own process, so nothing the student's code patches can change a verdict.

This file ships beside each assignment's notebook (it is copied from the autograder
package); it holds no solution. The grader imports ``judge`` from the same file.
"""
import builtins
import math
import os

OBSERVATION_MIME = "application/vnd.nbcheck.observation+json"
_MISSING = object()

# Captured at import, before any student code runs in the grader's warm process,
# so later monkeypatching of builtins cannot change how observations are taken.
_isinstance = builtins.isinstance
_callable = builtins.callable
_repr = builtins.repr
_type = builtins.type


class CheckFailed(AssertionError):
    """A check found something other than what the exercise asks for."""


def to_plain(value, _depth=0):
    """Turn an observation into JSON-able data: lists, dicts with str keys, numbers, str, bool, None."""
    if _depth > 20:
        return {"__unsupported__": "nested too deeply"}
    if value is None or _type(value) in (bool, int, str):
        return value
    if _type(value) is float:
        return value if math.isfinite(value) else _repr(value)
    if _type(value) in (list, tuple):
        return [to_plain(v, _depth + 1) for v in value]
    if _type(value) is dict:
        return {str(k): to_plain(v, _depth + 1) for k, v in value.items()}
    torch = _torch()
    if torch is not None:
        if _isinstance(value, torch.Tensor):
            return to_plain(_tensor_tolist(value.detach()), _depth + 1)
        if _isinstance(value, torch.Size):
            return [int(d) for d in tuple.__iter__(value)]
    tolist = getattr(_type(value), "tolist", None)  # numpy arrays and scalars
    if tolist is not None and _type(value).__module__ == "numpy":
        return to_plain(tolist(value), _depth + 1)
    # Anything else (a subclass of a plain type included) is not trusted as data:
    # an object whose __eq__ always says True must not pass as the expected value.
    return {"__unsupported__": f"{_type(value).__module__}.{_type(value).__qualname__}"}


_TORCH = []


def _torch():
    if not _TORCH:
        import sys
        if "torch" not in sys.modules:
            return None
        _TORCH.append(sys.modules["torch"])
        _TORCH.append(sys.modules["torch"].Tensor.tolist)
    return _TORCH[0]


def _tensor_tolist(tensor):
    return _TORCH[1](tensor)


def _close(a, b, tol):
    """Deep comparison of plain data; floats within tol (absolute and relative)."""
    if _type(a) is bool or _type(b) is bool:
        return _type(a) is _type(b) and a == b
    if _type(a) in (int, float) and _type(b) in (int, float):
        return abs(a - b) <= tol * (1 + abs(b))
    if _type(a) is list and _type(b) is list:
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if _type(a) is dict and _type(b) is dict:
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    return _type(a) is _type(b) and a == b


def _short(value, limit=300):
    text = _repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def judge(value, *, expect=_MISSING, same=None, tol=1e-6):
    """Return (passed, reason) for plain observation data against the criteria."""
    if _type(value) is dict and "__unsupported__" in value:
        return False, f"found an object of type {value['__unsupported__']}, which is not plain data"
    if expect is not _MISSING:
        wanted = to_plain(expect)
        if not _close(value, wanted, tol):
            return False, f"expected {_short(wanted)}, found {_short(value)}"
    if same:
        if _type(value) is not dict or any(k not in value for k in same):
            return False, f"expected a dict with keys {list(same)}, found {_short(value)}"
        first = same[0]
        for other in same[1:]:
            if not _close(value[other], value[first], tol):
                return False, (f"expected {other!r} to equal {first!r}, found "
                               f"{_short(value[other])} vs {_short(value[first])}")
    return True, "passed"


def observe_safely(observe):
    """Run an observation; return (plain value, error text or None)."""
    try:
        raw = observe() if _callable(observe) else observe
        return to_plain(raw), None
    except BaseException as exc:  # a student's KeyboardInterrupt or SystemExit is a failed check too
        return None, f"{_type(exc).__name__}: {exc}"


def check(name, observe, *, expect=_MISSING, same=None, tol=1e-6, hint=""):
    """Check one fact about the student's work; see the module docstring."""
    value, error = observe_safely(observe)
    if os.environ.get("NBCHECK_MODE") == "record":
        from IPython.display import display
        display({OBSERVATION_MIME: {"name": name, "value": value, "error": error},
                 "text/plain": f"observed {name}"}, raw=True)
        return
    if error is not None:
        passed, reason = False, f"could not look at your answer: {error}"
    else:
        passed, reason = judge(value, expect=expect, same=same, tol=tol)
    if not passed:
        raise CheckFailed(f"{name}: {reason}" + (f"\nHint: {hint}" if hint else ""))
    print(f"[pass] {name}")
