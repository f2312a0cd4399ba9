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
``torch.vmap`` makes a ``VmapV`` (values/transforms.py); an
``autograd.Function``'s ``apply`` where no gradient can flow traces its
forward; inside a torch-function mode's block torch functions go through
the mode (values/modes.py); anything opaque is a graph break with an ID.

Calls of symbolic values that are not real objects (functions made while
tracing, bound methods of tensors and containers) are their kind's business
(``Value.call``, values/).
"""
from __future__ import annotations

import abc
import collections
import functools
import inspect
import logging
import types

import torch

from .. import torch_compat
from ..torch_compat import TensorBase, get_tracing_state
from . import polyfills
from .breaks import GraphBreak, would_raise
from .ddp import is_ddp, is_ddp_forward, wrapped_forward
from .builtins_impl import BUILTIN_HANDLERS, PURE_FUNCTIONS
from .sources import AttrSource, CellContentsSource, ItemSource, PinnedSource
from .values import (
    NO, Const, CtxV, DictObjV, DictV, ListV, NewObjV, ObjV, SymV, TensorV, TupleV, Value,
)
from .values.constants import fold, fold_call_lazy
from .values.contexts import set_grad_mode, traceable_class
from .values.dicts import builtin_entry
from .values.modes import traced_mode_class
from .values.transforms import VMAP_FUNCTIONS, make_vmap
from .values.exceptions import construct as construct_exception
from .values.functions import bind_args
from .values.methods import defer_logging, is_logging
from .values.objects import MISSING, NAMESPACE_NEW, lookup
from .values.new_modules import STATELESS as STATELESS_MODULES, construct as construct_module

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
_FRONTEND = __name__.rsplit(".", 1)[0] + "."  # janus_frame.frontend.
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
_OBJECT_NEW = object.__dict__["__new__"]
_OBJECT_INIT = object.__dict__["__init__"]
_DICT_NEW = dict.__dict__["__new__"]


def call_object(tx, fnv: Value, obj, args: list, kwargs: dict) -> Value:
    """``obj(*args, **kwargs)``; ``fnv`` is the value ``obj`` was read as."""
    if isinstance(fnv, ObjV) and fnv.by_recipe():
        if _called_by_recipe(obj):
            fnv.settle()  # the paths below guard what they read from it
        else:
            fnv.obj  # noqa: B018 - what the call does depends on the object itself
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
        if defer_logging(tx, fnv, args, kwargs, is_print=obj is print):
            return Const(None)
        raise GraphBreak("JF003", f"{getattr(obj, '__qualname__', 'print')}()")
    if isinstance(obj, torch.nn.Module):
        if "_janus_compiler" in obj.__dict__ and "_orig_mod" in obj._modules and \
                fnv.source is not None and _plain_module(obj):
            # a janus_frame.compile(module) called from compiled code, with
            # no hooks of its own: the module it wraps, traced into this graph
            tx.output.guards.module_plain(fnv.source)
            inner = obj._modules["_orig_mod"]
            src = AttrSource(fnv.source, "_orig_mod")
            return call_object(tx, tx.output.wrap(inner, src), inner, args, kwargs)
        if is_ddp(obj):
            # DDP's forward drives its reducer (C++ state the trace cannot
            # hold); run natively, it calls the module it wraps, whose
            # forward is then compiled as a frame of its own (ddp.py), also
            # where it is library code (nn.Sequential): the entry hands it on
            gb = GraphBreak("JF002", f"{type(obj).__name__}.forward runs natively; the "
                            "module it wraps is compiled as its own frame")
            gb.compile_codes = [wrapped_forward(obj)]
            raise gb
        return _call_module(tx, fnv, obj, args, kwargs)
    if isinstance(obj, type):
        return _call_class(tx, fnv, obj, args, kwargs)
    if isinstance(obj, types.MethodType):
        return _call_bound_method(tx, fnv, obj, args, kwargs)
    if isinstance(obj, functools.partial):
        # its function, arguments and keywords, each guarded as read (their
        # number and names too): a partial made anew each call is the same call
        src = fnv.source
        out = tx.output
        pargs = out.wrap(obj.args, AttrSource(src, "args") if src else None).iterate(tx)
        pkw = out.wrap(obj.keywords, AttrSource(src, "keywords") if src else None) \
            .dict_items(tx)
        func_v = out.wrap(obj.func, AttrSource(src, "func") if src else None)
        return func_v.call(tx, pargs + list(args), {**pkw, **kwargs})
    if any(obj is f for f in VMAP_FUNCTIONS):
        return make_vmap(tx, args, kwargs)
    if _is_torch_op(obj):
        return _call_torch(tx, obj, args, kwargs)
    if args and getattr(args[0], "builtin_methods", False) and builtin_entry(obj) and \
            isinstance(obj, (types.WrapperDescriptorType, types.MethodDescriptorType)) and \
            issubclass(args[0].python_type(), obj.__objclass__):
        # object.__setattr__(self, ...), dict.__setitem__(self, ...) on an
        # instance made while tracing: its kind applies the builtin method
        return args[0].call_method(tx, obj.__name__, list(args[1:]), kwargs)
    if (obj is object.__setattr__ and len(args) == 3 or
            obj is object.__getattribute__ and len(args) == 2) and \
            isinstance(args[0], ObjV) and args[0]._plain_object():
        # object.__setattr__(obj, key, value), object.__getattribute__(obj,
        # key) on an object read from the frame (frozen dataclasses, a
        # class's own __setattr__ / __getattribute__): the generic protocol
        return args[0].call_method(tx, obj.__name__, list(args[1:]), kwargs)
    if obj in PURE_FUNCTIONS or getattr(obj, "__module__", None) == "math":
        return _fold_call(obj, args, kwargs)
    if isinstance(obj, types.FunctionType):
        if is_logging(obj):
            if defer_logging(tx, fnv, args, kwargs):
                return Const(None)
            raise GraphBreak("JF003", obj.__qualname__)
        return inline_function(tx, obj, args, kwargs, fnv.source)
    if isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType,
                        types.MethodWrapperType)):
        recv = getattr(obj, "__self__", None)
        if isinstance(recv, (str, bytes, tuple, int, float, frozenset, torch.Size)) or \
                isinstance(recv, types.MappingProxyType) and isinstance(fnv, Const):
            # (a mapping proxy of a constant folded at trace time, such as
            # inspect.Signature.parameters; not a class's live __dict__)
            return _fold_call(obj, args, kwargs)
        if isinstance(recv, logging.Logger):
            raise GraphBreak("JF003", obj.__qualname__)
        if _FUNCTION_APPLY is None and isinstance(recv, type) and \
                issubclass(recv, torch.autograd.Function) and obj.__name__ == "apply":
            # torch >= 2.15: Function.apply is C, bound to the Function class
            return _autograd_function_apply(tx, recv, list(args), kwargs)
        raise GraphBreak("JF002", getattr(obj, "__qualname__", repr(obj)))
    call = lookup(tx, type(obj), "__call__")
    if isinstance(call, types.FunctionType):
        return inline_function(tx, call, [fnv] + list(args), kwargs, None)
    raise GraphBreak("JF002", f"call of {type(obj).__name__}")


def _called_by_recipe(obj) -> bool:
    """Does calling ``obj`` depend only on what the call paths read from it
    and guard (a Python function inlined: its code, defaults and cells; a
    partial: its parts; a module: its type, hooks and attributes), not on
    the object itself (a function run as a graph operation or by a
    handler)?"""
    if isinstance(obj, (functools.partial, torch.nn.Module)):
        return type(obj) is functools.partial or isinstance(obj, torch.nn.Module)
    if isinstance(obj, type):  # a namedtuple class (the only class guarded by recipe)
        return issubclass(obj, tuple) and hasattr(obj, "_fields")
    return (type(obj) is types.FunctionType and not getattr(obj, "_janus_disabled", False)
            and getattr(obj, "_janus_original", None) is None
            and BUILTIN_HANDLERS.get(_key(obj)) is None and not _is_torch_op(obj)
            and obj not in PURE_FUNCTIONS and obj.__module__ != "math" and not is_logging(obj))


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
            if defer_logging(tx, fnv, args, kwargs):
                return Const(None)
            raise GraphBreak("JF003", func.__qualname__)
        return inline_function(tx, func, [self_v] + list(args), kwargs,
                               AttrSource(fnv.source, "__func__")
                               if fnv.source is not None else None)
    return call_object(tx, ObjV(func), func, [self_v] + list(args), kwargs)


# autograd.Function.apply: a Python classmethod up to torch 2.14, a C
# classmethod from 2.15 on (its bound calls then arrive as builtin methods)
_FUNCTION_APPLY = getattr(torch.autograd.Function.apply, "__func__", None)
_BASE_SETUP_CONTEXT = inspect.getattr_static(torch.autograd.Function, "setup_context")


class NoGradCtx:
    """The ``ctx`` of an autograd.Function applied where no gradient can
    flow: what forward/setup_context record for backward is dropped."""

    def save_for_backward(self, *tensors):
        pass

    def save_for_forward(self, *tensors):
        pass

    def mark_dirty(self, *tensors):
        pass

    def mark_non_differentiable(self, *tensors):
        pass

    def set_materialize_grads(self, value):
        pass


def _function_class(v: Value) -> type | None:
    """The autograd.Function subclass ``v`` is, or None."""
    if isinstance(v, ObjV) and isinstance(v._obj, type) and \
            issubclass(v._obj, torch.autograd.Function):
        return v._obj
    return None


def _autograd_function_apply(tx, cls: type, args, kwargs) -> Value:
    """``cls.apply(*args)`` for a ``torch.autograd.Function`` when no input
    needs a gradient (grad mode off, or no tensor argument requiring grad):
    its ``forward`` (under no_grad, as torch runs it) and ``setup_context``
    traced, on a ctx that drops what they save. Inside a vmapped function,
    only a Function whose vmap rule is generated from forward (torch's
    ``generate_vmap_rule``). Anything else still runs natively."""
    out = tx.output
    if kwargs:
        raise GraphBreak("JF002", f"{cls.__qualname__}.apply with keyword arguments")
    leaves = [a for a in args if isinstance(a, TensorV)] + [
        x for a in args if isinstance(a, (TupleV, ListV)) for x in a.items
        if isinstance(x, TensorV)]
    if out.grad_enabled and any(t.fake.requires_grad for t in leaves):
        raise GraphBreak("JF002", f"{cls.__qualname__}.apply on inputs that require grad "
                         "(autograd.Function runs natively)")
    if any(not isinstance(a, (TensorV, TupleV, ListV, Const)) for a in args):
        raise GraphBreak("JF002", f"{cls.__qualname__}.apply on a non-tensor argument")
    forward = lookup(tx, cls, "forward")
    setup = lookup(tx, cls, "setup_context")
    new_style = setup is not _BASE_SETUP_CONTEXT
    if out.graph is not out.root_graph:  # inside a vmapped function (transforms.py)
        if not new_style or lookup(tx, cls, "generate_vmap_rule") is not True:
            raise GraphBreak("JF002", f"{cls.__qualname__}.apply under vmap without a "
                             "vmap rule generated from forward")
    fwd = getattr(forward, "__func__", None) if isinstance(forward, staticmethod) else None
    st = setup.__func__ if isinstance(setup, staticmethod) else None
    if not isinstance(fwd, types.FunctionType) or new_style and \
            not isinstance(st, types.FunctionType):
        raise GraphBreak("JF002", f"{cls.__qualname__}.forward is not a Python staticmethod")
    ctx = NewObjV(NoGradCtx)
    ctx.attrs["needs_input_grad"] = TupleV([Const(False)] * len(args))
    prev = out.grad_enabled
    set_grad_mode(out, False)
    try:
        result = inline_function(tx, fwd, list(args) if new_style else [ctx] + list(args),
                                 {}, None, library_ok=True)
    finally:
        set_grad_mode(out, prev)
    if new_style:
        inline_function(tx, st, [ctx, TupleV(list(args)), result], {}, None, library_ok=True)
    return result


# pure functions of numbers whose result may stay a function of the operands
# (constants.fold_call_lazy) instead of specialising them
_NUMERIC_PURE = (abs, round, pow)


def _fold_call(fn, args, kwargs) -> Value:
    if not kwargs and args and all(isinstance(a, Const) for a in args) and (
            fn in _NUMERIC_PURE or getattr(fn, "__module__", None) == "math"):
        return fold_call_lazy(fn, list(args))
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
    if fn is get_tracing_state:
        return Const(None)
    folded = _tracing_state(fn)
    if folded is not None:
        return Const(folded)
    if tx.output.tf_modes and any(fn is f for f in _MODE_STATE):
        # the real answer counts the modes the trace entered symbolically
        raise GraphBreak("JF016", f"{fn.__name__}() inside a torch-function mode")
    if args and isinstance(args[0], TensorV):
        method = _tensor_method(fn, len(args))
        if method is not None:
            # ``torch.Tensor.size(t)``, ``Tensor.__getitem__(t, i)``, the
            # getter of ``t.shape`` (what a torch-function mode's handler
            # is given to call): what the tensor's kind does for the method
            return method(tx, args[0], list(args[1:]), kwargs)
    target = _fx_target(fn)
    return tx.through_modes(fn, list(args), dict(kwargs),
                            lambda: tx.output.call("call_function", target, tuple(args), kwargs),
                            lambda func: func is fn or isinstance(fn, _C_CALLABLES))


def _fx_target(fn):
    """``fn`` as an fx ``call_function`` target. fx names a target by where
    it is defined, and a method of the C tensor base has no module: it knows
    it only as ``torch.Tensor.<name>``. One the program holds apart from
    torch.Tensor (it replaced the attribute and kept the original) is called
    through a named function; an in-place one breaks the graph (the write
    would not be seen as one)."""
    if not isinstance(fn, (types.MethodDescriptorType, types.WrapperDescriptorType)) or \
            hasattr(fn, "__module__") or getattr(torch.Tensor, fn.__name__, None) is fn:
        return fn
    if fn.__name__.endswith("_") and not fn.__name__.endswith("__"):
        raise GraphBreak("JF022", f"{fn.__qualname__}(): an in-place tensor method held apart "
                         "from torch.Tensor")
    return _named_call(fn)


@functools.cache
def _named_call(fn):
    """A function of this module calling the method descriptor ``fn``."""
    def named(*args, **kwargs):
        return fn(*args, **kwargs)

    named.__module__ = __name__
    named.__name__ = named.__qualname__ = f"{fn.__objclass__.__name__}_{fn.__name__}"
    return named


# what torch answers about its torch-function state (modes counted in)
_MODE_STATE = torch_compat.torch_function_state_queries()
# C functions dispatch to torch-function modes on entry (the argument parser)
_C_CALLABLES = (types.BuiltinFunctionType, types.MethodDescriptorType,
                types.WrapperDescriptorType, types.MethodWrapperType)


def _tensor_method(fn, nargs: int):
    """How the tensor's kind runs ``fn`` called unbound on a tensor, when
    ``fn`` is a method, subscript or attribute getter of torch.Tensor
    (metadata is answered, an in-place method returns the tensor itself, as
    through the bound method); None for anything else."""
    if isinstance(fn, types.MethodWrapperType) and fn.__name__ == "__get__" and \
            isinstance(fn.__self__, types.GetSetDescriptorType) and \
            issubclass(fn.__self__.__objclass__, TensorBase):
        if nargs != 1:
            return None
        name = fn.__self__.__name__
        return lambda tx, t, rest, kw: t.get_attr(tx, name)
    name = getattr(fn, "__name__", None)
    if not isinstance(name, str) or getattr(torch.Tensor, name, None) is not fn:
        return None
    if name == "__getitem__":
        return lambda tx, t, rest, kw: t.get_item(tx, *rest)
    if name == "__setitem__":
        return lambda tx, t, rest, kw: (t.store_item(tx, *rest), Const(None))[1]
    return lambda tx, t, rest, kw: t.call_method(tx, name, rest, kw)


def _plain_module(mod: torch.nn.Module) -> bool:
    """No hooks (its own or global) and no instance ``forward``: calling
    ``mod`` is calling its class's ``forward`` (``guards.module_plain``)."""
    from torch.nn.modules import module as M

    d = mod.__dict__
    return all(isinstance(d.get(n), dict) and not d[n] for n in _HOOK_DICTS) and \
        "forward" not in d and not M._global_forward_pre_hooks and \
        not M._global_forward_hooks and not _backward_hooks(mod, M)


def _call_module(tx, fnv: Value, mod: torch.nn.Module, args, kwargs) -> Value:
    """``mod(*args, **kwargs)`` as ``Module._call_impl`` does it: forward
    pre-hooks, ``forward`` (the instance's own, else the class's), forward
    hooks. Guarded: the class's ``__call__`` and ``forward`` (class guards),
    the hook dicts and the instance dict (module_plain: all empty, no
    instance forward; with hooks, their keys). Backward hooks run natively."""
    from torch.nn.modules import module as M

    out = tx.output
    cls = type(mod)
    call = lookup(tx, cls, "__call__")
    if call is not _module_call:
        if not isinstance(call, types.FunctionType):
            raise GraphBreak("JF002", f"call of {cls.__name__} (a builtin __call__)")
        return inline_function(tx, call, [fnv] + list(args), kwargs, None)
    src = fnv.source if fnv.source is not None else PinnedSource(mod)
    d = mod.__dict__
    if not all(isinstance(d.get(n), dict) for n in _HOOK_DICTS):
        raise GraphBreak("JF014", f"{cls.__name__} without its hook dicts (Module.__init__ "
                         "not run)")
    global_pre, global_post = M._global_forward_pre_hooks, M._global_forward_hooks
    pre = list(global_pre.items()) + list(d["_forward_pre_hooks"].items())
    post = list(global_post.items()) + list(d["_forward_hooks"].items())
    if "forward" in d:
        fwd_v = out.wrap(d["forward"], AttrSource(src, "forward"))
    else:
        fwd = lookup(tx, cls, "forward")
        if not isinstance(fwd, types.FunctionType):
            raise GraphBreak("JF002", f"{cls.__name__}.forward is not a Python function")
        fwd_v = None
    if _plain_module(mod):
        out.guards.module_plain(src)
        return inline_function(tx, fwd, [fnv] + list(args), kwargs, None)
    # hooks (or an instance forward): what _call_impl reads, guarded as is
    g = out.guards
    dicts = [(AttrSource(src, n), d[n]) for n in _HOOK_DICTS]
    dicts += [(PinnedSource(x), x) for x in (
        global_pre, global_post, M._global_backward_hooks, M._global_backward_pre_hooks,
        M._global_forward_hooks_with_kwargs)]
    for dsrc, dv in dicts:
        keys = list(dv)
        g.add(f"__jf_h_list({dsrc.expr()}) == {keys!r}", f"keys of {dsrc.name()} == {keys!r}")
    g.add(f"({'forward' in d!r} is ('forward' in {src.expr()}.__dict__))",
          f"forward {'' if 'forward' in d else 'not '}set on the instance {src.name()}")
    if _backward_hooks(mod, M):
        raise GraphBreak("JF014", f"{cls.__name__} has backward hooks (they run natively)")
    if fwd_v is None:
        fwd_v = _MethodOf(fnv, fwd)
    pre_src = {id(global_pre): PinnedSource(global_pre),
               id(d["_forward_pre_hooks"]): AttrSource(src, "_forward_pre_hooks")}
    args_v: Value = TupleV(list(args))
    kwargs_v: Value = DictV(dict(kwargs))
    for table in (global_pre, d["_forward_pre_hooks"]):
        for hid, hook in list(table.items()):
            hook_v = out.wrap(hook, ItemSource(pre_src[id(table)], hid))
            if hid in d["_forward_pre_hooks_with_kwargs"]:
                r = hook_v.call(tx, [fnv, args_v, kwargs_v], {})
                if not _is_none(r):
                    if not (isinstance(r, TupleV) and len(r.items) == 2):
                        raise would_raise(RuntimeError, "forward pre-hook must return None "
                                          "or a tuple of (new_args, new_kwargs)")
                    args_v, kwargs_v = r.items
            else:
                r = hook_v.call(tx, [fnv, args_v], {})
                if not _is_none(r):
                    args_v = r if isinstance(r, TupleV) else TupleV([r])
    result = fwd_v.call(tx, list(args_v.iterate(tx)), dict(kwargs_v.dict_items(tx)))
    post_src = {id(global_post): PinnedSource(global_post),
                id(d["_forward_hooks"]): AttrSource(src, "_forward_hooks")}
    for table in (global_post, d["_forward_hooks"]):
        for hid, hook in list(table.items()):
            hook_v = out.wrap(hook, ItemSource(post_src[id(table)], hid))
            if hid in d["_forward_hooks_with_kwargs"] or \
                    hid in M._global_forward_hooks_with_kwargs:
                r = hook_v.call(tx, [fnv, args_v, kwargs_v, result], {})
            else:
                r = hook_v.call(tx, [fnv, args_v, result], {})
            if not _is_none(r):
                result = r
    return result


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs")


def _backward_hooks(mod, M) -> bool:
    return bool(mod._backward_hooks or mod._backward_pre_hooks or M._global_backward_hooks or
                M._global_backward_pre_hooks)


def _is_none(v: Value) -> bool:
    return isinstance(v, Const) and v.value is None


class _MethodOf:
    """``mod.forward`` bound to the module's value (the class's function)."""

    def __init__(self, recv: Value, fn) -> None:
        self.recv, self.fn = recv, fn

    def call(self, tx, args, kwargs) -> Value:
        return inline_function(tx, self.fn, [self.recv] + list(args), kwargs, None)


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
    if cls is torch.Size and len(args) == 1 and not kwargs and \
            isinstance(args[0], (ListV, TupleV)) and any(
                isinstance(x, SymV) for x in args[0].items):
        return TupleV(list(args[0].items), cls=torch.Size)  # dynamic sizes stay symbolic
    if cls in (torch.Size, torch.device, torch.dtype, slice, range):
        return _fold_call(cls, args, kwargs)
    if issubclass(cls, BaseException):
        return construct_exception(tx, cls, args, kwargs)
    if issubclass(cls, tuple) and lookup(tx, cls, "_fields") is not MISSING:
        lookup(tx, cls, "__new__")  # (its signature binds the arguments)
        bound = _bind(inspect.signature(cls), args, kwargs)
        items = [bound[f] for f in cls._fields]
        if isinstance(fnv, ObjV) and fnv.source is not None:
            return _BuiltTupleV(items, cls=cls, cls_value=fnv)
        return TupleV(items, cls=cls)
    if issubclass(cls, torch.nn.Module) and cls in STATELESS_MODULES:
        # a parameter-free torch module with constant arguments (nn.ReLU())
        built = construct_module(tx, cls, args, kwargs, lookup(tx, cls, "__init__"))
        if built is not None:
            return built
    if issubclass(cls, torch.nn.Module) or issubclass(cls, torch.Tensor):
        raise GraphBreak("JF023", f"constructing {cls.__name__} inside a compiled frame")
    if cls.__module__ == "builtins" or _is_torch_op(cls):
        raise GraphBreak("JF002", f"constructing {cls.__name__}")
    if issubclass(cls, dict):
        return _construct_dict_subclass(tx, cls, args, kwargs)
    if lookup(tx, cls, "__enter__") is not MISSING and lookup(tx, cls, "__exit__") is not MISSING \
            and not traceable_class(cls) and not traced_mode_class(cls):
        raise GraphBreak("JF016", f"{cls.__qualname__}")
    # abstract base classes construct like plain classes (ABCMeta adds
    # only the check that no abstract method is left)
    # attribute bags (types.SimpleNamespace and its subclasses) construct like
    # plain classes: their builtin __new__ makes an empty instance
    new = lookup(tx, cls, "__new__")
    if new is not _OBJECT_NEW and new is not NAMESPACE_NEW or \
            type(cls) not in (type, abc.ABCMeta) or getattr(cls, "__abstractmethods__", None):
        raise GraphBreak("JF023", f"class {cls.__name__} has a custom __new__ or metaclass")
    obj = NewObjV(cls, new)
    init = lookup(tx, cls, "__init__")
    if isinstance(init, types.FunctionType):
        inline_function(tx, init, [obj] + list(args), kwargs, None)
    elif init is _OBJECT_INIT:
        if args or kwargs:
            raise would_raise(TypeError, f"{cls.__name__}() takes no arguments")
    elif new is NAMESPACE_NEW and builtin_entry(init):
        obj.call_method(tx, "__init__", list(args), kwargs)
    else:
        raise GraphBreak("JF023", f"{cls.__name__}.__init__ is not a Python function")
    return obj


class _BuiltTupleV(TupleV):
    """A namedtuple built while tracing from a class read from the frame
    (which may be guarded by its recipe, not its identity: made anew each
    call): rebuilt with the class as read at run time."""

    __slots__ = ("cls_value",)

    def __init__(self, items, *, cls: type, cls_value: Value) -> None:
        super().__init__(items, cls=cls)
        self.cls_value = cls_value

    def reconstruct(self, rb) -> tuple[str, bool]:
        inner = "".join(rb.expr(x) + ", " for x in self.items)
        return f"{rb.expr(self.cls_value)}({inner})", False


def _construct_dict_subclass(tx, cls, args, kwargs) -> Value:
    """``cls(*args, **kwargs)`` for a dict subclass: ``OrderedDict`` itself
    is a dict of constant keys; any other subclass whose ``__new__`` is the
    builtin one is a DictObjV on which the class's ``__init__`` (a dataclass
    ``__init__`` and ``__post_init__``, ...) runs traced, or the builtin
    ``__init__`` stores the items."""
    if cls is collections.OrderedDict:
        obj = DictV({}, cls=cls)
        obj.items.update(_dict_init_items(tx, args, kwargs))
        return obj
    if lookup(tx, cls, "__new__") is not _DICT_NEW or type(cls) not in (type, abc.ABCMeta):
        raise GraphBreak("JF023", f"class {cls.__name__} has a custom __new__ or metaclass")
    obj = DictObjV(cls)
    init = lookup(tx, cls, "__init__")
    if isinstance(init, types.FunctionType):
        inline_function(tx, init, [obj] + list(args), kwargs, None)
    elif builtin_entry(init):
        obj.call_method(tx, "__init__", list(args), kwargs)
    else:
        raise GraphBreak("JF023", f"{cls.__name__}.__init__ is a {type(init).__name__}")
    return obj


def _dict_init_items(tx, args, kwargs) -> dict:
    tmp = DictObjV(dict)
    tmp.call_method(tx, "__init__", list(args), kwargs)
    return tmp.items


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


def inline_function(tx, fn: types.FunctionType, args, kwargs, fn_source,
                    library_ok: bool = False) -> Value:
    """Run the Python function ``fn`` on symbolic arguments in a child frame
    (``fn_source``: where ``fn`` was read, to guard its defaults and cells;
    ``library_ok``: traced even from a package whose functions otherwise run
    natively, e.g. the handler of a torch-function mode the program entered)."""
    mod = fn.__globals__.get("__name__") or ""
    folded = _tracing_state(fn)
    if folded is not None:
        return Const(folded)
    fn_cls = _function_class(args[0]) if args else None
    if fn_cls is not None and fn.__name__ == "apply":
        if fn is _FUNCTION_APPLY:  # (bound to the class, or reached by super())
            return _autograd_function_apply(tx, fn_cls, list(args[1:]), kwargs)
        library_ok = True  # an override of apply: part of the Function's definition
    if mod.startswith(_NO_INLINE_MODULES) and not library_ok:
        raise GraphBreak("JF002", f"{fn.__qualname__} ({mod}) runs natively")
    if (mod == "janus_frame" or mod.startswith("janus_frame.")) and not library_ok and \
            not mod.startswith(_FRONTEND):
        # its own run-time machinery (a program that wraps or patches it):
        # state the trace does not model, run as it is (the frontend's
        # stand-ins, polyfills.py and NoGradCtx, are written to be traced)
        raise GraphBreak("JF002", f"{fn.__qualname__} (janus_frame's own) runs natively")
    if getattr(fn, "_janus_disabled", False):
        raise GraphBreak("JF010", fn.__qualname__)
    if is_ddp_forward(fn):  # (called as a method: see call_object)
        raise GraphBreak("JF002", f"{fn.__qualname__} runs natively; the module it wraps is "
                         "compiled as its own frame")
    code = fn.__code__
    # a function with no source of its own was found by a guarded route
    # (through its class, a hook dict, ...): reads through it are guarded
    # on the object itself
    src = fn_source if fn_source is not None else PinnedSource(fn)
    out = tx.output
    g = out.guards
    # its code (assignable) and the shape of its defaults; the defaults and
    # cells themselves are guarded as they are read
    g.identity(AttrSource(src, "__code__"), code)
    nd, kwd = fn.__defaults__, fn.__kwdefaults__
    if nd is None and kwd is None:
        g.add(f"({src.expr()}.__defaults__ is None and {src.expr()}.__kwdefaults__ is None)",
              f"{src.name()} has no defaults")
    else:
        g.add(f"__jf_h_len({src.expr()}.__defaults__ or ()) == {len(nd or ())}",
              f"{src.name()} has {len(nd or ())} defaults")
        g.add(f"__jf_h_list({src.expr()}.__kwdefaults__ or ()) == {list(kwd or ())!r}",
              f"{src.name()} keyword defaults {list(kwd or ())!r}")
    defaults = tuple(
        out.wrap(d, ItemSource(AttrSource(src, "__defaults__"), i))
        for i, d in enumerate(nd or ()))
    kwdefaults = {
        k: out.wrap(d, ItemSource(AttrSource(src, "__kwdefaults__"), k))
        for k, d in (kwd or {}).items()}
    cells = {}
    for i, name in enumerate(code.co_freevars):
        real = fn.__closure__[i]
        csrc = CellContentsSource(ItemSource(AttrSource(src, "__closure__"), i))
        cells[name] = out.real_cell(real, name, csrc)
    locals_ = bind_args(code, fn.__name__, defaults, kwdefaults, args, kwargs)
    return tx.inline_code(code, fn.__globals__, locals_, cells, fn_source=src)


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
    if isinstance(obj, types.MethodWrapperType) and obj.__name__ == "__get__" and \
            isinstance(obj.__self__, types.GetSetDescriptorType):
        # the getter of a tensor attribute (``Tensor.shape.__get__``)
        return issubclass(obj.__self__.__objclass__, TensorBase)
    mod = getattr(obj, "__module__", None) or ""
    if not (mod == "torch" or mod.startswith("torch.") or mod.startswith("torch._C")):
        # methods of torch._C.TensorBase accessed unbound (torch.Tensor.add)
        objclass = getattr(obj, "__objclass__", None)
        if objclass is not None and issubclass(objclass, TensorBase):
            return True
        return False
    if mod.startswith(_TORCH_DENY_MODULES):
        return False
    name = getattr(obj, "__name__", "")
    if name in _TORCH_DENY:
        return False
    return callable(obj) and not isinstance(obj, type)
