"""The child's guard of test cells: what a test cell relies on is put back before it runs,
and only its own check calls may record what it observed.

Student cells run first, in the same process, and may patch anything. ``Warden`` takes a
snapshot of the grading machinery in the warm process, before any student code; before
each test cell it restores that snapshot (the check helper, the import machinery and the
modules the tests import, IPython's hooks, transformers and display path, the executor's
own code, trace and profile functions, signal handlers and timers) and notes what it had
to put back. While the test cell runs, ``nbcheck.check`` hands each check to the warden,
which accepts it only when called by the test cell's own code with an observation the test
cell defined, never from inside another check's observation, and once per name. After the
cell it looks again: the grading machinery patched while the test ran makes the cell's
observations worthless ("tampering suspected"). A thread the student left running is no
finding in itself: what it patches is found, and records it publishes are dropped.

A student's process can still, with enough effort, reach into the warden itself: the
README's threat model says what holds and what does not.
"""
import ast
import builtins
import ctypes
import functools
import gc
import signal
import sys
import threading
from dataclasses import dataclass, field

from autograder.scoring import nbcheck

# Restored but not suspicious in themselves: a student may use IPython's features.
HOOK = "hook"
# Aimed at the grading machinery: the instructor wants to know.
TAMPERING = "tampering"

_TIMERS = (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)
_SIGNALS = [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)]


@dataclass
class Finding:
    kind: str  # HOOK or TAMPERING
    text: str


@dataclass
class CellWatch:
    """What the warden saw of one test cell."""
    names: tuple  # the checks the cell states, in order
    filename: str = None  # the name IPython compiled the cell under
    records: dict = field(default_factory=dict)  # check name -> (value, error)
    observing: bool = False
    findings: list = field(default_factory=list)


def imported_modules(sources):
    """Names of the modules (and their parents) the test cells import."""
    return set().union(*map(_imports_of, sources))


@functools.lru_cache(maxsize=256)  # the same test cells come back in every job
def _imports_of(source):
    names = set()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return frozenset()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found = [node.module]
        else:
            continue
        for name in found:
            parts = name.split(".")
            names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(names)


class Warden:
    def __init__(self, shell, machinery):
        """``machinery``: the executor's own modules and classes, whose functions a child
        must not have replaced under it. ``seal`` then takes the snapshot."""
        self.shell, self.machinery, self.watch = shell, machinery, None
        nbcheck._recorder = self.record

    def seal(self):
        """Take the snapshot of the pristine warm process, once everything is in place."""
        shell, machinery = self.shell, self.machinery
        # (label, owner, snapshot): every name of the check helper and the executor's modules;
        # the callables of builtins and classes (their other attributes are data that changes).
        self.guarded, self.versions, self.covered = [], [], set()
        self.tagged = _NamespaceVersion.works()
        for owner in [builtins, nbcheck, *machinery, *type(shell).__mro__[:-1]]:
            self._guard(owner, everything=owner is nbcheck or (isinstance(owner, type(sys)) and owner is not builtins))
        self.modules = dict(sys.modules)
        self.lists = self._lists()
        self.saved_lists = {label: list(items) for label, items in self.lists.items()}
        self.events = {event: list(callbacks) for event, callbacks in shell.events.callbacks.items()}
        self.objects = self._objects()
        self.instance = {k: v for k, v in vars(shell).items() if callable(getattr(type(shell), k, None))}
        self.handlers = {s: signal.getsignal(s) for s in _SIGNALS}

    def _guard(self, owner, everything=False):
        snapshot = {k: v for k, v in vars(owner).items() if everything or _behaviour(v)}
        self.guarded.append((getattr(owner, "__qualname__", owner.__name__), owner, snapshot))
        self.versions.append(_NamespaceVersion(owner) if self.tagged else None)

    def cover(self, sources):
        """Guard too what these test cells measure with: the modules they import, the classes
        those define, and the modules and classes their names lead to (``nn.Linear``,
        ``Path``, ``torch.optim.SGD``), with their base classes; their functions and methods
        are put back before each test cell, as the snapshot holds them. Called before any
        student code runs: in the zygote, and in the child for a cell it was not taught."""
        known = {id(owner) for _, owner, _ in self.guarded}
        for source in sources:
            if source in self.covered:
                continue
            self.covered.add(source)
            for owner in _reached(source):
                if id(owner) not in known:
                    known.add(id(owner))
                    self._guard(owner)

    # --- the snapshot and its restoration ---

    def _lists(self):
        shell, manager = self.shell, self.shell.input_transformer_manager
        return {"sys.meta_path": sys.meta_path, "sys.path_hooks": sys.path_hooks, "gc.callbacks": gc.callbacks,
                "input_transformers_post": shell.input_transformers_post,
                "ast_transformers": shell.ast_transformers,
                "cleanup_transforms": manager.cleanup_transforms, "line_transforms": manager.line_transforms,
                "token_transformers": manager.token_transformers}

    def _objects(self):
        shell = self.shell
        return {"display_pub": (shell, shell.display_pub), "displayhook": (shell, shell.displayhook),
                "custom_exceptions": (shell, shell.custom_exceptions), "CustomTB": (shell, shell.CustomTB),
                "compile": (shell, shell.compile), "input_transformer_manager": (shell, shell.input_transformer_manager),
                "sys.displayhook": (sys, sys.displayhook), "sys.excepthook": (sys, sys.excepthook)}

    def restore(self, modules=()):
        """Put the snapshot back; return what had changed. ``modules``: names whose entry in
        sys.modules must be the pristine one (the rest of sys.modules is left alone)."""
        findings = []
        for (label, owner, snapshot), version in zip(self.guarded, self.versions):
            if version is not None and version.unchanged():
                continue
            findings += _restore_namespace(label, owner, snapshot)
            if version is not None:
                version.remember()
        for name in modules:
            pristine = self.modules.get(name)
            if pristine is not None and sys.modules.get(name) is not pristine:
                findings.append(Finding(TAMPERING, f"the module {name} was replaced"))
                sys.modules[name] = pristine
        for label, items in self.lists.items():
            saved = self.saved_lists[label]
            if len(items) != len(saved) or any(a is not b for a, b in zip(items, saved)):
                kind = HOOK if label in ("input_transformers_post", "ast_transformers", "cleanup_transforms",
                                         "line_transforms", "token_transformers") else TAMPERING
                findings.append(Finding(kind, f"{label} was changed"))
                items[:] = saved
        for event, callbacks in self.shell.events.callbacks.items():
            saved = self.events.get(event, [])
            if len(callbacks) != len(saved) or any(a is not b for a, b in zip(callbacks, saved)):
                findings.append(Finding(HOOK, f"an IPython {event} hook was registered"))
                callbacks[:] = saved
        for label, (owner, pristine) in self.objects.items():
            name = label.rsplit(".", 1)[-1]
            if getattr(owner, name, None) is not pristine:
                kind = TAMPERING if owner is sys or name == "compile" else HOOK
                findings.append(Finding(kind, f"{label} was replaced"))
                setattr(owner, name, pristine)
        findings += self._restore_shell_instance()
        findings += self._restore_tracing()
        return findings

    def _restore_shell_instance(self):
        """Methods shadowed on the shell object itself (``ip.showtraceback = ...``)."""
        findings, namespace = [], vars(self.shell)
        for name in [n for n in namespace if callable(getattr(type(self.shell), n, None))]:
            if namespace[name] is not self.instance.get(name):
                findings.append(Finding(HOOK, f"the shell's {name} was replaced"))
                if name in self.instance:
                    namespace[name] = self.instance[name]
                else:
                    del namespace[name]
        return findings

    def _restore_tracing(self):
        findings = []
        if sys.gettrace() is not None or sys.getprofile() is not None:
            findings.append(Finding(TAMPERING, "a trace or profile function was set"))
            sys.settrace(None)
            sys.setprofile(None)
        if threading._trace_hook is not None or threading._profile_hook is not None:
            findings.append(Finding(TAMPERING, "a thread trace or profile function was set"))
            threading.settrace(None)
            threading.setprofile(None)
        for timer in _TIMERS:
            if signal.getitimer(timer) != (0.0, 0.0):
                findings.append(Finding(TAMPERING, "a timer was set"))
                signal.setitimer(timer, 0)
        for signum, handler in self.handlers.items():
            if signal.getsignal(signum) is not handler:
                findings.append(Finding(TAMPERING, f"a handler of {signal.Signals(signum).name} was set"))
                signal.signal(signum, handler)
        return findings

    # --- one test cell ---

    def begin(self, source, names, modules):
        """Before a test cell: restore, and get ready to take its records."""
        findings = self.restore(modules)
        self.watch = CellWatch(tuple(names))
        self.shell.compile.guarded = (source, self.watch)
        return findings

    def end(self, modules):
        """After the test cell: (records, findings). Records count only if nothing was
        patched while the test ran and no other thread was alive."""
        watch, self.watch = self.watch, None
        self.shell.compile.guarded = None
        findings = watch.findings + self.restore(modules)
        trusted = not any(f.kind == TAMPERING for f in findings)
        return (watch.records if trusted else {}), findings

    def record(self, name, observe):
        """``nbcheck.check`` in a test cell, in record mode: observe, if the call is the test's own."""
        watch = self.watch
        if watch is None:
            return None  # a check called outside a test cell records nothing
        caller = sys._getframe(2).f_code.co_filename  # record <- nbcheck.check <- the caller
        defined = getattr(getattr(observe, "__code__", None), "co_filename", caller)
        if watch.observing:
            watch.findings.append(Finding(TAMPERING, f"a check ({name!r}) was called while another was observing"))
        elif watch.filename is None or caller != watch.filename or defined != watch.filename:
            watch.findings.append(Finding(TAMPERING, f"a check ({name!r}) was called by code the test does not hold"))
        elif name not in watch.names or name in watch.records:
            watch.findings.append(Finding(TAMPERING, f"an unexpected check ({name!r}) was recorded"))
        else:
            watch.observing = True
            try:
                watch.records[name] = nbcheck.observe_safely(observe)
            finally:
                watch.observing = False
        return None


class _NamespaceVersion:
    """The version tag of a module's or class's namespace (PEP 509: CPython gives a dict a
    new one whenever it changes). Comparing it is how a restore skips the namespaces left
    alone without reading their entries: reading them would write their reference counts,
    and so copy, page by page, the memory a child shares with the zygote."""

    OFFSET = 3 * ctypes.sizeof(ctypes.c_ssize_t)  # after the reference count, type and size

    def __init__(self, owner):
        namespace = vars(owner)
        if not isinstance(namespace, dict):  # a class's: the dict behind its mappingproxy
            namespace = next(r for r in gc.get_referents(namespace) if isinstance(r, dict))
        self.namespace = namespace  # kept alive, so that its address stays its own
        self.tag = ctypes.c_uint64.from_address(id(namespace) + self.OFFSET)
        self.remember()

    def remember(self):
        self.seen = self.tag.value

    def unchanged(self):
        return self.tag.value == self.seen

    @classmethod
    def works(cls):
        """Whether this interpreter keeps the tag where it is read, and changes it on every
        change: else every restore reads every entry."""
        probe = {}
        version = cls.__new__(cls)
        version.tag = ctypes.c_uint64.from_address(id(probe) + cls.OFFSET)
        version.remember()
        probe["changed"] = True
        changed = not version.unchanged()
        version.remember()
        del probe["changed"]
        return changed and not version.unchanged() and sys.implementation.name == "cpython"


def _reached(source):
    """The modules and classes a test cell's code reaches by name, as _guard takes them."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names, found = {}, []

    def take(value, members=False):
        if isinstance(value, type(sys)):
            found.append(value)
            if members:  # the classes of a module the cell imports (torch.Tensor, pathlib.Path)
                for member in list(vars(value).values()):
                    if isinstance(member, type):
                        take(member)
        elif isinstance(value, type):
            found.extend(k for k in value.__mro__ if k.__flags__ & _HEAP_TYPE)  # built-in types cannot be patched
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                for i in range(1, len(parts) + 1):
                    take(sys.modules.get(".".join(parts[:i])), members=True)
                names[alias.asname or parts[0]] = sys.modules.get(alias.name if alias.asname else parts[0])
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            module = sys.modules.get(node.module)
            take(module, members=True)
            for alias in node.names:
                names[alias.asname or alias.name] = _static_attribute(module, alias.name)
    for name, value in names.items():
        take(value)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Store):
            chain = []
            while isinstance(node, ast.Attribute):
                chain.append(node.attr)
                node = node.value
            value = names.get(node.id) if isinstance(node, ast.Name) else None
            for attribute in reversed(chain):
                value = _static_attribute(value, attribute)
                take(value)
    return found


def _static_attribute(owner, name):
    """``owner.name`` without running any code (no lazy import, no descriptor): a module's
    or a class's own entry, else None."""
    if isinstance(owner, type(sys)):
        value = vars(owner).get(name)
        return value if value is not None else sys.modules.get(f"{owner.__name__}.{name}")
    if isinstance(owner, type):
        return next((vars(k)[name] for k in owner.__mro__ if name in vars(k)), None)
    return None


_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by Python code, whose attributes can be set


def _behaviour(value):
    return callable(value) or isinstance(value, (classmethod, staticmethod, property))


def _restore_namespace(label, owner, snapshot):
    """Put back what changed among ``snapshot``'s names of a module or class; remove what was
    added to the check helper or a class."""
    namespace = vars(owner)
    changed = [k for k, v in snapshot.items() if namespace.get(k, _restore_namespace) is not v]
    added = [] if owner is builtins or (isinstance(owner, type(sys)) and owner is not nbcheck) else \
        [k for k, v in namespace.items() if k not in snapshot and (owner is nbcheck or _behaviour(v))]
    for key in changed:
        setattr(owner, key, snapshot[key])
    for key in added:
        delattr(owner, key)
    return [Finding(TAMPERING, f"{label}.{key} was {'replaced' if key in changed else 'added'}")
            for key in changed + added]
