"""The warden's restore skips only namespaces that did not change (their version tag),
and still puts back, and reports, every change to one that did, however many restores
came before. Run in a process of its own: the warden guards an IPython shell's classes."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROGRAM = r"""
import builtins, json, sys
from autograder.execution import warm_worker, warden
from autograder.scoring import nbcheck

shell = warm_worker.make_shell()
guard = warden.Warden(shell, machinery=[warm_worker, warden.Warden])
guard.seal()
said = {"fast path": all(v is not None for v in guard.versions)}

def texts():
    return sorted(f.text for f in guard.restore())

original_len, original_check, original_method = builtins.len, nbcheck.check, type(shell).run_cell
said["untouched"] = texts()
builtins.len = lambda x: 0
said["builtin replaced"] = texts()
said["builtin back"] = builtins.len is original_len
said["quiet again"] = texts()
nbcheck.check = lambda *a, **k: None
nbcheck.extra = 1
type(shell).run_cell = lambda *a, **k: None
said["helper and class"] = texts()
said["all back"] = [nbcheck.check is original_check, not hasattr(nbcheck, "extra"),
                    type(shell).run_cell is original_method]
builtins.len = original_len  # put back by the student: a change and its undoing, nothing to report
said["undone"] = texts()
print(json.dumps(said))
"""


def test_restores_after_skipping_unchanged_namespaces():
    done = subprocess.run([sys.executable, "-c", PROGRAM], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said["fast path"]
    assert said["untouched"] == []
    assert said["builtin replaced"] == ["builtins.len was replaced"]
    assert said["builtin back"]
    assert said["quiet again"] == []
    assert said["helper and class"] == ["GradingShell.run_cell was added",  # it shadowed InteractiveShell's
                                        "autograder.scoring.nbcheck.check was replaced",
                                        "autograder.scoring.nbcheck.extra was added"]
    assert said["all back"] == [True, True, True]
    assert said["undone"] == []
