"""Python side of interception: the frame callback, recompile limits, the
compiler registry.

In:  a frame handed over by ``janus_frame._C`` on a cache miss, as the frame's
     function and the tuple of its argument slots (positional, keyword-only,
     ``*args`` tuple, ``**kwargs`` dict, in that order).
Out: ``None`` (the frame runs natively, possibly after its code was marked
     skipped or run-only), or a ``(guard, replacement)`` pair of functions that
     the C cache stores and runs. Both take the argument slots positionally.

A :class:`FrameCompiler` is the callback for one configuration (backend and
options). It owns the state that outlives a compile (its speculation store)
and makes a :class:`~janus_frame.context.CompileContext` for each compile,
which it hands to its frame transform -- the symbolic interpreter, injected
by ``api`` (this module never imports the frontend). Entries in the C cache
belong to the compiler that made them, so the same function compiled with two
backends keeps two sets of entries.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import sys
import threading
import time
import types
import warnings
from typing import Any, Callable

from . import _C, faults, torch_compat
from . import batching
from .cache import (
    CodeSet, CodeState, CompiledEntry, FrameFallback, SkipFrame, code_state, listeners,
    positional_code, stats,
)
from .config import Config, config
from .context import CompileContext, PerCodeStore
from .diagnostics.logs import artifact_logger
from .trace_rules import skip_reason, skips_callees

# the name of a source that is an item of a sequence: (container)[index]
_ITEM = re.compile(r"(.+)\[-?\d+\]")

DEFAULT, SKIP, RUN_ONLY = _C.DEFAULT, _C.SKIP, _C.RUN_ONLY

log = logging.getLogger("janus_frame")

# Compiling touches shared state (fake-tensor modes, kernel caches); a thread
# that misses while another compiles waits instead of compiling twice.
compile_lock = threading.RLock()

__all__ = ["CodeState", "CompiledEntry", "FrameCompiler", "SkipFrame", "code_state",
           "get_compiler", "stats", "reset_stats"]


# warnings' registries (what was already shown, per module), kept here:
# warnings.warn would create ``__warningregistry__`` in the module of the
# frame it names -- the user's -- a change the program did not make
_WARNING_REGISTRIES: dict[str, dict] = {}


def _warn(message: str, stacklevel: int) -> None:
    """``warnings.warn(message, RuntimeWarning, stacklevel)`` as the caller
    of this function would have made it: the same line, filters and
    once-per-location rule, the registry kept out of the user's module."""
    frame = sys._getframe(stacklevel)
    g = frame.f_globals
    module = g.get("__name__", "<string>")
    # (no module_globals: a module built in memory, without a loader, makes
    # 3.13's warn_explicit raise where warn itself would not)
    try:
        warnings.warn_explicit(message, RuntimeWarning, frame.f_code.co_filename,
                               frame.f_lineno, module=module,
                               registry=_WARNING_REGISTRIES.setdefault(module, {}))
    except Warning:
        # warnings made errors (``-W error``): what janus_frame has to say
        # about itself must not become an exception the program never raises
        log.warning("%s", message)


def reset_stats() -> None:
    """Statistics and every compiler's learned state (branch-site profiles go
    with the caches they shaped)."""
    stats.clear()
    for c in list(_compilers.values()):
        c.speculation.clear()
    batching.RECORDER.forget()


class FrameCompiler:
    """The frame callback for one configuration.

    Called by the C hook as ``compiler(func, args)`` with re-entrancy already
    prevented (frames run while this executes are not intercepted).
    ``transform(func, args, ctx) -> CompiledEntry`` compiles one frame (the
    symbolic interpreter, injected by ``api``); it may raise
    :class:`SkipFrame` or :class:`FrameFallback`.
    """

    def __init__(self, options: dict, backend: Any, fullgraph: bool, dynamic: bool | None,
                 global_mode: bool, listener: Callable | None = None, *,
                 transform: Callable) -> None:
        config.merged(**options)  # unknown names fail here, at compile()
        self.options = dict(options)
        self.backend_spec = backend
        self.fullgraph = fullgraph
        self.dynamic = dynamic
        self.global_mode = global_mode
        self.listener = listener  # explain(): receives every compiled entry / break
        self.transform = transform
        self.forced = CodeSet()  # codes compiled explicitly
        self.speculation = PerCodeStore()  # branch-site profiles (frontend/speculation.py)

    def __repr__(self) -> str:
        mode = "global" if self.global_mode else "compile"
        return f"<janus_frame compiler backend={self.backend_name!r} mode={mode}>"

    @property
    def backend_name(self) -> str:
        b = self.backend_spec
        return b if isinstance(b, str) else getattr(b, "__name__", type(b).__name__)

    @property
    def config(self) -> Config:
        """The options of ``compile(...)`` over the process-wide settings as
        they are now (a setting changed after the compiler was made counts)."""
        return config.merged(**self.options)

    @property
    def strict(self) -> bool:
        return self.fullgraph or self.config.strict

    def context(self, code) -> CompileContext:
        """The context of one compile of ``code``."""
        from .backends import lookup_backend

        st = code_state(code)
        cfg = self.config.merged(strict=self.strict)
        return CompileContext(
            # the compiler's options (strict and fullgraph included) reach the backend
            config=cfg, stats=stats, speculation=self.speculation,
            backend=lookup_backend(self.backend_spec, cfg), hints=frozenset(st.dynamic),
            fullgraph=self.fullgraph, dynamic=self.dynamic)

    def __call__(self, func, args):
        code = func.__code__
        stats.frames_seen += 1
        cfg = self.config
        if code not in self.forced:
            reason = skip_reason(code, self.global_mode, cfg)
            if reason is not None:
                _C.set_code_strategy(code, SKIP, SKIP if skips_callees(code) else DEFAULT)
                stats.frames_skipped += 1
                return None
        if batching.RECORDER.active:
            # a frame with no entry for these inputs while a recursion is
            # recorded: the inputs may be placeholders, which a trace must
            # not read; the recursion reruns natively and compiles this then
            batching.abort(miss=True)
        st = code_state(code)
        mine = [e for owner, e in st.entries if owner is self]
        if len(mine) >= cfg.recompile_limit:
            if not st.limit_warned:
                st.limit_warned = True
                last = st.recompiles[-1] if st.recompiles else "unknown"
                _warn(
                    f"janus_frame: {code.co_qualname} ({code.co_filename}:{code.co_firstlineno}) "
                    f"reached the recompile limit ({cfg.recompile_limit}); it now runs "
                    f"from its cached entries or natively. Last guard failure: {last}",
                    stacklevel=2,
                )
            _C.set_code_strategy(code, RUN_ONLY, DEFAULT)
            batching.went_native(code)
            return None
        if mine:
            self._note_recompile(func, st, mine, args)
            if self._value_storm(code, st, cfg):
                return None
        with compile_lock:
            t0 = time.perf_counter()
            kept = _TorchState()
            try:
                faults.point("hook.transform")
                with torch_compat.internal_warnings_hidden():
                    entry = self.transform(func, args, self.context(code))
            except SkipFrame as e:
                log.debug("skipping %s: %s", code.co_qualname, e)
                stats.frames_skipped += 1
                if code in self.forced:
                    # compiled on purpose: these argument types run natively,
                    # others (tensors) are compiled when they come
                    entry = typed_native_entry(func, args)
                    st.entries.append((self, _kept(entry)))
                    return (entry.guard, entry.replacement)
                _C.set_code_strategy(code, SKIP, DEFAULT)
                batching.went_native(code)
                return None
            except FrameFallback as e:
                stats.frames_failed += 1
                self._notify("break", code, e)
                if self.strict:
                    raise
                lg = artifact_logger("graph_breaks")
                if lg is not None:
                    lg.info("%s", e)
                # The fallback depends on this compiler's options (unroll
                # and inline limits, ...), so it is cached as this
                # compiler's entry, not as a strategy of the code.
                entry = native_entry(func)
                st.entries.append((self, _kept(entry)))
                return (entry.guard, entry.replacement)
            except Exception as e:  # noqa: BLE001 - never break the user's program
                stats.frames_failed += 1
                stats.internal_errors += 1
                if self.strict:
                    raise
                _warn(
                    f"janus_frame: internal error while compiling {code.co_qualname} "
                    f"({code.co_filename}:{code.co_firstlineno}); running it natively: "
                    f"{type(e).__name__}: {e}",
                    stacklevel=2,
                )
                _C.set_code_strategy(code, SKIP, DEFAULT)
                batching.went_native(code)
                return None
            finally:
                kept.restore()
                torch_compat.bound_fake_tensor_cache()
            dt = time.perf_counter() - t0
        if entry is None:
            return None
        self._hand_over(entry)
        entry.compile_seconds = dt
        stats.frames_compiled += 1
        stats.compile_seconds += dt
        st.entries.append((self, _kept(entry)))
        self._notify("entry", code, entry)
        return (entry.guard, entry.replacement)

    def _hand_over(self, entry: CompiledEntry) -> None:
        """What the entry hands to other code objects: resume functions are
        compiled explicitly; they (and callees run natively at a break) start
        with the dynamic-size hints the trace found for them."""
        for code in entry.resume_codes:
            self.forced.add(code)
        for code, hints in entry.handover.items():
            if hints:
                code_state(code).dynamic.update(hints)
        entry.resume_codes, entry.handover = [], {}

    def _notify(self, event: str, code, payload) -> None:
        """Tell this compiler's listener (explain) and the global listeners
        (profilers): events "entry", "break" (whole frame natively) and
        "recompile" (payload: the failed guards)."""
        if self.listener is not None:
            self.listener(event, code, payload)
        for fn in tuple(listeners):
            fn(event, code, payload)

    def _value_storm(self, code, st: CodeState, cfg) -> bool:
        """Whether ``code`` keeps recompiling on the bool or None values of
        the items of one container (``0.0 if dones[t] else 1.0`` over a list
        made each call): no recompile can generalise a flag, and the items
        take new combinations every call, so the frame stops compiling and
        runs from its cached entries or natively (as at the recompile limit,
        without spending the limit's compiles)."""
        items = max(st.flag_items.values(), key=len, default=())
        if len(items) < cfg.flag_item_limit:
            return False
        if not st.limit_warned:
            st.limit_warned = True
            container = next(k for k, v in st.flag_items.items() if v is items)
            _warn(
                f"janus_frame: {code.co_qualname} ({code.co_filename}:{code.co_firstlineno}) "
                f"recompiled for the values of {len(items)} items of {container} "
                f"({', '.join(sorted(items))}); it now runs from its cached entries "
                f"or natively",
                stacklevel=3,
            )
        _C.set_code_strategy(code, RUN_ONLY, DEFAULT)
        return True

    def _note_recompile(self, func, st: CodeState, mine, args) -> None:
        code = func.__code__
        reasons = []
        for e in mine:
            with torch_compat.no_user_modes():  # the program's modes never see these reads
                why = e.explain_failure(func, args) if e.explain_failure is not None else None
            reasons.append(why or "guard failed")
            if self.dynamic is False:  # dynamic=False: every new value recompiles
                continue
            if getattr(why, "dynamic_source", None):  # automatic dynamic: one recompile
                st.dynamic.add(why.dynamic_source)
            flag = getattr(why, "value_source", None)
            m = _ITEM.fullmatch(flag) if flag else None
            if m is not None:  # a flag read from an item of a container
                st.flag_items.setdefault(m.group(1), set()).add(flag)
            st.dynamic.update(getattr(why, "dynamic_dims", ()))
        msg = "; ".join(reasons)
        st.recompiles.append(msg)
        stats.recompiles += 1
        self._notify("recompile", code, msg)
        lg = artifact_logger("recompiles")
        if lg is not None:
            lg.info(
                "recompiling %s (%s:%d): %s",
                code.co_qualname, code.co_filename, code.co_firstlineno, msg,
            )


class _TorchState:
    """The process-wide torch settings as a compile found them.

    Tracing may run a setter for real (``torch.set_default_dtype`` is
    inlined down to ``torch._C._set_default_dtype``), or stop half way
    through a block that pushed a mode: after the compile, however it
    ended, the frame starts from the settings its caller left, or the
    native run after a failed compile would read the trace's
    (``old = torch.get_default_dtype()`` would save float64)."""

    __slots__ = ("grad", "dtype", "modes", "autocast")

    def __init__(self) -> None:
        import torch  # (here: this module is imported where torch cannot be, subinterpreters)

        self.grad = torch.is_grad_enabled()
        self.dtype = torch.get_default_dtype()
        self.modes = torch_compat.len_torch_function_stack()
        self.autocast = torch.is_autocast_enabled("cpu")

    def restore(self) -> None:
        import torch

        if torch.is_grad_enabled() is not self.grad:  # (a program's torch-function
            torch_compat.set_grad_enabled_c(self.grad)  # mode would see the call)
        if torch.get_default_dtype() is not self.dtype:
            torch.set_default_dtype(self.dtype)
        while torch_compat.len_torch_function_stack() > self.modes:
            torch_compat.pop_torch_function_stack()
        if torch.is_autocast_enabled("cpu") != self.autocast:
            torch.set_autocast_enabled("cpu", self.autocast)


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
    native = positional_code(code)
    rep = types.FunctionType(native, func.__globals__, code.co_name, None, func.__closure__)
    ns: dict = {}
    # not while a recursion is recorded: the miss drops the recording
    # (batching.py) before the native frame could see a placeholder (the
    # recorder is a constant: a guard runs with the frame's globals)
    exec(f"def always({', '.join(f'a{i}' for i in range(native.co_argcount))}):\n"
         "    return not '__jf_rec'.active", ns)
    guard = ns["always"]
    guard.__code__ = guard.__code__.replace(co_consts=tuple(
        batching.RECORDER if c == "__jf_rec" else c for c in guard.__code__.co_consts))
    return CompiledEntry(guard=guard, replacement=rep, guard_lines=["(runs natively)"])


def typed_native_entry(func, args: tuple) -> CompiledEntry:
    """An entry running the frame's original bytecode for arguments of the
    types of ``args`` (items of tuple, list and dict arguments included):
    what a frame gets whose trace found nothing to compile (pure Python on
    these arguments)."""
    consts: dict[str, Any] = {}

    def k(obj) -> str:  # a constant of the guard (it runs with the frame's globals)
        name = f"__jf_k{len(consts)}"
        consts[name] = obj
        return repr(name)

    checks, lines = [], []
    for i, a in enumerate(args):
        checks.append(f"{k(type)}(a{i}) is {k(type(a))}")
        lines.append(f"type of argument {i} is {type(a).__qualname__}")
        if type(a) in (tuple, list):
            checks.append(f"{k(tuple)}({k(map)}({k(type)}, a{i})) == {k(tuple(map(type, a)))}")
        elif type(a) is dict:
            checks.append(f"{k(tuple)}({k(map)}({k(type)}, a{i}.values())) == "
                          f"{k(tuple(map(type, a.values())))}")
    params = ", ".join(f"a{i}" for i in range(len(args)))
    checks.append(f"not {k(batching.RECORDER)}.active")  # see native_entry
    src = f"def typed({params}):\n    return {' and '.join(checks)}\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # "'str' object is not callable"
        code = compile(src, "<janus_frame guard>", "exec").co_consts[0]
    code = code.replace(co_consts=tuple(consts.get(c, c) if isinstance(c, str) else c
                                        for c in code.co_consts))
    entry = native_entry(func)
    return dataclasses.replace(entry, guard=types.FunctionType(code, func.__globals__),
                               guard_lines=lines + ["(runs natively: no tensor operations)"])


_compilers: dict[tuple, FrameCompiler] = {}


def get_compiler(backend: Any, fullgraph: bool = False, dynamic: bool | None = None,
                 global_mode: bool = False, *, transform: Callable, **options) -> FrameCompiler:
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
    try:
        key = (backend if isinstance(backend, str) else id(backend), fullgraph, dynamic,
               global_mode, transform, tuple(sorted((k, repr(v)) for k, v in options.items())))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _compilers:
        c = _compilers[key]
        if isinstance(backend, str) or c.backend_spec is backend:
            return c
    c = FrameCompiler(options, backend, fullgraph, dynamic, global_mode, transform=transform)
    if key is not None:
        _compilers[key] = c
    _warm_up()
    return c


_warmed = False


def _warm_up() -> None:
    """Load torch's fake-tensor stack when a compiler is made (like
    torch.compile, which loads its own when called), not inside the first
    compiled call: the first construction of a fake-tensor mode imports about
    a second of torch modules. Skipped in programs that have not imported
    torch."""
    global _warmed
    if _warmed or "torch" not in sys.modules:
        return
    _warmed = True
    from .torch_compat import FakeTensorMode

    FakeTensorMode()
