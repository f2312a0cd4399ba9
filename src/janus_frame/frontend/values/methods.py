"""Bound methods of symbolic receivers.

In: an attribute lookup that found a method: of a tensor or a container
(the receiver's kind models it), or a Python function (a user method, one
reached through ``super()`` or a class).
Out: ``MethodV``; calling it asks the receiver's kind (``call_method``),
runs a traced stand-in (polyfills.py, through the receiver), defers a
logging call after the graph, or inlines the function.
"""
from __future__ import annotations

import types
from typing import Any

from ..breaks import GraphBreak
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
        if is_logging(func):
            if tx.config.reorder_logging:
                tx.output.effects.defer_call(self, list(args), dict(kwargs))
                return Const(None)
            raise GraphBreak("JF003", func.__qualname__)
        return tx.inline_function(func, [recv] + list(args), kwargs, None)

    def reconstruct(self, rb) -> tuple[str, bool]:
        fb = rb.fb
        if self.func is not None:
            # the function the trace resolved (it may come from super()):
            # looking the name up again could find an override
            return f"{fb.const(types.MethodType)}({fb.const(self.func)}, " \
                   f"{rb.expr(self.receiver)})", False
        return f"__jf_h_getattr({rb.expr(self.receiver)}, {self.name!r})", False


def is_logging(fn) -> bool:
    return getattr(fn, "__module__", "") == "logging" or (
        isinstance(fn, types.FunctionType) and fn.__globals__.get("__name__") == "logging")
