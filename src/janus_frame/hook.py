"""Python side of interception: the frame callback, skip rules, recompile limits.

In:  a frame handed over by ``janus_frame._C`` on a cache miss, as the frame's
     function and the tuple of its argument slots (positional, keyword-only,
     ``*args`` tuple, ``**kwargs`` dict, in that order).
Out: ``None`` (the frame runs natively, possibly after its code was marked
     skipped or run-only), or a ``(guard, replacement)`` pair of functions that
     the C cache stores and runs. Both take the argument slots positionally.

A :class:`FrameCompiler` is the callback for one configuration (backend and
options). Entries in the C cache belong to the compiler that made them, so the
same function compiled with two backends keeps two sets of entries.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import sys
import sysconfig
import threading
import time
import warnings
import weakref
from typing import Any, Callable

from . import _C
from .config import Config, config

DEFAULT, SKIP, RUN_ONLY = _C.DEFAULT, _C.SKIP, _C.RUN_ONLY

log = logging.getLogger("janus_frame")

# Compiling touches shared state (fake-tensor modes, kernel caches); a thread
# that misses while another compiles waits instead of compiling twice.
compile_lock = threading.RLock()


class SkipFrame(Exception):
    """Raised by a frame transform: run this code natively from now on."""


@dataclasses.dataclass
class CompiledEntry:
    """What a frame transform returns for one cache entry."""

    guard: Callable
    replacement: Callable
    # Optional diagnostics: readable guard lines, a function explaining which
    # guard fails for given argument slots, graphs and breaks of the entry.
    guard_lines: list = dataclasses.field(default_factory=list)
    explain_failure: Callable | None = None
    graphs: list = dataclasses.field(default_factory=list)
    breaks: list = dataclasses.field(default_factory=list)
    compile_seconds: float = 0.0
    site: Any = None  # diagnostics.probe.Site: what the profiler reports for this entry


class CodeState:
    """What janus_frame remembers about one code object.

    Stored in the code object's extra slot (freed with it, dropped by reset()).
    """

    __slots__ = ("entries", "recompiles", "limit_warned", "dynamic", "__weakref__")

    def __init__(self) -> None:
        # automatic dynamic: names of int sources traced as graph inputs, and
        # (name, dim) of tensor sizes traced as symbols
        self.dynamic: set = set()
        self.entries: list[tuple[Any, CompiledEntry]] = []  # (owner compiler, entry)
        self.recompiles: list[str] = []
        self.limit_warned = False


def code_state(code, create: bool = True) -> CodeState | None:
    st = _C.get_code_state(code)
    if st is None and create:
        st = CodeState()
        _C.set_code_state(code, st)
    return st


# ---------------------------------------------------------------------------
# Skip rules


def _dirs_of(*names: str) -> tuple[str, ...]:
    out = []
    for n in names:
        spec = importlib.util.find_spec(n)
        if spec and spec.submodule_search_locations:
            out.extend(os.path.realpath(p) + os.sep for p in spec.submodule_search_locations)
    return tuple(out)


_OWN_DIR = os.path.realpath(os.path.dirname(__file__)) + os.sep
_STDLIB_DIRS = tuple(
    {os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "platstdlib")}
)
_SITE_DIRS = tuple(
    {os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in ("purelib", "platlib")}
)
_LIB_DIRS: tuple[str, ...] | None = None  # torch and friends; resolved lazily


def _library_dirs() -> tuple[str, ...]:
    global _LIB_DIRS
    if _LIB_DIRS is None:
        _LIB_DIRS = _dirs_of("torch", "triton", "numpy", "bytecode", "sympy", "_pytest",
                             "pytest") + (_inductor_cache_dir(),)
    return _LIB_DIRS


def _inductor_cache_dir() -> str:
    """Where Inductor writes the modules it generates (their ``call`` runs
    a compiled backward lazily, inside ``loss.backward()`` of user code).
    The same rule as torch's ``cache_dir_utils.default_cache_dir``, which is
    not imported: it would pull in torch._inductor and torch._dynamo."""
    import getpass
    import re
    import tempfile

    d = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not d:
        try:
            user = re.sub(r'[\\/:*?"<>|]', "_", getpass.getuser())
        except Exception:  # noqa: BLE001 - no user name (containers)
            user = "unknown"
        d = os.path.join(tempfile.gettempdir(), "torchinductor_" + user)
    return os.path.realpath(d) + os.sep


_realpath_cache: dict[str, str] = {}


def _real(filename: str) -> str:
    r = _realpath_cache.get(filename)
    if r is None:
        r = os.path.realpath(filename) if not filename.startswith("<") else filename
        _realpath_cache[filename] = r
    return r


def is_internal_file(filename: str) -> bool:
    """janus_frame's own code, torch and friends, or the standard library:
    never the place to show a user."""
    if filename.startswith("<frozen"):
        return True
    path = _real(filename)
    if path.startswith(_OWN_DIR) or path.startswith(_library_dirs()):
        return True
    return not path.startswith(_SITE_DIRS) and path.startswith(_STDLIB_DIRS)


def skip_reason(code, global_mode: bool, cfg: Config) -> str | None:
    """Why a code object is not a compilation candidate, or None if it is."""
    fn = code.co_filename
    if fn.startswith("<"):
        # exec'd, interactive or generated code (fx graphs, guards): only
        # when compiled explicitly, which bypasses these rules
        return "generated code"
    path = _real(fn)
    if path.startswith(_OWN_DIR):
        return "janus_frame itself"
    if path.startswith(_library_dirs()):
        return "library internals (torch, triton, numpy, ...)"
    in_site = path.startswith(_SITE_DIRS)
    if not in_site and path.startswith(_STDLIB_DIRS):
        return "standard library"
    if not global_mode and not in_site:
        return None
    cwd = os.getcwd() + os.sep
    if path.startswith(cwd) and not in_site:
        return None
    if cfg.compile_modules:
        mod = _module_of(path)
        if mod and any(mod == p or mod.startswith(p + ".") for p in cfg.compile_modules):
            return None
    if in_site:
        mod = _module_of(path) or ""
        top = mod.split(".", 1)[0]
        if top in _INFRASTRUCTURE or top.startswith("_editable"):
            return "packaging and import machinery"
        if not global_mode:
            return None  # like torch.compile: library model code is compiled
        if cfg.skip_site_packages:
            return "installed package (set JANUS_COMPILE_MODULES to compile it)"
        return None
    if not global_mode:
        return None
    return "outside the working directory (set JANUS_COMPILE_MODULES to compile it)"


# installed packages that never hold model code: import hooks, packaging
_INFRASTRUCTURE = frozenset({
    "_editable_skbc_janus_frame", "_distutils_hack", "setuptools", "pkg_resources", "pip",
    "importlib_metadata", "importlib_resources", "typing_extensions", "packaging",
    "filelock", "fsspec", "tqdm", "huggingface_hub", "safetensors", "tokenizers", "regex",
    # compiler libraries (reached when a backend compiles lazily, e.g. the
    # backward graph inside loss.backward())
    "sympy", "mpmath", "networkx", "jinja2", "markupsafe", "triton",
})


def _module_of(path: str) -> str | None:
    for base in _SITE_DIRS + tuple(os.path.realpath(p) + os.sep for p in sys.path if p):
        if path.startswith(base):
            rel = path[len(base):]
            rel = rel[:-3] if rel.endswith(".py") else rel
            parts = rel.split(os.sep)
            if parts and parts[-1] == "__init__":
                parts = parts[:-1]
            return ".".join(parts)
    return None


# ---------------------------------------------------------------------------
# Statistics (reset by janus_frame.reset())


@dataclasses.dataclass
class Stats:
    frames_seen: int = 0
    frames_compiled: int = 0
    frames_skipped: int = 0
    frames_failed: int = 0
    recompiles: int = 0
    compile_seconds: float = 0.0
    reruns: int = 0  # graphs that raised and made their frame rerun natively


stats = Stats()


def reset_stats() -> None:
    global stats
    stats = Stats()
    spec = sys.modules.get("janus_frame.frontend.speculation")
    if spec is not None:  # branch-site profiles go with the caches they shaped
        spec.reset()


# ---------------------------------------------------------------------------
# The callback


def _default_transform(func, args, compiler):
    from .frontend.convert import compile_frame

    return compile_frame(func, args, compiler)


# A test may replace the frame transform (see tests/test_hook.py); production
# code always uses the symbolic interpreter.
frame_transform: Callable = _default_transform


class FrameCompiler:
    """The frame callback for one configuration.

    Called by the C hook as ``compiler(func, args)`` with re-entrancy already
    prevented (frames run while this executes are not intercepted).
    """

    def __init__(self, cfg: Config, backend: Any, fullgraph: bool, dynamic: bool | None,
                 global_mode: bool, listener: Callable | None = None):
        self.config = cfg
        self.backend_spec = backend
        self.fullgraph = fullgraph
        self.dynamic = dynamic
        self.global_mode = global_mode
        self.listener = listener  # explain(): receives every compiled entry / break
        self.forced: weakref.WeakSet = weakref.WeakSet()  # codes compiled explicitly
        self._backend_fn: Callable | None = None

    def __repr__(self) -> str:
        mode = "global" if self.global_mode else "compile"
        return f"<janus_frame compiler backend={self.backend_name!r} mode={mode}>"

    @property
    def backend_name(self) -> str:
        b = self.backend_spec
        return b if isinstance(b, str) else getattr(b, "__name__", type(b).__name__)

    @property
    def backend_fn(self) -> Callable:
        if self._backend_fn is None:
            from .backends import lookup_backend

            self._backend_fn = lookup_backend(self.backend_spec)
        return self._backend_fn

    @property
    def strict(self) -> bool:
        return self.fullgraph or self.config.strict

    def __call__(self, func, args):
        code = func.__code__
        stats.frames_seen += 1
        if code not in self.forced:
            reason = skip_reason(code, self.global_mode, self.config)
            if reason is not None:
                _C.set_code_strategy(code, SKIP, DEFAULT)
                stats.frames_skipped += 1
                return None
        st = code_state(code)
        mine = [e for owner, e in st.entries if owner is self]
        if len(mine) >= self.config.recompile_limit:
            if not st.limit_warned:
                st.limit_warned = True
                last = st.recompiles[-1] if st.recompiles else "unknown"
                warnings.warn(
                    f"janus_frame: {code.co_qualname} ({code.co_filename}:{code.co_firstlineno}) "
                    f"reached the recompile limit ({self.config.recompile_limit}); it now runs "
                    f"from its cached entries or natively. Last guard failure: {last}",
                    RuntimeWarning,
                    stacklevel=2,
                )
            _C.set_code_strategy(code, RUN_ONLY, DEFAULT)
            return None
        if mine:
            self._note_recompile(func, st, mine, args)
        with compile_lock:
            t0 = time.perf_counter()
            try:
                entry = frame_transform(func, args, self)
            except SkipFrame as e:
                log.debug("skipping %s: %s", code.co_qualname, e)
                _C.set_code_strategy(code, SKIP, DEFAULT)
                stats.frames_skipped += 1
                return None
            except Exception as e:  # noqa: BLE001 - never break the user's program
                from .frontend.breaks import GraphBreak

                stats.frames_failed += 1
                if isinstance(e, GraphBreak):
                    self._notify("break", code, e)
                    if self.strict:
                        raise
                    from .diagnostics.logs import artifact_logger

                    lg = artifact_logger("graph_breaks")
                    if lg is not None:
                        lg.info("%s", e)
                    # The fallback depends on this compiler's options (unroll
                    # and inline limits, ...), so it is cached as this
                    # compiler's entry, not as a strategy of the code.
                    entry = native_entry(func)
                    st.entries.append((self, _kept(entry)))
                    return (entry.guard, entry.replacement)
                if self.strict:
                    raise
                warnings.warn(
                    f"janus_frame: internal error while compiling {code.co_qualname} "
                    f"({code.co_filename}:{code.co_firstlineno}); running it natively: "
                    f"{type(e).__name__}: {e}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                _C.set_code_strategy(code, SKIP, DEFAULT)
                return None
            dt = time.perf_counter() - t0
        if entry is None:
            return None
        entry.compile_seconds = dt
        stats.frames_compiled += 1
        stats.compile_seconds += dt
        st.entries.append((self, _kept(entry)))
        self._notify("entry", code, entry)
        return (entry.guard, entry.replacement)

    def _notify(self, event: str, code, payload) -> None:
        """Tell this compiler's listener (explain) and the global listeners
        (profilers): events "entry", "break" (whole frame natively) and
        "recompile" (payload: the failed guards)."""
        if self.listener is not None:
            self.listener(event, code, payload)
        for fn in tuple(listeners):
            fn(event, code, payload)

    def _note_recompile(self, func, st: CodeState, mine, args) -> None:
        code = func.__code__
        reasons = []
        for e in mine:
            why = e.explain_failure(func, args) if e.explain_failure is not None else None
            reasons.append(why or "guard failed")
            if self.dynamic is False:  # dynamic=False: every new value recompiles
                continue
            if getattr(why, "dynamic_source", None):  # automatic dynamic: one recompile
                st.dynamic.add(why.dynamic_source)
            st.dynamic.update(getattr(why, "dynamic_dims", ()))
        msg = "; ".join(reasons)
        st.recompiles.append(msg)
        stats.recompiles += 1
        self._notify("recompile", code, msg)
        from .diagnostics.logs import artifact_logger

        lg = artifact_logger("recompiles")
        if lg is not None:
            lg.info(
                "recompiling %s (%s:%d): %s",
                code.co_qualname, code.co_filename, code.co_firstlineno, msg,
            )


def _kept(entry: CompiledEntry) -> CompiledEntry:
    """What the code's state keeps of an entry: not its guard and replacement.

    The state lives in the code object's extra slot, invisible to the cycle
    collector; the functions hold the user's globals, which hold the function
    and so the code: keeping them would leak every dynamically created
    function. The C cache keeps detached copies (``_C.code_entries``)."""
    return dataclasses.replace(entry, guard=None, replacement=None)


def native_entry(func) -> CompiledEntry:
    """An entry that runs the frame's original bytecode, unconditionally.

    The replacement is the original code with its argument slots made
    positional (the hook's calling convention); frames it calls are still
    intercepted."""
    code = func.__code__
    n = code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & 0x04) + \
        bool(code.co_flags & 0x08)
    native = code.replace(co_argcount=n, co_posonlyargcount=0, co_kwonlyargcount=0,
                          co_flags=code.co_flags & ~(0x04 | 0x08))
    import types

    rep = types.FunctionType(native, func.__globals__, code.co_name, None, func.__closure__)
    ns: dict = {}
    exec(f"def always({', '.join(f'a{i}' for i in range(n))}):\n    return True", ns)
    return CompiledEntry(guard=ns["always"], replacement=rep, guard_lines=["(runs natively)"])


# Functions called with every compile event of every compiler (see _notify).
listeners: list[Callable] = []

_compilers: dict[tuple, FrameCompiler] = {}


def get_compiler(backend: Any, fullgraph: bool = False, dynamic: bool | None = None,
                 global_mode: bool = False, **options) -> FrameCompiler:
    """The canonical compiler for a configuration, so that ``compile(f)`` and
    ``compile(g)`` with equal settings share cache entries."""
    if backend is None:
        backend = config.backend
    if isinstance(backend, str):
        from .backends import BACKENDS

        if backend not in BACKENDS:
            raise ValueError(
                f"unknown janus_frame backend {backend!r}; choose one of "
                f"{', '.join(sorted(BACKENDS))} or pass a callable backend(gm, example_inputs)"
            )
    elif not callable(backend):
        raise TypeError(f"backend must be a name or a callable, got {type(backend).__name__}")
    cfg = config.merged(**options)
    try:
        key = (backend if isinstance(backend, str) else id(backend), fullgraph, dynamic,
               global_mode, tuple(sorted((k, repr(v)) for k, v in options.items())))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _compilers:
        c = _compilers[key]
        if isinstance(backend, str) or c.backend_spec is backend:
            return c
    c = FrameCompiler(cfg, backend, fullgraph, dynamic, global_mode)
    if key is not None:
        _compilers[key] = c
    _warm_up()
    return c


_warmed = False


def _warm_up() -> None:
    """Load the interpreter and torch's fake-tensor stack when a compiler is
    made (like torch.compile, which loads its own when called), not inside
    the first compiled call: the first construction of a fake-tensor mode
    imports about a second of torch modules. Skipped in programs that have
    not imported torch."""
    global _warmed
    if _warmed or "torch" not in sys.modules:
        return
    _warmed = True
    from torch._subclasses.fake_tensor import FakeTensorMode

    from .frontend import convert  # noqa: F401

    FakeTensorMode()
