"""Forged verdicts: blank notebooks of every assignment whose first answer cell installs a
forger, each holding the criteria of every check (public and hidden, as if the hidden test
code had leaked), graded by the grading core. Each must score 0 and be reported as
tampering where it went for the grader's machinery; a correct notebook that also installs
harmless hooks keeps full marks.
"""
import sys

import nbformat
import pytest

from autograder.scoring import nbcheck
from autograder.grading import pipeline
from autograder.scoring.nbcheck import is_test_cell
from test_assignments import ASSIGNMENTS, master_path, release_path, submission

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the executor needs Linux (fork, rlimits)")

# Every forger starts from this: KNOWN maps each check to a value that passes it, and
# publish(name) shows a record the way nbcheck does in a plain kernel.
PREAMBLE = '''
import builtins, gc, sys, threading, time, types
from IPython.display import display
KNOWN = {known}
MIME = "application/vnd.nbcheck.observation+json"
def publish(name):
    display({{MIME: {{"name": name, "value": KNOWN[name], "error": None}}, "text/plain": "observed"}}, raw=True)
def fake_check(name, observe=None, **criteria):
    if name in KNOWN:
        publish(name)
'''
FORGERS = {
    "replaces_the_helper": '''
sys.modules["nbcheck"].check = fake_check
''',
    "hooks_pre_run_cell": '''
def before(info):
    for name in KNOWN:
        publish(name)
get_ipython().events.register("pre_run_cell", before)
''',
    "thread_writes_records": '''
def capture_lists():
    return [o for o in gc.get_objects() if isinstance(o, type) and o.__name__ == "Capture"]
def keep_writing():
    record = lambda name: {"output_type": "display_data", "metadata": {},
                           "data": {MIME: {"name": name, "value": KNOWN[name], "error": None}}}
    while True:
        for capture in capture_lists():
            capture.outputs.extend(record(name) for name in KNOWN)
        for name in KNOWN:
            publish(name)
        time.sleep(0.001)
threading.Thread(target=keep_writing, daemon=True).start()
''',
    "patches_import": '''
fake = types.ModuleType("nbcheck")
fake.check = fake_check
real_import = builtins.__import__
def forged_import(name, *args, **kwargs):
    return fake if name == "nbcheck" else real_import(name, *args, **kwargs)
builtins.__import__ = forged_import
''',
    "calls_the_real_check_with_its_own_values": '''
real = sys.modules["nbcheck"].check
def relay(name, observe=None, **criteria):
    return real(name, lambda: KNOWN.get(name))
sys.modules["nbcheck"].check = relay
get_ipython().user_ns["check"] = relay
get_ipython().events.register("pre_run_cell", lambda info: get_ipython().user_ns.__setitem__("check", relay))
''',
    "calls_the_recorder_from_a_test": '''
import nbcheck
def forge_from_inside():  # called by the tests through every answer function below
    recorder = sys.modules["nbcheck"]._recorder
    for name in KNOWN:
        if recorder is not None:
            recorder(name, lambda name=name: KNOWN[name])
get_ipython().user_ns["_forge_from_inside"] = forge_from_inside
''',
}
HARMLESS_HOOKS = '''
ip = get_ipython()
ip.events.register("pre_run_cell", lambda info: None)
ip.events.register("post_run_cell", lambda result: None)
ip.input_transformers_post.append(lambda lines: lines)
ip.showtraceback = lambda *args, **kwargs: None
'''


def passing_values(assignment):
    """{check name: a value that passes it} for every check of the master, hidden ones included."""
    known = {}
    for cell in nbformat.read(master_path(assignment), as_version=4).cells:
        if is_test_cell(cell):
            for spec in nbcheck.parse_checks(cell.source):
                same = spec.criteria.get("same")
                known[spec.name] = {key: 0.0 for key in same} if same else spec.criteria.get("expect")
    return known


def answer_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]


def forged(assignment, forger):
    nb = nbformat.read(release_path(assignment), as_version=4)
    cells = answer_cells(nb)
    cells[0].source = PREAMBLE.format(known=repr(passing_values(assignment))) + forger + cells[0].source
    if forger == FORGERS["calls_the_recorder_from_a_test"]:
        for cell in cells:  # each blank answer function forges before it gives up
            cell.source = cell.source.replace("raise NotImplementedError()",
                                              "_forge_from_inside()\n    raise NotImplementedError()")
    return nb


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def graded(request):
    assignment = request.param
    notebooks = [forged(assignment, forger) for forger in FORGERS.values()]
    correct = submission(assignment, {})
    answer_cells(correct)[0].source = HARMLESS_HOOKS + answer_cells(correct)[0].source
    results = pipeline.grade_notebooks(assignment, notebooks + [correct])
    return assignment, dict(zip([*FORGERS, "correct_with_hooks"], results))


@pytest.mark.parametrize("forger", sorted(FORGERS))
def test_a_forger_in_a_blank_notebook_scores_zero(graded, forger):
    _, results = graded
    result = results[forger]
    assert result.scores and set(result.scores.values()) == {0.0}, result.scores


@pytest.mark.parametrize("forger", sorted(set(FORGERS) - {"hooks_pre_run_cell", "thread_writes_records"}))
def test_a_forger_aimed_at_the_grader_is_reported(graded, forger):
    _, results = graded
    assert results[forger].notebook.metadata.autograder.tampering, forger


def test_published_records_are_reported(graded):
    _, results = graded
    found = results["thread_writes_records"].notebook.metadata.autograder.tampering
    assert "a cell published observation records itself" in found, found


def test_a_hook_is_removed_before_it_can_publish(graded):
    _, results = graded
    meta = results["hooks_pre_run_cell"].notebook.metadata.autograder
    assert "put back before the tests ran: an IPython pre_run_cell hook was registered" in meta.notes


def test_a_correct_notebook_with_harmless_hooks_keeps_full_marks(graded):
    _, results = graded
    result = results["correct_with_hooks"]
    assert result.scores == result.max_scores
    meta = result.notebook.metadata.autograder
    assert not meta.tampering
    assert any("pre_run_cell hook" in note for note in meta.notes)  # put back, and said so


# Wrong answers whose flaw a test measures with a library function (torch's grad mode,
# torch.equal, what unpickling may do through pathlib), each graded as it is and with
# that instrument patched to hide the flaw: the patch must earn nothing, and be reported.
WRONG = {
    "param_access": {"make_nest": '''
def make_nest(in_features=4):
    model = NestMLP()
    model(torch.zeros(2, in_features))  # records a graph: no torch.no_grad()
    return model
'''},
    "save_and_freeze": {"checkpoint": '''
def save_checkpoint(model, path):
    torch.save(model.state_dict(), path)


def load_checkpoint(model, path):
    model.load_state_dict(torch.load(path, weights_only=False))  # would run pickled code
    return model.eval()
''', "standardize": '''
class Standardize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())
        self.gain = torch.ones_like(mean)  # plain tensors: never trained
        self.shift = torch.zeros_like(mean)
        self.first = nn.Parameter(torch.zeros(1))
        self.second = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return (x - self.mean) / self.std * self.gain + self.shift + 0 * self.first
'''},
}
INSTRUMENT_PATCHES = {
    "param_access": {"make_nest": "torch.is_grad_enabled = lambda: False\n"},
    "save_and_freeze": {"checkpoint": '''
import pathlib
def touch(self, *args, **kwargs):
    return None
touch.__qualname__, touch.__module__ = "Path.touch", "pathlib"
pathlib.Path.touch = touch
''', "standardize": "torch.equal = lambda a, b: False\n"},
}


@pytest.mark.parametrize("assignment", sorted(WRONG))
def test_patching_what_a_test_measures_with_earns_nothing(assignment):
    patched = {gid: INSTRUMENT_PATCHES[assignment][gid] + source for gid, source in WRONG[assignment].items()}
    plain, forged_result = pipeline.grade_notebooks(assignment, [submission(assignment, WRONG[assignment]),
                                                                 submission(assignment, patched)])
    flawed = [gid for gid in WRONG[assignment] if plain.scores[f"test_{gid}"] < plain.max_scores[f"test_{gid}"]]
    assert flawed == sorted(WRONG[assignment], key=list(WRONG[assignment]).index), plain.scores  # the flaws show
    assert forged_result.scores == plain.scores
    found = forged_result.notebook.metadata.autograder.tampering
    assert found and not plain.notebook.metadata.autograder.tampering, found
