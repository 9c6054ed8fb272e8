"""The grader's metadata in graded notebooks has the shape autograder/graded_metadata.py
states, and the schema refuses what does not."""
import copy

import jsonschema
import pytest

from autograder import graded_metadata
from test_forgery import graded  # noqa: F401 (the fixture: both assignments, forgers and a correct notebook)


def test_every_graded_notebook_follows_the_schema(graded):  # noqa: F811
    _, results = graded
    for name, result in results.items():
        graded_metadata.validate(result.notebook)
        assert graded_metadata.run_of(result.notebook)["executor"] == "fork", name
        verdicts = [graded_metadata.cell_of(c).get("verdict") for c in result.notebook.cells if c.cell_type == "code"]
        assert any(verdicts), name


@pytest.mark.parametrize("spoil", [
    lambda nb: nb.metadata.autograder.update(seconds=-1),
    lambda nb: nb.metadata.autograder.pop("tampering"),
    lambda nb: nb.metadata.autograder.update(extra=1),
    lambda nb: next(c for c in nb.cells if "autograder" in c.metadata).metadata.autograder.update(status="fine"),
    lambda nb: next(c for c in nb.cells if "autograder" in c.metadata).metadata.autograder.update(
        verdict={"passed": "yes", "failed": [], "messages": []}),
])
def test_the_schema_refuses_a_spoiled_entry(graded, spoil):  # noqa: F811
    _, results = graded
    nb = copy.deepcopy(results["correct_with_hooks"].notebook)
    spoil(nb)
    with pytest.raises(jsonschema.ValidationError):
        graded_metadata.validate(nb)
