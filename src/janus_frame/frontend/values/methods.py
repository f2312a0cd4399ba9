"""Bound methods of symbolic receivers.

In: an attribute lookup that found a method: of a tensor or a container
(the receiver's kind models it), or a Python function (a user method, one
reached through ``super()`` or a class).
Out: ``MethodV``; calling it asks the receiver's kind (``call_method``),
runs a traced stand-in (polyfills.py, through the receiver), defers a
logging call after the graph, or inlines the function.
"""
from __future__ import annotations

import dis
import inspect
import logging
import types
from typing import Any

from ..breaks import GraphBreak, LoggingKept
from .base import Value
from .constants import Const


class MethodV(Value):
    """``receiver.name`` for a symbolic receiver; ``func`` is the underlying
    function object when known (user methods), else None."""

    __slots__ = ("receiver", "name", "func", "source")

    def __init__(self, receiver: Value, name: str, func: Any = None) -> None:
        self.receiver = receiver
        self.name = name
        self.func = func
        self.source = None

    def python_type(self) -> type:
        return types.MethodType

    def truth(self, tx) -> bool:
        return True

    def call(self, tx, args: list, kwargs: dict) -> Value:
        recv, func = self.receiver, self.func
        if func is None:
            return recv.call_method(tx, self.name, args, kwargs)
        if not args and not kwargs:
            # (the receiver's type is guarded by the attribute lookup that found func)
            out = recv.stand_in(tx, self.name, func)
            if out is not None:
                return out
        if is_logging(func) or isinstance(getattr(recv, "_obj", None), logging.Logger):
            # (a method of a Logger is logging: transformers' warning_once)
            if defer_logging(tx, self, args, kwargs):
                return Const(None)
            raise GraphBreak("JF003", f"{getattr(func, '__qualname__', self.name)}()")
        return tx.inline_function(func, [recv] + list(args), kwargs, None)

    def reconstruct(self, rb) -> tuple[str, bool]:
        fb = rb.fb
        if self.func is not None:
            # the function the trace resolved (it may come from super()):
            # looking the name up again could find an override
            return f"{fb.const(types.MethodType)}({fb.const(self.func)}, " \
                   f"{rb.expr(self.receiver)})", False
        return f"__jf_h_getattr({rb.expr(self.receiver)}, {self.name!r})", False


_ATOMS = (str, int, float, bool, type(None))


def defer_logging(tx, fn: Value, args: list, kwargs: dict, is_print: bool = False) -> bool:
    """Move the print/logging call ``fn(*args, **kwargs)`` to the end of
    the segment (effects.defer_call), in program order with the other
    effects; False: it breaks the graph where it is.

    Always with ``reorder_logging``; otherwise a logging call (not print,
    which marks where a program wants its graph to end) when every
    argument is a constant atom (a message), which nothing in the graph can
    change: transformers' warnings in model code. The
    call then only moves past graph operations, which raise nothing (their
    errors rerun the frame natively, replacement.py) unless the segment
    cannot be rolled back: such a frame is traced again with the call
    breaking the graph (breaks.LoggingKept)."""
    if not is_print and not _emits_only(fn):
        return False  # (getMessage, isEnabledFor...: their results matter)
    if not tx.config.reorder_logging:
        if is_print or tx.output.code in LoggingKept.codes:
            return False
        if not all(isinstance(a, Const) and type(a._value) in _ATOMS
                   for a in [*args, *kwargs.values()]):
            return False
    tx.output.effects.defer_call(fn, list(args), dict(kwargs))
    return True


_EMITTERS = frozenset("debug info warning warn error exception critical fatal log".split())


def _emits_only(fn: Value) -> bool:
    """Is ``fn`` a call whose result is None and whose only effect is to
    log: a Logger's or the logging module's emitting functions, or another
    method of a Logger (transformers' warning_once, through a cache) whose
    code returns nothing?"""
    func = fn.func if isinstance(fn, MethodV) else getattr(fn, "_obj", None)
    func = getattr(func, "__func__", func)
    name = getattr(func, "__name__", "")
    if getattr(func, "__module__", "") == "logging" or (
            isinstance(func, types.FunctionType) and func.__globals__.get("__name__") == "logging"):
        return name in _EMITTERS
    inner = getattr(func, "__wrapped__", func)
    return isinstance(inner, types.FunctionType) and _returns_none(inner.__code__)


def _returns_none(code: types.CodeType) -> bool:
    """Every return of ``code`` returns the constant None (not a generator)."""
    if code.co_flags & (inspect.CO_GENERATOR | inspect.CO_COROUTINE |
                        inspect.CO_ASYNC_GENERATOR):
        return False
    prev = None
    for ins in dis.get_instructions(code):
        if ins.opname == "RETURN_CONST" and ins.argval is not None:
            return False
        if ins.opname == "RETURN_VALUE" and not (
                prev is not None and prev.opname == "LOAD_CONST" and prev.argval is None):
            return False
        prev = ins
    return True


def is_logging(fn) -> bool:
    return getattr(fn, "__module__", "") == "logging" or (
        isinstance(fn, types.FunctionType) and fn.__globals__.get("__name__") == "logging")
