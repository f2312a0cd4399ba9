"""Context managers: the ones the graph models (grad mode and autocast), and
which other managers run traced.

In: ``torch.no_grad()``, ``torch.enable_grad()``, ``torch.set_grad_enabled(m)``,
``torch.autocast(...)``, ``contextlib.nullcontext()`` made while tracing,
and the ``__exit__`` of such a manager entered natively before a resume
function (wrapped by output.py).
Out: ``CtxV`` (entered by BEFORE_WITH as a mode switch inside the graph),
``ExitV`` (the ``__exit__`` BEFORE_WITH leaves on the stack; calling it
switches back), and :func:`set_grad_mode`. A torch-function mode's block is
a ``CtxV`` too: it pushes the mode on the trace's symbolic stack
(modes.py). After a break inside the block
the replacement enters the manager natively (rebuild.Rebuilder.reenter).
:func:`traced_manager` / :func:`traceable_class`: a manager whose
``__enter__`` and ``__exit__`` are Python code outside torch (a user class,
``contextlib.suppress``, ``contextlib.nullcontext``, a ``@contextmanager``
generator: contextlib's code over a GeneratorV) is entered and exited by
running those methods traced, its exit also on an exception (the
with-block's cleanup, handlers/exceptions.py); torch's managers touch global
state the trace does not model, and run natively.
"""
from __future__ import annotations

import contextlib
import inspect
import types
from typing import Any

import torch

from ...torch_compat import set_grad_enabled_c
from ..breaks import GraphBreak
from .base import Value
from .constants import Const
from .objects import NewObjV, ObjV, class_attr

# packages whose managers run natively: their __enter__/__exit__ change
# global state (mode stacks, profilers, devices) the trace does not model
_NATIVE_PACKAGES = ("torch", "janus_frame")
# managers whose exit runs callbacks through machinery the trace does not
# model (sys.exc_info(), deques of bound methods)
_NATIVE_CLASSES = (contextlib.ExitStack, contextlib.AsyncExitStack)


def traceable_class(cls: type) -> bool:
    """Are the ``__enter__`` and ``__exit__`` of ``cls`` traced?"""
    if issubclass(cls, _NATIVE_CLASSES):
        return False
    for name in ("__enter__", "__exit__"):
        fn = inspect.getattr_static(cls, name, None)
        if not isinstance(fn, types.FunctionType):
            return False
        if (fn.__globals__.get("__name__") or "").split(".")[0] in _NATIVE_PACKAGES:
            return False
    return True


def traced_manager(tx, mgr: Value) -> tuple[Value, Value] | None:
    """(``__exit__``, ``__enter__``) of the manager ``mgr``, bound to it and
    looked up on its class as the with-statement does, when they run
    traced; else None (the manager is entered natively)."""
    if not isinstance(mgr, (ObjV, NewObjV)):
        return None
    cls = mgr.python_type()
    if isinstance(mgr, ObjV) and isinstance(mgr.obj, type) or not traceable_class(cls):
        return None
    return tuple(class_attr(tx, mgr, cls, n, inspect.getattr_static(cls, n))
                 for n in ("__exit__", "__enter__"))


class CtxV(Value):
    """A known context manager: ``kind`` is 'grad' (``arg`` = enabled),
    'grad_set' (``arg`` = the mode before, applied at construction),
    'autocast' (``arg`` = torch.autocast's arguments), 'null', or
    'autocast_native' (entered before the graph), or 'tf_mode' (``arg`` =
    the value of a TorchFunctionMode whose block is traced: modes.py)."""

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
        if self.kind == "tf_mode":  # the trace's own stack: the real one is untouched
            out.tf_modes.append(self.arg)
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
        elif kind == "tf_mode":
            # TorchFunctionMode.__exit__ pops whatever mode is on top
            if not out.tf_modes:
                raise GraphBreak("JF016", "the exit of a torch-function mode entered before "
                                 "the graph")
            out.tf_modes.pop()
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
