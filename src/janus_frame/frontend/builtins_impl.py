"""Python builtins on symbolic values.

In: the frame being interpreted (interpreter.Translator), symbolic
positional and keyword arguments.
Out: the symbolic result of ``len``, ``isinstance``, ``range``, ``zip``,
``enumerate``, ``min``/``max``, ``getattr``/``hasattr``/``setattr``/``delattr``,
``super`` ... Values made of constants fold at trace time; conversions of tensors to Python
values (``int(t)``, ``bool(t)``) are graph breaks (JF004). What a builtin
does to a value is the value's kind's business (values/): these handlers
only unpack the builtin's arguments.
"""
from __future__ import annotations

import functools
import inspect
import operator
import types

import numpy as np
import torch

from .breaks import GraphBreak, would_raise
from .sources import AttrSource, PinnedSource
from .values import (
    NO, Const, DictV, FunctionV, IterV, ListV, MethodV, NdarrayV, NewObjV, ObjV, PartialV,
    SetV, SliceV, SuperV,
    SymV, TensorListV, TensorV, TupleV, Value,
)
from .values.containers import dedup, sort_order
from .values.constants import fold, fold_call_lazy
from .values.dicts import dict_key
from .values.objects import callable_value
from .values.numpy import array_as_tensor, numpy_callables, numpy_function
from .values.generators import GeneratorV
from .values.operators import binary, compare

BUILTIN_HANDLERS: dict = {}


def handles(*fns):
    def deco(f):
        for fn in fns:
            BUILTIN_HANDLERS[fn] = f
        return f
    return deco


# Side-effect-free functions folded when every argument is a constant
PURE_FUNCTIONS = {
    abs, round, divmod, pow, hash, repr, ascii, format, chr, ord, bin, hex, oct,
}


def _const(v: Value):
    x = v.as_python()
    if x is NO:
        raise GraphBreak("JF015", f"a constant is needed here, got {v.python_type().__name__}")
    return x


@handles(len)
def _len(tx, args, kwargs):
    if isinstance(args[0], TensorV) and args[0].fake.dim() > 0:
        return tx.output.size_of(args[0], 0)  # symbolic when dim 0 is dynamic
    if isinstance(args[0], TensorListV) and args[0].symbolic:
        return args[0].sym_length
    n = tx.output.lazy_length(args[0])  # a container read from the frame, not looked into
    if n is not None:
        return n
    return Const(args[0].length(tx))


@handles(isinstance)
def _isinstance(tx, args, kwargs):
    v, cls = args
    classes = _const(cls)
    return Const(issubclass(_type_of(v), classes))


@handles(issubclass)
def _issubclass(tx, args, kwargs):
    return Const(issubclass(_const(args[0]), _const(args[1])))


def _type_of(v: Value) -> type:
    if isinstance(v, ObjV):
        return type(v.obj)
    return v.python_type()


@handles(type)
def _type(tx, args, kwargs):
    if len(args) != 1 or kwargs:
        raise GraphBreak("JF023", "type() with three arguments")
    return ObjV(_type_of(args[0]))


@handles(callable)
def _callable(tx, args, kwargs):
    if len(args) != 1 or kwargs:
        raise would_raise(TypeError, "callable() takes exactly one argument")
    return Const(callable_value(args[0]))


@handles(range)
def _range(tx, args, kwargs):
    if any(isinstance(a, SymV) and a._guard is not None for a in args):
        # unrolling would compile once per size: the loop runs over a real
        # range, its body compiled once for every size
        raise GraphBreak("JF019", "range() of a dynamic size")
    return Const(range(*[_const(a) for a in args]))


@handles(slice)
def _slice(tx, args, kwargs):
    parts = list(args) + [Const(None)] * (3 - len(args))
    if len(args) == 1:
        parts = [Const(None), args[0], Const(None)]
    return SliceV(*parts[:3])


@handles(enumerate)
def _enumerate(tx, args, kwargs):
    start = _const(args[1]) if len(args) > 1 else _const(kwargs.get("start", Const(0)))
    items = args[0].iterate(tx)
    return IterV([TupleV([Const(start + i), x]) for i, x in enumerate(items)])


@handles(zip)
def _zip(tx, args, kwargs):
    if kwargs.get("strict") and _const(kwargs["strict"]):
        lists = [a.iterate(tx) for a in args]
        if len({len(x) for x in lists}) > 1:
            raise would_raise(ValueError, "zip(strict=True) of unequal lengths")
    lists = [a.iterate(tx) for a in args]
    return IterV([TupleV(list(t)) for t in zip(*lists)])


@handles(reversed)
def _reversed(tx, args, kwargs):
    return IterV(list(reversed(args[0].iterate(tx))))


@handles(iter)
def _iter(tx, args, kwargs):
    if len(args) != 1:
        raise GraphBreak("JF023", "iter() with a sentinel")
    v = args[0]
    return v if isinstance(v, (IterV, GeneratorV)) else IterV(v.iterate(tx))


@handles(next)
def _next(tx, args, kwargs):
    it = args[0]
    if isinstance(it, GeneratorV):  # runs its frame to the next yield
        if len(args) == 1:
            return it.send(tx, Const(None))
        try:
            return it.send(tx, Const(None))
        except GraphBreak as gb:
            if gb.exc_value is None or not issubclass(gb.exc_value.python_type(),
                                                      StopIteration):
                raise
            return args[1]
    if not isinstance(it, IterV):
        raise GraphBreak("JF023", f"next() of {it.python_type().__name__}")
    if it.pos < len(it.items):
        it.pos += 1
        return it.items[it.pos - 1]
    if len(args) > 1:
        return args[1]
    raise would_raise(StopIteration, "next() of an exhausted iterator", exc=StopIteration())


@handles(list)
def _list(tx, args, kwargs):
    return ListV(args[0].iterate(tx) if args else [])


@handles(tuple)
def _tuple(tx, args, kwargs):
    return TupleV(args[0].iterate(tx) if args else [])


@handles(set)
def _set(tx, args, kwargs):
    items = args[0].iterate(tx) if args else []
    return SetV(dedup(items))


@handles(dict)
def _dict(tx, args, kwargs):
    items = {}
    if args:
        a = args[0]
        if isinstance(a, DictV):
            items.update(a.items)
        else:
            for pair in a.iterate(tx):
                k, v = pair.iterate(tx)
                items[dict_key(k)] = v
    items.update(kwargs)
    return DictV(items)


@handles(sorted)
def _sorted(tx, args, kwargs):
    if len(args) != 1 or set(kwargs) - {"key", "reverse"}:
        raise would_raise(TypeError, "sorted() arguments")
    items = args[0].iterate(tx)
    order = sort_order(tx, items, kwargs.get("key"), kwargs.get("reverse"))
    return ListV([items[i] for i in order])


@handles(frozenset)
def _frozenset(tx, args, kwargs):
    items = args[0].iterate(tx) if args else []
    vals = [_const(x) for x in items]
    return fold(frozenset, vals)


@handles(map)
def _map(tx, args, kwargs):
    """map() is lazy, the interpreter's iterators are not: the function runs
    for every item when the map is made, which is only the same program when
    it has no effect to reorder (checked after the fact)."""
    if len(args) < 2 or kwargs:
        raise would_raise(TypeError, "map() must have at least two arguments")
    fn, lists = args[0], [a.iterate(tx) for a in args[1:]]
    mark = _effects_mark(tx)
    out = [fn.call(tx, list(row), {}) for row in zip(*lists)]
    _check_no_effects(tx, mark, "map()")
    return IterV(out)


@handles(filter)
def _filter(tx, args, kwargs):
    if len(args) != 2 or kwargs:
        raise would_raise(TypeError, "filter expected 2 arguments")
    fn, items = args[0], args[1].iterate(tx)
    mark = _effects_mark(tx)
    if fn.as_python() is None:
        keep = [x.truth(tx) for x in items]
    else:
        keep = [fn.call(tx, [x], {}).truth(tx) for x in items]
    _check_no_effects(tx, mark, "filter()")
    return IterV([x for x, k in zip(items, keep) if k])


def _effects_mark(tx):
    return tx.output.effects.version, len(tx.output.graph.nodes)


def _check_no_effects(tx, mark, what: str) -> None:
    """Run ahead of its consumer, a function with side effects (a recorded
    mutation or print, an in-place tensor operation) would reorder them."""
    version, n = mark
    out = tx.output
    if out.effects.version != version:
        raise GraphBreak("JF017", f"{what} of a function with side effects (it is lazy)")
    for node in list(out.graph.nodes)[n:]:
        t = node.target
        name = t if isinstance(t, str) else getattr(t, "__name__", "")
        if name.endswith("_") and not name.endswith("__") or name.startswith("i") and \
                getattr(operator, name, None) is t or t is operator.setitem:
            raise GraphBreak("JF017", f"{what} of a function that changes a tensor in place")


@handles(functools.reduce)
def _reduce(tx, args, kwargs):
    if not 2 <= len(args) <= 3 or kwargs:
        raise would_raise(TypeError, "reduce() arguments")
    fn, items = args[0], args[1].iterate(tx)
    if len(args) == 3:
        acc, rest = args[2], items
    elif items:
        acc, rest = items[0], items[1:]
    else:
        raise would_raise(TypeError, "reduce() of empty iterable with no initial value")
    for x in rest:
        acc = fn.call(tx, [acc, x], {})
    return acc


# classmethods of immutable builtins: pure functions of their arguments
def _fold_builtin(fn):
    def impl(tx, args, kwargs):
        vals = [_const(a) for a in args]
        kw = {k: _const(v) for k, v in kwargs.items()}
        return fold(lambda: fn(*vals, **kw))
    return impl


for _cm in (int.from_bytes, float.fromhex, bytes.fromhex, str.maketrans):
    BUILTIN_HANDLERS[_cm] = _fold_builtin(_cm)


@handles(tuple.__new__)
def _tuple_new(tx, args, kwargs):
    """``tuple.__new__(cls, iterable)`` (a namedtuple's ``_make``)."""
    cls = _const(args[0]) if args else None
    if not (isinstance(cls, type) and issubclass(cls, tuple)) or kwargs or len(args) > 2:
        raise GraphBreak("JF023", "tuple.__new__ of a non-tuple class")
    if cls is not tuple and not isinstance(getattr(cls, "_fields", None), tuple):
        raise GraphBreak("JF023", f"tuple.__new__ of {cls.__name__}")
    items = args[1].iterate(tx) if len(args) > 1 else []
    return TupleV(items, cls=None if cls is tuple else cls)


@handles(functools.partial)
def _partial(tx, args, kwargs):
    if not args:
        raise would_raise(TypeError, "type 'partial' takes at least one argument")
    fn = args[0]
    if not callable_value(fn):
        raise would_raise(TypeError, "the first argument must be callable")
    if isinstance(fn, ObjV) and fn.source is not None and \
            type(fn._obj) is functools.partial and fn._obj.__reduce__()[2][3] is None:
        # a real partial with no instance dict is flattened, as Python does.
        # Its type is guarded; its parts are read through it, each guarded as
        # read (as a call of it does), so one made anew each call is no new entry
        inner, src, out = fn._obj, fn.source, tx.output
        fn = PartialV(out.wrap(inner.func, AttrSource(src, "func")),
                      out.wrap(inner.args, AttrSource(src, "args")).iterate(tx),
                      out.wrap(inner.keywords, AttrSource(src, "keywords")).dict_items(tx))
    return PartialV(fn, list(args[1:]), dict(kwargs))


@handles(inspect.signature)
def _signature(tx, args, kwargs):
    """``inspect.signature(f)`` folded at trace time: a Signature is
    immutable, and what it is computed from is guarded (a real function by
    identity, its defaults and the attributes inspect follows by theirs)."""
    if len(args) != 1 or any(v.as_python() is NO for v in kwargs.values()):
        raise GraphBreak("JF015", "inspect.signature() with non-constant options")
    opts = {k: v.as_python() for k, v in kwargs.items()}
    fn = args[0]
    real = _introspected(tx, fn)
    if real is None:
        raise GraphBreak("JF015", f"inspect.signature() of {fn.python_type().__name__}")
    try:
        return Const(inspect.signature(real, **opts))
    except Exception as e:  # noqa: BLE001 - Python's own exception: exact
        raise would_raise(type(e), str(e), exc=e) from None


def _introspected(tx, fn: Value):
    """A real object whose signature is ``fn``'s, its inputs guarded, or
    None."""
    if isinstance(fn, FunctionV):
        return fn.as_real_function()
    if isinstance(fn, MethodV) and isinstance(fn.func, types.FunctionType) and \
            isinstance(fn.receiver, (ObjV, NewObjV)):
        # a bound method: the function's signature less its first parameter
        return types.MethodType(_guard_introspected(tx, fn.func, None), object())
    if isinstance(fn, ObjV) and isinstance(fn._obj, (types.FunctionType, types.MethodType,
                                                      types.BuiltinFunctionType)):
        return _guard_introspected(tx, fn.obj, fn.source)
    if isinstance(fn, PartialV):
        # a partial made while tracing: its function's signature less the
        # frozen positional arguments (only their number matters), keyword
        # values as the new defaults (constants only)
        func = _introspected(tx, fn.func)
        fkw = {k: v.as_python() for k, v in fn.keywords.items.items()}
        if func is None or any(x is NO for x in fkw.values()) or \
                not all(type(k) is str for k in fkw):
            return None
        return functools.partial(func, *[object() for _ in fn.args], **fkw)
    if isinstance(fn, Const) and not callable(fn.value):
        return fn.value  # raises inspect's TypeError
    return None


def _guard_introspected(tx, fn, source):
    """``fn`` as ``inspect.signature`` reads it: its function's defaults,
    annotations and the attributes inspect follows are guarded."""
    func = fn.__func__ if isinstance(fn, types.MethodType) else fn
    if isinstance(func, types.FunctionType):
        if source is None:
            fsrc = PinnedSource(func)  # (the function itself, kept alive by the entry)
        else:
            fsrc = AttrSource(source, "__func__") if func is not fn else source
        for name in ("__defaults__", "__kwdefaults__", "__annotations__"):
            tx.output.guards.identity(AttrSource(fsrc, name), getattr(func, name))
        for name in ("__wrapped__", "__signature__"):
            if name in func.__dict__:
                tx.output.guards.identity(AttrSource(fsrc, name), func.__dict__[name])
            else:
                tx.output.guards.instance_lacks(fsrc, name)
    return fn


@handles(dict.fromkeys)
def _dict_fromkeys(tx, args, kwargs):
    if kwargs or not 1 <= len(args) <= 2:
        raise would_raise(TypeError, "dict.fromkeys() arguments")
    value = args[1] if len(args) > 1 else Const(None)
    return DictV({dict_key(k): value for k in args[0].iterate(tx)})


def _scalar_conv(pytype):
    def conv(tx, args, kwargs):
        if not args:
            return Const(pytype())
        v = args[0]
        if isinstance(v, TensorV) or isinstance(v, NdarrayV) and v.const is NO:
            raise GraphBreak("JF004", f"{pytype.__name__}() of a tensor")
        return fold(pytype, *[_const(a) for a in args])
    return conv


for _t in (int, float, bool, str, complex):
    BUILTIN_HANDLERS[_t] = _scalar_conv(_t)


def _minmax(fn):
    def impl(tx, args, kwargs):
        items = args[0].iterate(tx) if len(args) == 1 else list(args)
        key = kwargs.get("key")
        if key is not None and key.as_python() is not None:
            # the first item of least (greatest) key: the items themselves
            if not items:
                if "default" in kwargs:
                    return kwargs["default"]
                raise would_raise(ValueError, f"{fn.__name__}() arg is an empty sequence")
            order = sort_order(tx, items, key, Const(fn is max))
            return items[order[0]]
        if any(isinstance(x, TensorV) for x in items):
            raise GraphBreak("JF004", f"{fn.__name__}() compares tensors in Python")
        vals = [_const(x) for x in items]
        kw = {k: _const(v) for k, v in kwargs.items()}
        return fold(lambda: fn(vals, **kw))
    return impl


BUILTIN_HANDLERS[min] = _minmax(min)
BUILTIN_HANDLERS[max] = _minmax(max)


@handles(sum)
def _sum(tx, args, kwargs):
    items = args[0].iterate(tx)
    acc = args[1] if len(args) > 1 else kwargs.get("start", Const(0))
    for x in items:
        acc = binary(tx, operator.add, acc, x)
    return acc


def _anyall_impl(fn):
    def impl(tx, args, kwargs):
        truths = [x.truth(tx) for x in args[0].iterate(tx)]
        return Const(fn(truths))
    return impl


BUILTIN_HANDLERS[any] = _anyall_impl(any)
BUILTIN_HANDLERS[all] = _anyall_impl(all)


@handles(abs)
def _abs(tx, args, kwargs):
    v = args[0]
    if isinstance(v, TensorV):
        return tx.output.call("call_function", operator.abs, (v,), {})
    if isinstance(v, Const) and not kwargs:
        return fold_call_lazy(abs, [v])  # a float from the frame stays unspecialised
    return fold(abs, _const(v))


@handles(getattr)
def _getattr(tx, args, kwargs):
    name = _const(args[1])
    if len(args) > 2:
        if not _hasattr(tx, args[0], name):
            return args[2]
    return args[0].get_attr(tx, name)


def _hasattr(tx, v: Value, name: str) -> bool:
    if isinstance(v, TensorV):
        return hasattr(v.fake, name)
    if isinstance(v, ObjV):
        pending = v.has_attr(tx, name)  # stored or deleted earlier in this trace
        if pending is not None:
            return pending
        found = hasattr(v.obj, name)
        if v.source is not None and not isinstance(v.obj, (types.ModuleType, type)):
            tx.output.guards.add(f"__jf_h_hasattr({v.source.expr()}, {name!r}) is {found!r}",
                                 f"hasattr({v.source.name()}, {name!r}) is {found!r}")
        return found
    if isinstance(v, NewObjV):
        return v.has_attr(tx, name)
    if isinstance(v, Const):
        return hasattr(v.value, name)
    try:
        v.get_attr(tx, name)
        return True
    except GraphBreak:
        return False


@handles(hasattr)
def _hasattr_handler(tx, args, kwargs):
    return Const(_hasattr(tx, args[0], _const(args[1])))


@handles(vars)
def _vars(tx, args, kwargs):
    """``vars(obj)`` of an object created while tracing: its instance dict,
    a live view of its attributes (``NewObjV.instance_dict``). Anything else
    (a real object's dict, ``vars()`` of the frame) runs natively."""
    if len(args) == 1 and not kwargs and isinstance(args[0], NewObjV):
        obj = args[0]
        try:
            return obj.get_attr(tx, "__dict__")
        except GraphBreak as e:
            if getattr(e, "exc_type", None) is not AttributeError:  # vars raises TypeError
                raise
        msg = "vars() argument must have __dict__ attribute"
        raise would_raise(TypeError, msg, exc=TypeError(msg))
    raise GraphBreak("JF002", "vars")


@handles(setattr)
def _setattr(tx, args, kwargs):
    obj, name, value = args
    obj.store_attr(tx, _const(name), value)
    return Const(None)


@handles(delattr)
def _delattr(tx, args, kwargs):
    obj, name = args
    obj.delete_attr(tx, _const(name))
    return Const(None)


@handles(super)
def _super(tx, args, kwargs):
    if args:
        cls = _const(args[0])
        return SuperV(cls, args[1])
    # zero-argument form: the __class__ cell and the first argument
    code = tx.code
    if "__class__" not in code.co_freevars or code.co_argcount == 0:
        raise GraphBreak("JF023", "super() without a __class__ cell")
    cell = tx.cell("__class__")
    first = code.co_varnames[0]
    obj = tx.local(first)
    if obj is None and first in tx.cells:
        obj = tx.cells[first].contents
    if obj is None:
        raise GraphBreak("JF023", "super() without self")
    return SuperV(_const(cell.contents), obj)


@handles(locals)
def _locals(tx, args, kwargs):
    """A snapshot of the frame's bound variables (locals, then cells), as
    ``locals()`` in a function."""
    code = tx.code
    out = {}
    for name in code.co_varnames + code.co_cellvars + code.co_freevars:
        if name in code.co_cellvars or name in code.co_freevars:
            c = tx.cells.get(name)
            v = tx.cell(name).contents if c is not None else None
        else:
            v = tx.local(name)
        if v is not None:
            out[name] = v
    return DictV(out)


@handles(id)
def _id(tx, args, kwargs):
    raise GraphBreak("JF023", "id() of a traced value")


# operator.* called as functions (functools.reduce(operator.add, ...), etc.)
def _operator_binary(fn):
    def impl(tx, args, kwargs):
        return binary(tx, fn, args[0], args[1])
    return impl


def _operator_compare(fn):
    def impl(tx, args, kwargs):
        return compare(tx, fn, args[0], args[1])
    return impl


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and_",
              "or_", "xor", "lshift", "rshift", "iadd", "isub", "imul", "itruediv"):
    BUILTIN_HANDLERS[getattr(operator, _name)] = _operator_binary(getattr(operator, _name))
for _name in ("lt", "le", "eq", "ne", "gt", "ge"):
    BUILTIN_HANDLERS[getattr(operator, _name)] = _operator_compare(getattr(operator, _name))


@handles(operator.getitem)
def _getitem(tx, args, kwargs):
    return args[0].get_item(tx, args[1])


@handles(operator.neg)
def _neg(tx, args, kwargs):
    if isinstance(args[0], TensorV):
        return tx.output.call("call_function", operator.neg, (args[0],), {})
    return fold(operator.neg, _const(args[0]))


@handles(operator.not_)
def _not(tx, args, kwargs):
    return Const(not args[0].truth(tx))


@handles(operator.truth)
def _truth(tx, args, kwargs):
    return Const(args[0].truth(tx))


# -- numpy and dtype information ------------------------------------------------------


def _fold_info(cls):
    """torch.finfo / iinfo (and numpy's): pure functions of a dtype."""
    def impl(tx, args, kwargs):
        if cls in (torch.finfo,) and not args and not kwargs:
            args = [Const(torch.get_default_dtype())]
        vals = [_const(a) for a in args]
        kw = {k: _const(v) for k, v in kwargs.items()}
        return fold(lambda: cls(*vals, **kw))
    return impl


for _info in (torch.finfo, torch.iinfo, np.finfo, np.iinfo):
    BUILTIN_HANDLERS[_info] = _fold_info(_info)

for _name, _fn in numpy_callables():
    BUILTIN_HANDLERS[_fn] = numpy_function(_name, _fn)


def _torch_conversion(fn):
    def impl(tx, args, kwargs):
        out = array_as_tensor(tx, fn, args, kwargs)
        if out is None:
            return tx.output.call("call_function", fn, tuple(args), kwargs)
        return out
    return impl


for _fn in (torch.from_numpy, torch.as_tensor, torch.asarray, torch.tensor):
    BUILTIN_HANDLERS[_fn] = _torch_conversion(_fn)
