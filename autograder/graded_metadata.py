"""What the grader records in a graded notebook, under ``metadata["autograder"]``: the one
module that writes and reads it. ``SCHEMA`` says its shape; a test validates graded
notebooks against it.

The notebook's entry says how the run went (notes, seconds, executor, tampering found);
each code cell's, how the cell ran (status, seconds) and, for a test cell, its verdict
(with the points it earned, and each check's earned part of its share).
A test cell's observations stay there only between execution and judging.
"""
import json

import jsonschema

KEY = "autograder"
STATUSES = ("ok", "error", "timeout", "memory", "crashed", "not run")
EXECUTORS = ("fork", "kernel")

_TEXTS = {"type": "array", "items": {"type": "string"}}
_POINTS = {"type": "number", "minimum": 0}
SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "definitions": {
        "run": {
            "type": "object",
            "properties": {"notes": _TEXTS, "seconds": {"type": "number", "minimum": 0},
                           "executor": {"enum": list(EXECUTORS)}, "tampering": _TEXTS},
            "required": ["notes", "seconds", "executor", "tampering"],
            "additionalProperties": False,
        },
        "check": {  # one check's part of its cell's points: earned of its share
            "type": "object",
            "properties": {"name": {"type": "string"}, "passed": {"type": "boolean"}, "earned": _POINTS,
                           "share": _POINTS},
            "required": ["name", "passed", "earned", "share"],
            "additionalProperties": False,
        },
        "cell": {
            "type": "object",
            "properties": {
                "status": {"enum": list(STATUSES)},
                "seconds": {"type": "number", "minimum": 0},
                "observations": {"type": "object", "additionalProperties": {"type": "array", "minItems": 2,
                                                                             "maxItems": 2}},
                "verdict": {"type": "object",
                            "properties": {"passed": {"type": "boolean"}, "failed": _TEXTS, "messages": _TEXTS,
                                           "score": _POINTS,
                                           "checks": {"type": "array", "items": {"$ref": "#/definitions/check"}}},
                            "required": ["passed", "failed", "messages", "score", "checks"],
                            "additionalProperties": False},
            },
            "required": ["status", "seconds"],
            "additionalProperties": False,
        },
    },
}


def write_run(nb, *, notes, seconds, executor, tampering):
    nb.metadata[KEY] = {"notes": list(notes), "seconds": round(seconds, 4), "executor": executor,
                        "tampering": list(tampering)}


def write_cell(cell, result, observations=None):
    """How a code cell ran (``result``: the executor's); ``observations`` for a test cell."""
    cell.metadata[KEY] = {"status": result["status"], "seconds": round(result["seconds"], 4)}
    if observations is not None:
        cell.metadata[KEY]["observations"] = observations


def take_observations(cell):
    """A test cell's observations {check name: (value, error)}, removed from the notebook:
    it keeps the verdict, not the student's values. As plain dicts and lists again (a
    notebook's metadata holds dict subclasses, which judging refuses as data)."""
    taken = json.loads(json.dumps(cell.metadata.get(KEY, {}).pop("observations", {})))
    return {name: tuple(record) for name, record in taken.items()}


def write_verdict(cell, verdict):
    cell.metadata.setdefault(KEY, {"status": "ok", "seconds": 0.0})["verdict"] = {
        "passed": verdict.passed, "failed": verdict.failed, "messages": verdict.public_messages,
        "score": verdict.score, "checks": [{"name": c.name, "passed": c.passed, "earned": c.earned, "share": c.share}
                                           for c in verdict.checks]}


def run_of(nb):
    """The notebook's entry ({} if the grader has not run it); ``nb`` as a NotebookNode or plain JSON."""
    return nb["metadata"].get(KEY, {})


def cell_of(cell):
    return cell["metadata"].get(KEY, {})


def validate(nb):
    """Raise jsonschema.ValidationError unless every entry the grader wrote has its shape."""
    definitions = SCHEMA["definitions"]
    jsonschema.validate(run_of(nb), {**SCHEMA, **definitions["run"]})
    for cell in nb["cells"]:
        if KEY in cell["metadata"]:
            jsonschema.validate(cell_of(cell), {**SCHEMA, **definitions["cell"]})
