"""Context managers the graph models: grad mode and autocast.

In: ``torch.no_grad()``, ``torch.enable_grad()``, ``torch.set_grad_enabled(m)``,
``torch.autocast(...)``, ``contextlib.nullcontext()`` made while tracing,
and the ``__exit__`` of such a manager entered natively before a resume
function (wrapped by output.py).
Out: ``CtxV`` (entered by BEFORE_WITH as a mode switch inside the graph),
``ExitV`` (the ``__exit__`` BEFORE_WITH leaves on the stack; calling it
switches back), and :func:`set_grad_mode`. After a break inside the block
the replacement enters the manager natively (rebuild.Rebuilder.reenter).
"""
from __future__ import annotations

from typing import Any

import torch

from ...torch_compat import set_grad_enabled_c
from ..breaks import GraphBreak
from .base import Value
from .constants import Const


class CtxV(Value):
    """A known context manager: ``kind`` is 'grad' (``arg`` = enabled),
    'grad_set' (``arg`` = the mode before, applied at construction),
    'autocast' (``arg`` = torch.autocast's arguments), 'null', or
    'autocast_native' (entered before the graph)."""

    __slots__ = ("kind", "arg", "source")

    def __init__(self, kind: str, arg: Any) -> None:
        self.kind = kind
        self.arg = arg
        self.source = None

    def python_type(self) -> type:
        return object

    def enter(self, tx):
        """Apply the entry inside the graph; returns what the exit restores."""
        out = tx.output
        if self.kind == "grad":
            prev = out.grad_enabled
            set_grad_mode(out, self.arg)
            return prev
        if self.kind == "grad_set":  # set_grad_enabled(): applied at construction
            return self.arg
        if self.kind == "autocast":
            node = out.graph.call_function(torch.amp.autocast_mode._enter_autocast,
                                           tuple(self.arg))
            out.autocast.append((self.arg, node))
            return node
        if self.kind == "null":
            return None
        raise GraphBreak("JF016", self.kind)


class ExitV(Value):
    """The ``__exit__`` BEFORE_WITH leaves on the stack for a CtxV."""

    __slots__ = ("ctx", "restore", "source")

    def __init__(self, ctx: CtxV, restore: Any) -> None:
        self.ctx = ctx
        self.restore = restore
        self.source = None

    def python_type(self) -> type:
        return object

    def call(self, tx, args: list, kwargs: dict) -> Value:
        out = tx.output
        kind = self.ctx.kind
        if kind in ("grad", "grad_set"):
            set_grad_mode(out, self.restore)
        elif kind == "autocast":
            out.graph.call_function(torch.amp.autocast_mode._exit_autocast, (self.restore,))
            out.autocast.pop()
        elif kind == "autocast_native":
            # entered natively before this segment: its exit runs natively too
            raise GraphBreak("JF016", "the end of an autocast region entered before the graph")
        return Const(None)

    def reconstruct(self, rb) -> tuple[str, bool]:
        if self.source is not None:  # entered natively before: the same object
            return self.source.expr(), False
        return rb.reenter(self), True


def set_grad_mode(out, enabled: bool) -> None:
    """Switch grad mode inside the graph ``out`` (OutputGraph) records."""
    if out.grad_enabled != enabled:
        out.graph.call_function(set_grad_enabled_c, (bool(enabled),))
        out.grad_enabled = bool(enabled)
