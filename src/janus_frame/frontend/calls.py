"""What a call means: graph operations, trace-time folding, inlining.

In: a symbolic callable with symbolic positional and keyword arguments.
Out: the symbolic result. torch functions and Tensor methods become graph
nodes (run on fake tensors for metadata); pure builtins and ``math`` fold on
constants; user functions, methods and ``nn.Module`` forwards are inlined by
a child interpreter; known context managers become ``CtxV`` values; anything
opaque is a graph break with an ID.
"""
from __future__ import annotations

import abc
import collections
import contextlib
import sys
import dataclasses
import functools
import inspect
import logging
import math
import operator
import types

import torch

from . import polyfills
from .attrs import check_static
from .breaks import GraphBreak
from .builtins_impl import BUILTIN_HANDLERS, PURE_FUNCTIONS
from .ops_arith import _NO
from .sources import AttrSource, CellContentsSource, ItemSource
from .values import (
    Const, CtxV, DictV, ExitV, FunctionV, ItemV, ListV, MethodV, NewObjV, ObjV, RecordDictV,
    SetV, SuperV, SymV, TensorV, TupleV, Value,
)

# Tensor methods that need the tensor's data in Python
_DATA_DEPENDENT = {"item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__",
                   "data_ptr", "__array__", "__len__"}
# Tensor methods answered from metadata
_TENSOR_META_METHODS = {"size", "dim", "ndimension", "numel", "nelement", "stride",
                        "is_contiguous", "element_size", "is_floating_point", "is_complex",
                        "get_device", "storage_offset", "is_signed", "has_names",
                        "is_inference"}
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

_module_call = torch.nn.Module.__call__


class CallDispatch:
    def call_value(self, fn: Value, args: list, kwargs: dict) -> Value:
        if isinstance(fn, MethodV):
            return self.call_method(fn, args, kwargs)
        if isinstance(fn, FunctionV):
            return self.inline_function_value(fn, args, kwargs)
        if isinstance(fn, ExitV):
            self.exit_context(fn)
            return Const(None)
        if isinstance(fn, (ObjV, Const)):
            obj = fn.obj if isinstance(fn, ObjV) else fn.value
            return self.call_object(fn, obj, args, kwargs)
        raise GraphBreak("JF009", f"call of {fn.python_type().__name__}")

    # -- methods ---------------------------------------------------------------------
    def stand_in(self, recv: ObjV, name: str, func) -> Value | None:
        """Inline the traceable stand-in for ``recv.name()`` (polyfills.py:
        an optimizer step) when it applies now; None when there is none; a
        graph break when it does not apply yet (the call runs natively),
        carrying a guard that it still does not."""
        found = polyfills.for_call(recv.obj, name, func)
        if found is None or recv.source is None:
            return None
        stand_in, ready = found
        if ready(recv.obj):
            g = self.output.guards
            # module state of torch.optim: constants to the tracer, so guarded here
            g.add(f"{g.fb.const(polyfills.no_global_hooks)}()",
                  "no global optimizer step hooks")
            return self.inline_function(stand_in, [recv], {}, None)
        gb = GraphBreak("JF002", f"{type(recv.obj).__qualname__}.{name} (torch.optim) runs "
                        "natively: its traced stand-in does not apply yet (first step, step "
                        "hooks, sparse or complex gradients, or options it does not reproduce)")
        # the entry made at this break re-checks, so the step is traced once it applies
        gb.guard_calls = [(ready, recv.source, False, f"{recv.source.name()}.{name}() "
                                                       "still runs natively")]
        raise gb

    def call_method(self, m: MethodV, args, kwargs) -> Value:
        recv = m.receiver
        if isinstance(recv, ObjV) and m.func is not None and not args and not kwargs:
            # (the receiver's type is guarded by the attribute lookup that found m.func)
            out = self.stand_in(recv, m.name, m.func)
            if out is not None:
                return out
        if m.func is not None:
            if _is_logging(m.func):
                if self.config.reorder_logging:
                    self.output.effects.defer_call(m, list(args), dict(kwargs))
                    return Const(None)
                raise GraphBreak("JF003", m.func.__qualname__)
            return self.inline_function(m.func, [recv] + list(args), kwargs, None)
        if isinstance(recv, TensorV):
            return self.tensor_method(recv, m.name, args, kwargs)
        if isinstance(recv, (ListV, TupleV, DictV, SetV)):
            return self.container_method(recv, m.name, args, kwargs)
        raise GraphBreak("JF009", f"method {m.name} of {recv.python_type().__name__}")

    def tensor_method(self, t: TensorV, name: str, args, kwargs) -> Value:
        if name in _DATA_DEPENDENT:
            if name == "__len__":
                return self.output.size_of(t, 0) if t.fake.dim() else Const(self.length(t))
            if name == "item" and not args and not kwargs and self._compared_for_branch() and \
                    t.fake.numel() == 1 and not t.fake.is_complex():
                return ItemV(t)
            raise GraphBreak("JF004", f"Tensor.{name}()")
        if name in ("backward", "register_hook", "retain_grad", "register_post_accumulate_grad_hook"):
            raise GraphBreak("JF002", f"Tensor.{name}() runs outside any graph")
        if name in _TENSOR_META_METHODS:
            check_static(t)
            fake_args = [self.as_python(a) for a in args]
            if name == "size" and not kwargs and len(fake_args) <= 1 and \
                    all(isinstance(a, int) for a in fake_args):
                if fake_args and not -t.fake.dim() <= fake_args[0] < max(t.fake.dim(), 1):
                    raise GraphBreak("JF012", "Tensor.size(): dimension out of range")
                return self.output.size_of(t, fake_args[0] if fake_args else None)
            if name in ("numel", "nelement") and not args and not kwargs:
                return self.output.sym_value(t.fake.numel(), lambda: self.output.graph.
                                             call_function(torch.ops.aten.sym_numel.default, (t.node,)))
            out = self.fold(getattr(t.fake, name), *fake_args)
            if isinstance(out.value, torch.SymInt) or isinstance(out.value, tuple) and any(
                    isinstance(x, torch.SymInt) for x in out.value):
                # strides and offsets of dynamic tensors: specialised
                out = Const(_specialise(out.value))
            return out
        out = self.output.call("call_method", name, (t, *args), kwargs)
        if name.endswith("_") and not name.endswith("__") and isinstance(out, TensorV):
            return t  # in-place: the result is the receiver itself
        return out

    def _compared_for_branch(self) -> bool:
        """Do the next instructions compare the value just computed with a
        loaded operand and branch on the result (``if t.item() > 0:``)?"""
        nxt = [ins.name for ins in self.instrs[self.ip:self.ip + 3]]
        return len(nxt) == 3 and nxt[0] in ("LOAD_CONST", "LOAD_FAST", "LOAD_GLOBAL",
                                             "LOAD_DEREF") and nxt[1] == "COMPARE_OP" and \
            nxt[2].startswith(("POP_JUMP_FORWARD_IF_TRUE", "POP_JUMP_FORWARD_IF_FALSE"))

    def container_method(self, c: Value, name: str, args, kwargs) -> Value:
        if c.source is not None and c._lazy is not None and not kwargs:
            # a list/dict read from the frame and not looked into: record the
            # operation itself (replayed as is; no guard on length or keys)
            if isinstance(c, ListV) and name in ("append", "extend") and len(args) == 1:
                arg = args[0] if name == "append" else TupleV(self.iterate(args[0]))
                c.pending.append((name, [arg]))
                self.output.effects.container_mutated(c)
                return Const(None)
            if isinstance(c, DictV) and name == "update" and len(args) == 1:
                c.pending.append((name, [DictV(self.dict_items(args[0]))]))
                self.output.effects.container_mutated(c)
                return Const(None)
        if isinstance(c, ListV):
            if name in ("append", "extend", "insert", "pop", "remove", "clear", "reverse",
                        "sort"):
                self.mutate_list(c)
            if name == "append":
                c.items.append(args[0])
                return Const(None)
            if name == "extend":
                c.items.extend(self.iterate(args[0]))
                return Const(None)
            if name == "insert":
                c.items.insert(self.as_python(args[0]), args[1])
                return Const(None)
            if name == "pop":
                idx = self.as_python(args[0]) if args else -1
                return c.items.pop(idx)
            if name == "clear":
                c.items.clear()
                return Const(None)
            if name == "reverse":
                c.items.reverse()
                return Const(None)
            if name == "copy":
                return ListV(c.items)
        if isinstance(c, SetV):
            if name in ("add", "discard", "remove", "update", "clear"):
                if c.source is not None:
                    c.items  # noqa: B018 - realise
                    self.output.effects.container_mutated(c)
                if name == "add":
                    c.items = self._dedup(c.items + [args[0]])
                elif name == "update":
                    c.items = self._dedup(c.items + [x for a in args for x in self.iterate(a)])
                elif name == "clear":
                    c.items = []
                else:
                    kept = [x for x in c.items if not self._same_member(x, args[0])]
                    if name == "remove" and len(kept) == len(c.items):
                        raise GraphBreak("JF012", "KeyError in set.remove()")
                    c.items = kept
                return Const(None)
            if name in ("union", "intersection", "difference", "issubset", "issuperset",
                        "isdisjoint", "copy"):
                py = self.as_python(c)
                others = [self.as_python(TupleV(self.iterate(a))) for a in args]
                if py is _NO or any(o is _NO for o in others):
                    raise GraphBreak("JF009", f"set.{name}() of non-constant members")
                out = self.fold(getattr(py, name), *[set(o) for o in others]).value
                return SetV([Const(x) for x in out]) if isinstance(out, set) else Const(out)
        if isinstance(c, (ListV, TupleV)) and name in ("index", "count"):
            py = self.as_python(c)
            key = self.as_python(args[0])
            return self.fold(getattr(py, name), key)
        if isinstance(c, DictV):
            if name in ("keys", "values", "items"):
                if name == "keys":
                    return ListV([Const(k) for k in c.items])
                if name == "values":
                    return ListV(list(c.items.values()))
                return ListV([TupleV([Const(k), v]) for k, v in c.items.items()])
            if name == "get":
                key = self.as_python(args[0])
                default = args[1] if len(args) > 1 else Const(None)
                return c.items.get(key, default)
            if name in ("pop", "update", "setdefault", "clear", "popitem", "__setitem__"):
                self.mutate_dict(c)
            if name == "pop":
                key = self.as_python(args[0])
                if key in c.items:
                    return c.items.pop(key)
                if len(args) > 1:
                    return args[1]
                raise GraphBreak("JF012", f"KeyError {key!r}")
            if name == "update":
                if args:
                    c.items.update(self.dict_items(args[0]))
                c.items.update(kwargs)
                return Const(None)
            if name == "setdefault":
                key = self.as_python(args[0])
                return c.items.setdefault(key, args[1] if len(args) > 1 else Const(None))
            if name == "copy":
                return DictV(c.items, cls=c.cls)
            if name == "__setitem__":
                c.items[self.as_python(args[0])] = args[1]
                return Const(None)
        raise GraphBreak("JF009", f"{c.python_type().__name__}.{name}()")

    def _same_member(self, a: Value, b: Value) -> bool:
        if isinstance(a, ObjV) and isinstance(b, ObjV):
            return a.obj is b.obj
        x, y = self.as_python(a), self.as_python(b)
        return x is not _NO and y is not _NO and x == y

    # -- real callables ------------------------------------------------------------------
    def call_object(self, fnv: Value, obj, args, kwargs) -> Value:
        if getattr(obj, "_janus_disabled", False):
            raise GraphBreak("JF010", getattr(obj, "__qualname__", repr(obj)))
        orig = getattr(obj, "_janus_original", None)
        if orig is not None and getattr(obj, "_janus_compiler", None) is not None:
            # a janus_frame.compile wrapper called from compiled code: inline the original
            return self.call_object(ObjV(orig), orig, args, kwargs)
        handler = BUILTIN_HANDLERS.get(_key(obj))
        if handler is not None:
            return handler(self, args, kwargs)
        if obj is print or (isinstance(obj, types.MethodType) and
                             isinstance(obj.__self__, logging.Logger)):
            if self.config.reorder_logging:
                self.output.effects.defer_call(fnv, list(args), dict(kwargs))
                return Const(None)
            raise GraphBreak("JF003", f"{getattr(obj, '__qualname__', 'print')}()")
        if isinstance(obj, torch.nn.Module):
            return self.call_module(fnv, obj, args, kwargs)
        if isinstance(obj, type):
            return self.call_class(fnv, obj, args, kwargs)
        if isinstance(obj, types.MethodType):
            self_v = self.output.wrap(obj.__self__, AttrSource(fnv.source, "__self__")
                                      if fnv.source is not None else None)
            func = obj.__func__
            if isinstance(self_v, ObjV) and not args and not kwargs and \
                    polyfills.for_call(obj.__self__, obj.__name__, func) is not None:
                self.output.guards.type_is(AttrSource(fnv.source, "__self__"), obj.__self__)
                self.output.guards.identity(AttrSource(fnv.source, "__func__"), func)
                return self.stand_in(self_v, obj.__name__, func)
            if isinstance(func, types.FunctionType):
                if _is_logging(func):
                    raise GraphBreak("JF003", func.__qualname__)
                return self.inline_function(func, [self_v] + list(args), kwargs,
                                            AttrSource(fnv.source, "__func__")
                                            if fnv.source is not None else None)
            return self.call_object(ObjV(func), func, [self_v] + list(args), kwargs)
        if isinstance(obj, functools.partial):
            src = fnv.source
            pargs = [self.output.wrap(a, ItemSource(AttrSource(src, "args"), i) if src else None)
                     for i, a in enumerate(obj.args)]
            pkw = {k: self.output.wrap(a, ItemSource(AttrSource(src, "keywords"), k)
                                       if src else None)
                   for k, a in obj.keywords.items()}
            func_v = self.output.wrap(obj.func, AttrSource(src, "func") if src else None)
            return self.call_value(func_v, pargs + list(args), {**pkw, **kwargs})
        if _is_torch_op(obj):
            return self.call_torch(obj, args, kwargs)
        if obj in PURE_FUNCTIONS or getattr(obj, "__module__", None) == "math":
            return self.fold_call(obj, args, kwargs)
        if isinstance(obj, types.FunctionType):
            if _is_logging(obj):
                raise GraphBreak("JF003", obj.__qualname__)
            return self.inline_function(obj, args, kwargs, fnv.source)
        if isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType,
                            types.MethodWrapperType)):
            recv = getattr(obj, "__self__", None)
            if isinstance(recv, (str, bytes, tuple, int, float, frozenset, torch.Size)):
                return self.fold_call(obj, args, kwargs)
            if isinstance(recv, logging.Logger):
                raise GraphBreak("JF003", obj.__qualname__)
            raise GraphBreak("JF002", getattr(obj, "__qualname__", repr(obj)))
        call = getattr(type(obj), "__call__", None)
        if isinstance(call, types.FunctionType):
            return self.inline_function(call, [fnv] + list(args), kwargs, None)
        raise GraphBreak("JF002", f"call of {type(obj).__name__}")

    def fold_call(self, fn, args, kwargs) -> Value:
        pa = [self.as_python(a) for a in args]
        pk = {k: self.as_python(v) for k, v in kwargs.items()}
        if any(isinstance(a, TensorV) for a in args) or any(
                isinstance(a, TensorV) for a in kwargs.values()):
            raise GraphBreak("JF004", f"{getattr(fn, '__name__', fn)}() of a tensor")
        from .ops_arith import _NO

        if any(a is _NO for a in pa) or any(v is _NO for v in pk.values()):
            raise GraphBreak("JF015", f"{getattr(fn, '__name__', fn)}() of non-constant values")
        return self.fold(functools.partial(fn, **pk) if pk else fn, *pa)

    def call_torch(self, fn, args, kwargs) -> Value:
        if fn is torch.is_grad_enabled:
            return Const(self.output.grad_enabled)
        if fn is torch.get_default_dtype:
            return Const(torch.get_default_dtype())
        if fn in (torch.no_grad, torch.enable_grad):
            return CtxV("grad", fn is torch.enable_grad)
        if fn is torch.set_grad_enabled:
            return self.call_class(ObjV(fn), fn, args, kwargs)
        if fn is torch.is_tensor:
            return Const(isinstance(args[0], TensorV))
        if fn is torch._C._get_tracing_state:
            return Const(None)
        if getattr(fn, "__name__", "") in ("is_scripting", "is_tracing", "is_compiling",
                                           "is_dynamo_compiling", "is_exporting"):
            return Const(False)  # not TorchScript, not a tracer, not torch.compile
        return self.output.call("call_function", fn, tuple(args), kwargs)

    def call_module(self, fnv: Value, mod: torch.nn.Module, args, kwargs) -> Value:
        from torch.nn.modules import module as M

        if (mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks or
                mod._backward_pre_hooks or M._global_forward_hooks or
                M._global_forward_pre_hooks or M._global_backward_hooks or
                M._global_backward_pre_hooks):
            raise GraphBreak("JF014", type(mod).__name__)
        call = type(mod).__call__
        if call is not _module_call:
            return self.inline_function(call, [fnv] + list(args), kwargs, None)
        fwd = type(mod).forward
        if "forward" in mod.__dict__:
            raise GraphBreak("JF009", "forward replaced on the instance")
        return self.inline_function(fwd, [fnv] + list(args), kwargs, None)

    def call_class(self, fnv: Value, cls: type, args, kwargs) -> Value:
        if cls in (torch.no_grad, torch.enable_grad) and not args and not kwargs:
            return CtxV("grad", cls is torch.enable_grad)
        if cls is torch.set_grad_enabled:
            mode = self.as_python(args[0] if args else kwargs.get("mode"))
            if not isinstance(mode, bool):
                raise GraphBreak("JF015", "set_grad_enabled with a non-constant mode")
            prev = self.output.grad_enabled
            self.set_grad_mode(mode)  # takes effect at construction, like torch
            return CtxV("grad_set", prev)
        if cls is torch.autocast or cls is torch.amp.autocast or cls is torch.cpu.amp.autocast:
            return self.autocast_ctx(cls, args, kwargs)
        if cls is contextlib.nullcontext:
            return CtxV("null", None)
        if cls is torch.Size and len(args) == 1 and not kwargs and \
                isinstance(args[0], (ListV, TupleV)) and any(
                    isinstance(x, SymV) for x in args[0].items):
            return TupleV(list(args[0].items), cls=torch.Size)  # dynamic sizes stay symbolic
        if cls in (torch.Size, torch.device, torch.dtype, slice, range):
            return self.fold_call(cls, args, kwargs)
        if issubclass(cls, BaseException):
            raise GraphBreak("JF012", f"constructing exception {cls.__name__}")
        if issubclass(cls, tuple) and hasattr(cls, "_fields"):
            bound = _bind(inspect.signature(cls), args, kwargs)
            return TupleV([bound[f] for f in cls._fields], cls=cls)
        if issubclass(cls, torch.nn.Module) or issubclass(cls, torch.Tensor):
            raise GraphBreak("JF009", f"constructing {cls.__name__} inside a compiled frame")
        if cls.__module__ == "builtins" or _is_torch_op(cls):
            raise GraphBreak("JF002", f"constructing {cls.__name__}")
        if issubclass(cls, dict):
            return self.construct_dict_subclass(cls, args, kwargs)
        if hasattr(cls, "__enter__") and hasattr(cls, "__exit__"):
            raise GraphBreak("JF016", f"{cls.__qualname__}")
        # abstract base classes construct like plain classes (ABCMeta adds
        # only the check that no abstract method is left)
        if cls.__new__ is not object.__new__ or type(cls) not in (type, abc.ABCMeta) or \
                getattr(cls, "__abstractmethods__", None):
            raise GraphBreak("JF009", f"class {cls.__name__} has a custom __new__ or metaclass")
        obj = NewObjV(cls)
        init = cls.__init__
        if init is not object.__init__:
            if not isinstance(init, types.FunctionType):
                raise GraphBreak("JF009", f"{cls.__name__}.__init__ is not a Python function")
            self.inline_function(init, [obj] + list(args), kwargs, None)
        elif args or kwargs:
            raise GraphBreak("JF012", f"{cls.__name__}() takes no arguments")
        return obj

    def construct_record(self, cls, args, kwargs) -> Value:
        """A ModelOutput: its dataclass __init__ and __post_init__ (fields as
        attributes, non-None fields as items) without running them."""
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        if len(args) > len(names) or set(kwargs) - set(names):
            raise GraphBreak("JF012", f"{cls.__qualname__}() arguments")
        values = dict(zip(names, args))
        for k, v in kwargs.items():
            if k in values:
                raise GraphBreak("JF012", f"{cls.__qualname__}() got {k!r} twice")
            values[k] = v
        fields = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                fields[f.name] = values[f.name]
            elif f.default is not dataclasses.MISSING and f.default is None:
                fields[f.name] = Const(None)
            else:
                raise GraphBreak("JF009", f"{cls.__qualname__} field {f.name} without a None "
                                 "default")
        given = [v for v in fields.values() if not (isinstance(v, Const) and v.value is None)]
        first = next(iter(fields.values()), None)
        if len(given) == 1 and given[0] is first and not isinstance(first, TensorV):
            # __post_init__ then reads the first field as a dict or iterable of pairs
            raise GraphBreak("JF009", f"{cls.__qualname__} built from one non-tensor field")
        return RecordDictV(cls, fields)

    def construct_dict_subclass(self, cls, args, kwargs) -> Value:
        if _is_model_output(cls):
            return self.construct_record(cls, args, kwargs)
        # only the construction dict itself does: a class with its own
        # __init__/__new__/__setitem__ may store something else entirely
        for name in ("__init__", "__new__", "__setitem__", "update"):
            if getattr(cls, name) not in (getattr(dict, name), getattr(collections.OrderedDict,
                                                                       name)):
                raise GraphBreak("JF009", f"constructing {cls.__qualname__}, a dict with its "
                                 f"own {name}")
        items = {}
        if args:
            items.update(self.dict_items(args[0]))
        items.update(kwargs)
        return DictV(items, cls=cls)

    def autocast_ctx(self, cls, args, kwargs) -> Value:
        bound = {}
        names = ["device_type", "dtype", "enabled", "cache_enabled"]
        for n, a in zip(names, args):
            bound[n] = self.as_python(a)
        for k, v in kwargs.items():
            bound[k] = self.as_python(v)
        if cls is torch.cpu.amp.autocast:
            bound.setdefault("device_type", "cpu")
        dev = bound.get("device_type", "cpu")
        dtype = bound.get("dtype") or torch.get_autocast_dtype(dev)
        return CtxV("autocast", (dev, dtype, bound.get("enabled", True),
                                 bound.get("cache_enabled", None)))

    # -- inlining --------------------------------------------------------------------------
    def inline_function(self, fn: types.FunctionType, args, kwargs, fn_source) -> Value:
        mod = fn.__globals__.get("__name__") or ""
        if mod.startswith("torch") and fn.__name__ in ("is_scripting", "is_tracing",
                                                       "is_compiling", "is_dynamo_compiling",
                                                       "is_exporting"):
            return Const(False)
        if mod.startswith(_NO_INLINE_MODULES):
            raise GraphBreak("JF002", f"{fn.__qualname__} ({mod}) runs natively")
        if getattr(fn, "_janus_disabled", False):
            raise GraphBreak("JF010", fn.__qualname__)
        code = fn.__code__
        src = fn_source
        defaults = tuple(
            self.output.wrap(d, ItemSource(AttrSource(src, "__defaults__"), i) if src else None)
            for i, d in enumerate(fn.__defaults__ or ()))
        kwdefaults = {
            k: self.output.wrap(d, ItemSource(AttrSource(src, "__kwdefaults__"), k)
                                if src else None)
            for k, d in (fn.__kwdefaults__ or {}).items()}
        cells = {}
        for i, name in enumerate(code.co_freevars):
            real = fn.__closure__[i]
            csrc = CellContentsSource(ItemSource(AttrSource(src, "__closure__"), i)) \
                if src else None
            cells[name] = self.output.real_cell(real, name, csrc)
        locals_ = self.bind_args(code, fn.__name__, defaults, kwdefaults, args, kwargs)
        return self.inline_code(code, fn.__globals__, locals_, cells, fn_source=src)

    def inline_function_value(self, fn: FunctionV, args, kwargs) -> Value:
        cells = {name: c for name, c in zip(fn.code.co_freevars, fn.closure)}
        locals_ = self.bind_args(fn.code, fn.code.co_name, fn.defaults, fn.kwdefaults, args,
                                 kwargs)
        return self.inline_code(fn.code, fn.globals, locals_, cells)

    def bind_args(self, code, name, defaults, kwdefaults, args, kwargs) -> dict:
        """Argument binding with Python's own rules (inspect.Signature), on
        symbolic values."""
        sig = _signature(code, name, len(defaults), tuple(kwdefaults))
        try:
            ba = sig.bind(*args, **kwargs)
        except TypeError as e:
            raise GraphBreak("JF012", f"{name}(): {e}") from None
        out = {}
        params = sig.parameters
        real_names = {(n if n.isidentifier() else f"_jf_arg{i}"): n
                      for i, n in enumerate(code.co_varnames)}
        pos = [p for p in params.values()
               if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        first_default = len(pos) - len(defaults)
        for pname, p in params.items():
            if pname in ba.arguments:
                val = ba.arguments[pname]
                if p.kind == p.VAR_POSITIONAL:
                    val = TupleV(list(val))
                elif p.kind == p.VAR_KEYWORD:
                    val = DictV(dict(val))
            elif p.kind == p.VAR_POSITIONAL:
                val = TupleV([])
            elif p.kind == p.VAR_KEYWORD:
                val = DictV({})
            elif p.kind == p.KEYWORD_ONLY:
                val = kwdefaults[pname]
            else:
                val = defaults[pos.index(p) - first_default]
            out[real_names.get(pname, pname)] = val
        return out


@functools.lru_cache(maxsize=4096)
def _signature(code, name, ndefaults, kwnames) -> inspect.Signature:
    """The signature of a code object (defaults only marked as present)."""
    P = inspect.Parameter
    # comprehension code takes its iterator as '.0': not an identifier
    names = tuple(n if n.isidentifier() else f"_jf_arg{i}"
                  for i, n in enumerate(code.co_varnames))
    argc, kwc = code.co_argcount, code.co_kwonlyargcount
    params = []
    for i in range(argc):
        kind = P.POSITIONAL_ONLY if i < code.co_posonlyargcount else P.POSITIONAL_OR_KEYWORD
        has_default = i >= argc - ndefaults
        params.append(P(names[i], kind, default=i if has_default else P.empty))
    i = argc + kwc
    if code.co_flags & 0x04:
        params.append(P(names[i], P.VAR_POSITIONAL))
        i += 1
    for n in names[argc:argc + kwc]:
        params.append(P(n, P.KEYWORD_ONLY, default=0 if n in kwnames else P.empty))
    if code.co_flags & 0x08:
        params.append(P(names[i], P.VAR_KEYWORD))
    return inspect.Signature(params)


def _is_model_output(cls) -> bool:
    """A transformers ModelOutput subclass (transformers already imported)."""
    mod = sys.modules.get("transformers.utils.generic")
    base = getattr(mod, "ModelOutput", None) if mod is not None else None
    return base is not None and isinstance(cls, type) and issubclass(cls, base) and \
        dataclasses.is_dataclass(cls)


def _specialise(x):
    """A metadata result as plain ints (SymInts are guarded to their value)."""
    if isinstance(x, torch.SymInt):
        return int(x)
    if type(x) in (tuple, torch.Size):
        return type(x)(_specialise(y) for y in x)
    return x


def _bind(sig: inspect.Signature, args, kwargs) -> dict:
    try:
        ba = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise GraphBreak("JF012", str(e)) from None
    ba.apply_defaults()
    return {k: v if isinstance(v, Value) else Const(v) for k, v in ba.arguments.items()}


def _key(obj):
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


def _is_logging(fn) -> bool:
    return getattr(fn, "__module__", "") == "logging" or (
        isinstance(fn, types.FunctionType) and fn.__globals__.get("__name__") == "logging")


__all__ = ["CallDispatch", "math", "operator", "SuperV"]
