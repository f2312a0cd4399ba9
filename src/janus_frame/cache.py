"""Cache entries, per-code state and statistics: the types the frame hook and
the frame transform exchange.

In: nothing but ``janus_frame._C`` (the C cache stores a :class:`CodeState`
in each code object's extra slot).
Out: :class:`CompiledEntry` (what a frame transform returns for one cache
entry), :func:`positional_code` (the calling convention of its functions),
:class:`CodeState` (what janus_frame remembers per code object),
the exceptions a transform raises to steer the hook (:class:`SkipFrame`,
:class:`FrameFallback`), and the process statistics.

A leaf module: the hook, the frontend and the diagnostics all import it, and
it imports none of them.
"""
from __future__ import annotations

import dataclasses
import inspect
import types
import weakref
from typing import Any, Callable

from . import _C


class SkipFrame(Exception):
    """Raised by a frame transform: run this code natively from now on."""


class FrameFallback(Exception):
    """Raised by a frame transform: this frame runs natively, with the
    reason reported to the user (the frontend's GraphBreak derives from it).
    Unlike :class:`SkipFrame` the verdict depends on the compiler's options
    (unroll and inline limits, ...), so it is cached as that compiler's
    entry, not as a strategy of the code."""


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
    # What the entry hands to other code objects, applied by the frame
    # compiler (the frontend never writes another code's state): the resume
    # codes it continues in and frames a break's native step must have
    # compiled (the module a DDP wraps), compiled explicitly; the dynamic-size hints
    # resume codes and callees run natively at a break start with
    # (code -> set of hints).
    resume_codes: list = dataclasses.field(default_factory=list)
    handover: dict = dataclasses.field(default_factory=dict)


def positional_code(code: types.CodeType, marker: str | None = None) -> types.CodeType:
    """``code`` with its argument slots (positional, keyword-only, ``*args``,
    ``**kwargs``) taken as plain positional parameters: the calling
    convention of cache entries. ``marker``, an extra constant, keeps the copy
    distinct from the original where both are constants of one function
    (the bytecode assembler merges constants that marshal alike)."""
    varargs = code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS)
    n = code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & inspect.CO_VARARGS) + \
        bool(code.co_flags & inspect.CO_VARKEYWORDS)
    consts = code.co_consts + (marker,) if marker is not None else code.co_consts
    return code.replace(co_argcount=n, co_posonlyargcount=0, co_kwonlyargcount=0,
                        co_flags=code.co_flags & ~varargs, co_consts=consts)


class CodeState:
    """What janus_frame remembers about one code object.

    Stored in the code object's extra slot (freed with it, dropped by reset()).
    """

    __slots__ = ("entries", "recompiles", "limit_warned", "dynamic", "flag_items",
                 "__weakref__")

    def __init__(self) -> None:
        # automatic dynamic: names of int sources traced as graph inputs, and
        # (name, dim) of tensor sizes traced as symbols
        self.dynamic: set = set()
        self.entries: list[tuple[Any, CompiledEntry]] = []  # (owner compiler, entry)
        self.recompiles: list[str] = []
        self.limit_warned = False
        # container source name -> its items whose bool/None value made an
        # entry fail (hook.FrameCompiler._value_storm)
        self.flag_items: dict[str, set] = {}


# Every code object janus_frame keeps state for (weakly): what clear_all
# drops at once. The C side's own reset is lazy (each code's entries go when
# it next runs), and until then the entries keep what their guards and
# replacements reference -- functions, and through them module globals.
class CodeSet:
    """A weak set of code objects by identity. (Code objects hash and
    compare by value: a generated code holding a list constant -- a guard
    with a class attribute fact -- cannot be hashed, and two equal copies of
    a code are distinct frames to compile.)"""

    def __init__(self) -> None:
        self._refs: dict[int, weakref.ref] = {}

    def add(self, code) -> None:
        key = id(code)
        if key not in self._refs or self._refs[key]() is not code:
            refs = self._refs
            self._refs[key] = weakref.ref(code, lambda r, key=key: refs.get(key) is r
                                          and refs.pop(key, None))

    def __contains__(self, code) -> bool:
        r = self._refs.get(id(code))
        return r is not None and r() is code

    def __iter__(self):
        return iter([c for c in (r() for r in list(self._refs.values())) if c is not None])

    def __len__(self) -> int:
        return len(self._refs)

    def clear(self) -> None:
        self._refs.clear()


_codes = CodeSet()


def code_state(code, create: bool = True) -> CodeState | None:
    st = _C.get_code_state(code)
    if st is None and create:
        st = CodeState()
        _C.set_code_state(code, st)
        _codes.add(code)
    return st


def clear_all() -> None:
    """Drop every cache entry, strategy and state now."""
    _C.reset()
    for code in list(_codes):
        _C.clear_code(code)
    _codes.clear()


# Functions called with every compile event of every compiler (the frame
# compiler's _notify): profilers and the command line's explainer.
listeners: list[Callable] = []


@dataclasses.dataclass
class Stats:
    """Process-wide counters (cleared by ``janus_frame.reset()``)."""

    frames_seen: int = 0
    frames_compiled: int = 0
    frames_skipped: int = 0
    frames_failed: int = 0
    recompiles: int = 0
    compile_seconds: float = 0.0
    reruns: int = 0  # graphs that raised and made their frame rerun natively
    internal_errors: int = 0  # frames whose compile failed inside janus_frame
    traces: int = 0  # runs of the symbolic interpreter over a compiled frame
    # graph breaks whose segment was traced a second time, up to the break
    # (the first trace's record could not be reused; frontend/convert.py)
    break_retraces: int = 0
    # recursion batching (batching.py): batched graph calls, the
    # recorded calls they ran, recordings dropped (the recursion reran natively)
    batched_calls: int = 0
    batched_rows: int = 0
    batched_compiled: int = 0  # batched graphs the fusing backend compiled
    batch_aborts: int = 0
    # a recursion whose whole schedule repeats (a fixed tree) runs as one
    # graph of all its levels: those compiled, and the flushes they ran
    schedules_compiled: int = 0
    schedule_calls: int = 0

    def clear(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, f.default)


stats = Stats()
