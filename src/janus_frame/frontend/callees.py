"""What calling a real Python object means: dispatch over the callee.

In: the frame being interpreted (interpreter.Translator), a callee read from
the frame or the program (a builtin, a torch function, an ``nn.Module``, a
class, a Python function, a bound method, a ``functools.partial`` ...) and
symbolic positional and keyword arguments.
Out: the symbolic result. torch functions become graph nodes (run on fake
tensors for metadata); builtins go to their handlers (builtins_impl.py);
pure builtins and ``math`` fold on constants; Python functions, methods and
``nn.Module`` forwards are inlined in a child frame; classes are constructed
(known context managers become ``CtxV`` values, namedtuples and plain
dict subclasses are modelled, user classes run their ``__init__`` traced);
anything opaque is a graph break with an ID.

Calls of symbolic values that are not real objects (functions made while
tracing, bound methods of tensors and containers) are their kind's business
(``Value.call``, values/).
"""
from __future__ import annotations

import abc
import collections
import contextlib
import dataclasses
import functools
import inspect
import logging
import sys
import types

import torch

from . import polyfills
from .breaks import GraphBreak, would_raise
from .builtins_impl import BUILTIN_HANDLERS, PURE_FUNCTIONS
from .sources import AttrSource, CellContentsSource, ItemSource
from .values import (
    NO, Const, CtxV, DictV, ListV, NewObjV, ObjV, RecordDictV, SymV, TensorV, TupleV, Value,
)
from .values.constants import fold
from .values.contexts import set_grad_mode
from .values.functions import bind_args
from .values.methods import is_logging

# torch functions that must not be run at trace time nor put in a graph
_TORCH_DENY = {
    "manual_seed", "seed", "initial_seed", "set_rng_state", "get_rng_state", "save", "load",
    "compile", "set_default_dtype", "set_default_device", "set_printoptions", "set_num_threads",
    "use_deterministic_algorithms", "set_grad_enabled_", "grad", "backward",
}
_TORCH_DENY_MODULES = ("torch.autograd", "torch.utils", "torch.distributed", "torch.jit",
                       "torch.optim", "torch.cuda", "torch.random", "torch.serialization",
                       "torch.hub", "torch.onnx", "torch.export", "torch.fx", "torch.compiler",
                       "torch.overrides", "torch._dynamo", "torch.profiler")

# Python functions of these packages are never inlined: they run natively
# (optimizers, autograd, distributed, compiler entry points, ...)
_NO_INLINE_MODULES = ("torch.optim", "torch.autograd", "torch._compile", "torch._dynamo",
                      "torch.distributed", "torch.cuda", "torch.jit", "torch.fx",
                      "torch.profiler", "torch.serialization", "torch.hub", "torch.onnx",
                      "torch.export", "torch.compiler", "torch._tensor", "torch.random",
                      "torch.utils.data", "torch.utils.checkpoint", "torch.utils.hooks")
# "what is tracing me?" queries, by (module, qualified name) so that none of
# their modules need be imported: while janus_frame traces, the program is
# being compiled (libraries take their compiled path, as under
# torch.compile), not scripted, not traced by another tracer, not exported.
# Folded only while tracing: code run natively sees the real answers.
_TRACING_STATE = {
    ("torch.compiler", "is_compiling"): True,
    ("torch.compiler", "is_dynamo_compiling"): True,
    ("torch._dynamo.external_utils", "is_compiling"): True,
    ("torch._utils", "is_compiling"): True,
    ("torch.nn.modules.activation", "_is_make_fx_tracing"): True,
    ("torch.compiler", "is_exporting"): False,
    ("torch._jit_internal", "is_scripting"): False,
    ("torch.jit._trace", "is_tracing"): False,
    ("torch.fx._symbolic_trace", "is_fx_tracing"): False,
    ("torch.onnx", "is_in_onnx_export"): False,
    ("torch.onnx._globals", "is_in_onnx_export"): False,
}


def _tracing_state(fn):
    """The folded answer of a tracing-state query, or None if ``fn`` is none."""
    try:
        key = (getattr(fn, "__module__", None), getattr(fn, "__qualname__", None))
        return _TRACING_STATE.get(key)
    except TypeError:  # an unhashable attribute value
        return None

_module_call = torch.nn.Module.__call__


def call_object(tx, fnv: Value, obj, args: list, kwargs: dict) -> Value:
    """``obj(*args, **kwargs)``; ``fnv`` is the value ``obj`` was read as."""
    if getattr(obj, "_janus_disabled", False):
        raise GraphBreak("JF010", getattr(obj, "__qualname__", repr(obj)))
    orig = getattr(obj, "_janus_original", None)
    if orig is not None and getattr(obj, "_janus_compiler", None) is not None:
        # a janus_frame.compile wrapper called from compiled code: inline the original
        return call_object(tx, ObjV(orig), orig, args, kwargs)
    handler = BUILTIN_HANDLERS.get(_key(obj))
    if handler is not None:
        return handler(tx, args, kwargs)
    if obj is print or (isinstance(obj, types.MethodType) and
                         isinstance(obj.__self__, logging.Logger)):
        if tx.config.reorder_logging:
            tx.output.effects.defer_call(fnv, list(args), dict(kwargs))
            return Const(None)
        raise GraphBreak("JF003", f"{getattr(obj, '__qualname__', 'print')}()")
    if isinstance(obj, torch.nn.Module):
        return _call_module(tx, fnv, obj, args, kwargs)
    if isinstance(obj, type):
        return _call_class(tx, fnv, obj, args, kwargs)
    if isinstance(obj, types.MethodType):
        return _call_bound_method(tx, fnv, obj, args, kwargs)
    if isinstance(obj, functools.partial):
        src = fnv.source
        pargs = [tx.output.wrap(a, ItemSource(AttrSource(src, "args"), i) if src else None)
                 for i, a in enumerate(obj.args)]
        pkw = {k: tx.output.wrap(a, ItemSource(AttrSource(src, "keywords"), k) if src else None)
               for k, a in obj.keywords.items()}
        func_v = tx.output.wrap(obj.func, AttrSource(src, "func") if src else None)
        return func_v.call(tx, pargs + list(args), {**pkw, **kwargs})
    if _is_torch_op(obj):
        return _call_torch(tx, obj, args, kwargs)
    if obj in PURE_FUNCTIONS or getattr(obj, "__module__", None) == "math":
        return _fold_call(obj, args, kwargs)
    if isinstance(obj, types.FunctionType):
        if is_logging(obj):
            raise GraphBreak("JF003", obj.__qualname__)
        return inline_function(tx, obj, args, kwargs, fnv.source)
    if isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType,
                        types.MethodWrapperType)):
        recv = getattr(obj, "__self__", None)
        if isinstance(recv, (str, bytes, tuple, int, float, frozenset, torch.Size)):
            return _fold_call(obj, args, kwargs)
        if isinstance(recv, logging.Logger):
            raise GraphBreak("JF003", obj.__qualname__)
        raise GraphBreak("JF002", getattr(obj, "__qualname__", repr(obj)))
    call = getattr(type(obj), "__call__", None)
    if isinstance(call, types.FunctionType):
        return inline_function(tx, call, [fnv] + list(args), kwargs, None)
    raise GraphBreak("JF002", f"call of {type(obj).__name__}")


def _call_bound_method(tx, fnv: Value, obj: types.MethodType, args, kwargs) -> Value:
    self_v = tx.output.wrap(obj.__self__, AttrSource(fnv.source, "__self__")
                            if fnv.source is not None else None)
    func = obj.__func__
    if isinstance(self_v, ObjV) and not args and not kwargs and \
            polyfills.for_call(obj.__self__, obj.__name__, func) is not None:
        tx.output.guards.type_is(AttrSource(fnv.source, "__self__"), obj.__self__)
        tx.output.guards.identity(AttrSource(fnv.source, "__func__"), func)
        return self_v.stand_in(tx, obj.__name__, func)
    if isinstance(func, types.FunctionType):
        if is_logging(func):
            raise GraphBreak("JF003", func.__qualname__)
        return inline_function(tx, func, [self_v] + list(args), kwargs,
                               AttrSource(fnv.source, "__func__")
                               if fnv.source is not None else None)
    return call_object(tx, ObjV(func), func, [self_v] + list(args), kwargs)


def _fold_call(fn, args, kwargs) -> Value:
    pa = [a.as_python() for a in args]
    pk = {k: v.as_python() for k, v in kwargs.items()}
    if any(isinstance(a, TensorV) for a in args) or any(
            isinstance(a, TensorV) for a in kwargs.values()):
        raise GraphBreak("JF004", f"{getattr(fn, '__name__', fn)}() of a tensor")
    if any(a is NO for a in pa) or any(v is NO for v in pk.values()):
        raise GraphBreak("JF015", f"{getattr(fn, '__name__', fn)}() of non-constant values")
    return fold(functools.partial(fn, **pk) if pk else fn, *pa)


def _call_torch(tx, fn, args, kwargs) -> Value:
    if fn is torch.is_grad_enabled:
        return Const(tx.output.grad_enabled)
    if fn is torch.get_default_dtype:
        return Const(torch.get_default_dtype())
    if fn in (torch.no_grad, torch.enable_grad):
        return CtxV("grad", fn is torch.enable_grad)
    if fn is torch.set_grad_enabled:
        return _call_class(tx, ObjV(fn), fn, args, kwargs)
    if fn is torch.is_tensor:
        return Const(isinstance(args[0], TensorV))
    if fn is torch._C._get_tracing_state:
        return Const(None)
    folded = _tracing_state(fn)
    if folded is not None:
        return Const(folded)
    return tx.output.call("call_function", fn, tuple(args), kwargs)


def _call_module(tx, fnv: Value, mod: torch.nn.Module, args, kwargs) -> Value:
    from torch.nn.modules import module as M

    if (mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks or
            mod._backward_pre_hooks or M._global_forward_hooks or
            M._global_forward_pre_hooks or M._global_backward_hooks or
            M._global_backward_pre_hooks):
        raise GraphBreak("JF014", type(mod).__name__)
    call = type(mod).__call__
    if call is not _module_call:
        return inline_function(tx, call, [fnv] + list(args), kwargs, None)
    fwd = type(mod).forward
    if "forward" in mod.__dict__:
        raise GraphBreak("JF023", "forward replaced on the instance")
    return inline_function(tx, fwd, [fnv] + list(args), kwargs, None)


def _call_class(tx, fnv: Value, cls: type, args, kwargs) -> Value:
    if cls in (torch.no_grad, torch.enable_grad) and not args and not kwargs:
        return CtxV("grad", cls is torch.enable_grad)
    if cls is torch.set_grad_enabled:
        mode_v = args[0] if args else kwargs.get("mode")
        mode = mode_v.as_python() if mode_v is not None else NO
        if not isinstance(mode, bool):
            raise GraphBreak("JF015", "set_grad_enabled with a non-constant mode")
        prev = tx.output.grad_enabled
        set_grad_mode(tx.output, mode)  # takes effect at construction, like torch
        return CtxV("grad_set", prev)
    if cls is torch.autocast or cls is torch.amp.autocast or cls is torch.cpu.amp.autocast:
        return _autocast_ctx(cls, args, kwargs)
    if cls is contextlib.nullcontext:
        return CtxV("null", None)
    if cls is torch.Size and len(args) == 1 and not kwargs and \
            isinstance(args[0], (ListV, TupleV)) and any(
                isinstance(x, SymV) for x in args[0].items):
        return TupleV(list(args[0].items), cls=torch.Size)  # dynamic sizes stay symbolic
    if cls in (torch.Size, torch.device, torch.dtype, slice, range):
        return _fold_call(cls, args, kwargs)
    if issubclass(cls, BaseException):
        raise GraphBreak("JF012", f"constructing exception {cls.__name__}")
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        bound = _bind(inspect.signature(cls), args, kwargs)
        return TupleV([bound[f] for f in cls._fields], cls=cls)
    if issubclass(cls, torch.nn.Module) or issubclass(cls, torch.Tensor):
        raise GraphBreak("JF023", f"constructing {cls.__name__} inside a compiled frame")
    if cls.__module__ == "builtins" or _is_torch_op(cls):
        raise GraphBreak("JF002", f"constructing {cls.__name__}")
    if issubclass(cls, dict):
        return _construct_dict_subclass(tx, cls, args, kwargs)
    if hasattr(cls, "__enter__") and hasattr(cls, "__exit__"):
        raise GraphBreak("JF016", f"{cls.__qualname__}")
    # abstract base classes construct like plain classes (ABCMeta adds
    # only the check that no abstract method is left)
    if cls.__new__ is not object.__new__ or type(cls) not in (type, abc.ABCMeta) or \
            getattr(cls, "__abstractmethods__", None):
        raise GraphBreak("JF023", f"class {cls.__name__} has a custom __new__ or metaclass")
    obj = NewObjV(cls)
    init = cls.__init__
    if init is not object.__init__:
        if not isinstance(init, types.FunctionType):
            raise GraphBreak("JF023", f"{cls.__name__}.__init__ is not a Python function")
        inline_function(tx, init, [obj] + list(args), kwargs, None)
    elif args or kwargs:
        raise would_raise(TypeError, f"{cls.__name__}() takes no arguments")
    return obj


def _construct_record(cls, args, kwargs) -> Value:
    """A ModelOutput: its dataclass __init__ and __post_init__ (fields as
    attributes, non-None fields as items) without running them."""
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    if len(args) > len(names) or set(kwargs) - set(names):
        raise would_raise(TypeError, f"{cls.__qualname__}() arguments")
    values = dict(zip(names, args))
    for k, v in kwargs.items():
        if k in values:
            raise would_raise(TypeError, f"{cls.__qualname__}() got {k!r} twice")
        values[k] = v
    fields = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            fields[f.name] = values[f.name]
        elif f.default is not dataclasses.MISSING and f.default is None:
            fields[f.name] = Const(None)
        else:
            raise GraphBreak("JF023", f"{cls.__qualname__} field {f.name} without a None "
                             "default")
    given = [v for v in fields.values() if not (isinstance(v, Const) and v.value is None)]
    first = next(iter(fields.values()), None)
    if len(given) == 1 and given[0] is first and not isinstance(first, TensorV):
        # __post_init__ then reads the first field as a dict or iterable of pairs
        raise GraphBreak("JF023", f"{cls.__qualname__} built from one non-tensor field")
    return RecordDictV(cls, fields)


def _construct_dict_subclass(tx, cls, args, kwargs) -> Value:
    if _is_model_output(cls):
        return _construct_record(cls, args, kwargs)
    # only the construction dict itself does: a class with its own
    # __init__/__new__/__setitem__ may store something else entirely
    for name in ("__init__", "__new__", "__setitem__", "update"):
        if getattr(cls, name) not in (getattr(dict, name), getattr(collections.OrderedDict,
                                                                   name)):
            raise GraphBreak("JF023", f"constructing {cls.__qualname__}, a dict with its "
                             f"own {name}")
    items = {}
    if args:
        items.update(args[0].dict_items(tx))
    items.update(kwargs)
    return DictV(items, cls=cls)


def _autocast_ctx(cls, args, kwargs) -> Value:
    bound = {}
    names = ["device_type", "dtype", "enabled", "cache_enabled"]
    for n, a in zip(names, args):
        bound[n] = a.as_python()
    for k, v in kwargs.items():
        bound[k] = v.as_python()
    if cls is torch.cpu.amp.autocast:
        bound.setdefault("device_type", "cpu")
    dev = bound.get("device_type", "cpu")
    dtype = bound.get("dtype") or torch.get_autocast_dtype(dev)
    return CtxV("autocast", (dev, dtype, bound.get("enabled", True),
                             bound.get("cache_enabled", None)))


def inline_function(tx, fn: types.FunctionType, args, kwargs, fn_source) -> Value:
    """Run the Python function ``fn`` on symbolic arguments in a child frame
    (``fn_source``: where ``fn`` was read, to guard its defaults and cells)."""
    mod = fn.__globals__.get("__name__") or ""
    folded = _tracing_state(fn)
    if folded is not None:
        return Const(folded)
    if mod.startswith(_NO_INLINE_MODULES):
        raise GraphBreak("JF002", f"{fn.__qualname__} ({mod}) runs natively")
    if getattr(fn, "_janus_disabled", False):
        raise GraphBreak("JF010", fn.__qualname__)
    code = fn.__code__
    src = fn_source
    out = tx.output
    defaults = tuple(
        out.wrap(d, ItemSource(AttrSource(src, "__defaults__"), i) if src else None)
        for i, d in enumerate(fn.__defaults__ or ()))
    kwdefaults = {
        k: out.wrap(d, ItemSource(AttrSource(src, "__kwdefaults__"), k) if src else None)
        for k, d in (fn.__kwdefaults__ or {}).items()}
    cells = {}
    for i, name in enumerate(code.co_freevars):
        real = fn.__closure__[i]
        csrc = CellContentsSource(ItemSource(AttrSource(src, "__closure__"), i)) \
            if src else None
        cells[name] = out.real_cell(real, name, csrc)
    locals_ = bind_args(code, fn.__name__, defaults, kwdefaults, args, kwargs)
    return tx.inline_code(code, fn.__globals__, locals_, cells, fn_source=src)


def _is_model_output(cls) -> bool:
    """A transformers ModelOutput subclass (transformers already imported)."""
    mod = sys.modules.get("transformers.utils.generic")
    base = getattr(mod, "ModelOutput", None) if mod is not None else None
    return base is not None and isinstance(cls, type) and issubclass(cls, base) and \
        dataclasses.is_dataclass(cls)


def _bind(sig: inspect.Signature, args, kwargs) -> dict:
    try:
        ba = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise would_raise(TypeError, str(e)) from None
    ba.apply_defaults()
    return {k: v if isinstance(v, Value) else Const(v) for k, v in ba.arguments.items()}


def _key(obj):
    """``obj`` as a key of the builtin-handler table (None when unhashable)."""
    try:
        hash(obj)
    except TypeError:
        return None
    return obj


def _is_torch_op(obj) -> bool:
    mod = getattr(obj, "__module__", None) or ""
    if not (mod == "torch" or mod.startswith("torch.") or mod.startswith("torch._C")):
        # methods of torch._C.TensorBase accessed unbound (torch.Tensor.add)
        objclass = getattr(obj, "__objclass__", None)
        if objclass is not None and issubclass(objclass, torch._C.TensorBase):
            return True
        return False
    if mod.startswith(_TORCH_DENY_MODULES):
        return False
    name = getattr(obj, "__name__", "")
    if name in _TORCH_DENY:
        return False
    return callable(obj) and not isinstance(obj, type)
