"""Torch-function modes entered while tracing.

In: a ``torch.overrides.TorchFunctionMode`` entered by a with-statement in
traced code (its class keeps TorchFunctionMode's own ``__enter__`` and
``__exit__`` and defines ``__torch_function__`` as a Python function), and
each tensor operation traced while one is entered (a torch function, a
tensor method, operator, subscript or attribute), given as the Python
operation over symbolic arguments.
Out: :func:`traced_mode_class` (is the class's block traced?), the symbolic
mode stack ``OutputGraph.tf_modes`` (pushed and popped by the block's
``CtxV``; the graph never touches the real stack), and :func:`dispatch`:
the call torch hands the top mode for the operation, traced through the
mode's ``__torch_function__`` with that mode popped, as torch's dispatch
does (torch/overrides.py ``handle_torch_function``, and the C dispatch that
stashes the mode while its handler runs).

Which call the mode sees (the function object, ``types``, and how the
arguments are spelled: ``F.softmax(x, 0)`` arrives as ``softmax(x, dim=0,
_stacklevel=3, dtype=None)``) is learned, not tabulated: the operation runs
once on meta stand-ins (the tensors' classes kept, so ``types`` is torch's)
under a recording mode and a fake-tensor mode (no real allocation, no random
numbers drawn). An operation torch dispatches as exactly one call whose
result it returns unchanged is traced through the mode; one it does not
dispatch at all runs as before; anything else (several calls, a result
post-processed by Python code around the dispatch) is a graph break, and the
operation runs natively under the mode, re-entered for it.
"""
from __future__ import annotations

import inspect
import types

import torch
from torch.overrides import TorchFunctionMode

from ..breaks import GraphBreak
from ..sources import PinnedSource
from .base import Value
from .constants import Const, SymV
from .containers import ListV, SliceV, TupleV
from .dicts import DictV
from .methods import MethodV
from .objects import NewObjV, ObjV
from .tensors import TensorV

_BASE_ENTER = TorchFunctionMode.__dict__["__enter__"]
_BASE_EXIT = TorchFunctionMode.__dict__["__exit__"]


def traced_mode_class(cls: type) -> bool:
    """Is a with-block over an instance of ``cls`` traced as a symbolic
    torch-function mode? Its entry and exit must be TorchFunctionMode's
    (push and pop, nothing else), its handler Python code."""
    if not isinstance(cls, type) or not issubclass(cls, TorchFunctionMode):
        return False
    if inspect.getattr_static(cls, "__enter__", None) is not _BASE_ENTER or \
            inspect.getattr_static(cls, "__exit__", None) is not _BASE_EXIT:
        return False
    return isinstance(inspect.getattr_static(cls, "__torch_function__", None),
                      types.FunctionType)


def mode_value(tx, mgr: Value) -> Value | None:
    """``mgr`` if it is a mode whose block is traced (its class guarded when
    it was read from the frame), else None."""
    if isinstance(mgr, NewObjV):
        return mgr if traced_mode_class(mgr.cls) else None
    if isinstance(mgr, ObjV) and not isinstance(mgr._obj, type) and \
            traced_mode_class(type(mgr._obj)):
        if mgr.source is not None:
            tx.output.guards.type_is(mgr.source, mgr._obj)
        return mgr
    return None


# -- learning the call torch makes --------------------------------------------------

class _Recorder(TorchFunctionMode):
    """Records the calls torch hands the top mode and lets them proceed."""

    def __init__(self) -> None:
        self.calls: list = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if self.calls:  # a second call: the operation is not one dispatch
            self.calls.append(None)
            raise _Abandon()
        self.calls.append((func, types, args, kwargs, _FAILED))
        out = func(*args, **(kwargs or {}))  # (an exception leaves _FAILED)
        self.calls[0] = (func, types, args, kwargs, out)
        return out


_FAILED = object()  # the recorded call raised on the stand-ins


class _Abandon(BaseException):
    """Stops a probe (BaseException: library code catching Exception around
    the dispatch must not swallow it)."""


_PROBE_FAKE = None


def _probe_fake_mode():
    global _PROBE_FAKE
    if _PROBE_FAKE is None:
        from torch._subclasses.fake_tensor import FakeTensorMode

        # meta stand-ins are real tensors to this mode: converted on use
        _PROBE_FAKE = FakeTensorMode(allow_non_fake_inputs=True)
    return _PROBE_FAKE


def _hint(n):
    if isinstance(n, torch.SymInt):
        hint = n.node.hint
        if hint is None:
            raise GraphBreak("JF006", "a data-dependent size inside a torch-function mode")
        return int(hint)
    return int(n)


def _stand_in(v: Value, tensors: dict):
    """A meta stand-in for ``v`` (tensors keep their class); ``tensors``
    maps the stand-ins' ids back to the values."""
    if isinstance(v, TensorV):
        f = v.fake
        t = torch.empty_strided([_hint(s) for s in f.shape], [_hint(s) for s in f.stride()],
                                dtype=f.dtype, device="meta")
        cls = v.python_type()
        if cls is not torch.Tensor:
            if not issubclass(cls, torch.nn.Parameter):
                raise GraphBreak("JF016", f"a {cls.__name__} inside a torch-function mode")
            t = cls(t, requires_grad=f.requires_grad)
        tensors[id(t)] = (t, v)
        return t
    if isinstance(v, SymV):
        return _hint(v.sym)
    if isinstance(v, Const):
        return v._value  # not specialised yet: see _map_back
    if isinstance(v, TupleV):
        return tuple(_stand_in(x, tensors) for x in v.items)
    if isinstance(v, ListV):
        return [_stand_in(x, tensors) for x in v.items]
    if isinstance(v, SliceV):
        return slice(*(_stand_in(x, tensors) for x in (v.start, v.stop, v.step)))
    if isinstance(v, DictV):
        return {k: _stand_in(x, tensors) for k, x in v.items.items()}
    if isinstance(v, ObjV) and isinstance(v._obj, (torch.dtype, torch.device, torch.layout,
                                                   torch.memory_format)):
        return v._obj
    raise GraphBreak("JF016", f"a {v.python_type().__name__} passed to a tensor operation "
                     "inside a torch-function mode")


def _probe(op, args: list, kwargs: dict, at_entry):
    """(func, types, args, kwargs, stand-in map) of the one call torch hands
    the top mode for ``op(*args, **kwargs)``; None when it hands none.
    ``at_entry(func)``: does ``op`` dispatch ``func`` on entry and return
    its result as is? (asked when the call fails on the stand-ins, e.g.
    needing data, so its result cannot be compared.)"""
    tensors: dict = {}
    sargs = [_stand_in(a, tensors) for a in args]
    skw = {k: _stand_in(v, tensors) for k, v in kwargs.items()}
    rec = _Recorder()
    try:
        with _probe_fake_mode(), rec:
            out = op(*sargs, **skw)
    except _Abandon:
        raise GraphBreak("JF016", "an operation torch dispatches to a torch-function mode as "
                         "several calls") from None
    except Exception as e:  # noqa: BLE001 - decided natively, under the real mode
        if len(rec.calls) == 1 and rec.calls[0][4] is _FAILED and at_entry(rec.calls[0][0]):
            func, typs, pargs, pkw, _ = rec.calls[0]
            return func, typs, pargs, pkw, (sargs, skw, tensors)
        raise GraphBreak("JF016", f"an operation inside a torch-function mode "
                         f"({type(e).__name__} on stand-ins)") from None
    if not rec.calls:
        return None
    func, typs, pargs, pkw, result = rec.calls[0]
    if result is not out:
        raise GraphBreak("JF016", "an operation whose result Python code changes after its "
                         "torch-function dispatch")
    return func, typs, pargs, pkw, (sargs, skw, tensors)


def _map_back(x, tensors: dict) -> Value:
    if isinstance(x, torch.Tensor):
        hit = tensors.get(id(x))
        if hit is None or hit[0] is not x:
            raise GraphBreak("JF016", "a tensor made before a torch-function dispatch")
        return hit[1]
    if type(x) is tuple:
        return TupleV([_map_back(y, tensors) for y in x])
    if type(x) is list:
        return ListV([_map_back(y, tensors) for y in x])
    if type(x) is dict:
        return DictV({k: _map_back(y, tensors) for k, y in x.items()})
    if isinstance(x, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        raise GraphBreak("JF016", "a symbolic size inside a torch-function mode")
    return Const(x)


def _call_values(args: list, kwargs: dict, pargs, pkw, standins):
    """The values the mode receives: the traced arguments where torch passes
    a stand-in on unchanged, else rebuilt from what it passes (constants
    the trace read are then specialised: their guards installed)."""
    sargs, skw, tensors = standins
    reused: set[int] = set()
    out_args = []
    for i, x in enumerate(pargs):
        if i < len(sargs) and x is sargs[i]:
            out_args.append(args[i])
            reused.add(id(args[i]))
        else:
            out_args.append(_map_back(x, tensors))
    out_kw = None
    if pkw is not None:
        out_kw = {}
        for k, x in pkw.items():
            if k in skw and x is skw[k]:
                out_kw[k] = kwargs[k]
                reused.add(id(kwargs[k]))
            else:
                out_kw[k] = _map_back(x, tensors)
    for v in list(args) + list(kwargs.values()):
        if id(v) not in reused:
            _specialise(v)
    return out_args, out_kw


def _specialise(v: Value) -> None:
    if isinstance(v, SymV):
        raise GraphBreak("JF016", "a symbolic size inside a torch-function mode")
    if isinstance(v, Const):
        v.as_python()
    elif isinstance(v, (TupleV, ListV)):
        for x in v.items:
            _specialise(x)
    elif isinstance(v, SliceV):
        for x in (v.start, v.stop, v.step):
            _specialise(x)
    elif isinstance(v, DictV):
        for x in v.items.values():
            _specialise(x)


def dispatch(tx, op, args: list, kwargs: dict, at_entry) -> Value | None:
    """``op(*args, **kwargs)`` while modes are entered: the top mode's
    ``__torch_function__`` traced on the call torch would hand it, the mode
    popped meanwhile; None when torch hands the mode nothing (the operation
    runs as without modes); ``at_entry``: see :func:`_probe`."""
    out = tx.output
    probed = _probe(op, args, kwargs, at_entry)
    if probed is None:
        return None
    func, typs, pargs, pkw, standins = probed
    call_args, call_kw = _call_values(args, kwargs, pargs, pkw, standins)
    mode = out.tf_modes.pop()
    try:
        handler = mode.get_attr(tx, "__torch_function__")
        # the function torch picks is fixed by the operation and its arguments'
        # types, which the trace guards: pinned, so the handler can read it
        func_v = out.wrap(func, PinnedSource(func))
        call = [func_v, Const(typs), TupleV(call_args),
                Const(None) if call_kw is None else DictV(call_kw)]
        if isinstance(handler, MethodV) and handler.receiver is mode and \
                isinstance(handler.func, types.FunctionType):
            # the handler the program entered, wherever its class is defined
            # (transformers uses one of torch._dynamo's); what it calls
            # follows the usual rules
            result = tx.inline_function(handler.func, [mode, *call], {}, None, library_ok=True)
        else:
            result = handler.call(tx, call, {})
    finally:
        out.tf_modes.append(mode)
    if isinstance(result, Const) and result._value is NotImplemented:
        # torch goes on to the next overload, then raises: not modelled
        raise GraphBreak("JF016", "a torch-function mode returned NotImplemented")
    return result
