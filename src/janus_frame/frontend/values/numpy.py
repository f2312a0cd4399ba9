"""numpy arrays and scalars: graph values that Python sees as numpy's.

In: ``Tensor.numpy()`` / ``np.asarray(t)`` of a traced tensor, ndarrays and
numpy scalars read from the frame, calls of numpy functions and ndarray
methods, operators on ndarrays.
Out: ``NdarrayV`` (a tensor of the graph typed as an ``np.ndarray``, or as a
numpy scalar such as ``np.float32``), ``NumpyCall`` (the fx target that runs a
numpy function, method or operator on tensors through ``torch._numpy``,
which implements numpy's semantics -- dtype promotion, views -- with torch
operations), :func:`numpy_function` (what calling a numpy callable means),
the torch conversions (``torch.from_numpy`` and friends) and the wrapping of
numpy values read from the frame.

Data is never read at trace time: an ndarray derived from a tensor is a
graph value (the result is recomputed each call, and converted back to an
ndarray after the graph), anything that needs its data in Python
(``a.tolist()``, ``float(a.max())``, a branch on it) is a graph break, as
for tensors. Only values made of constants fold (``np.float32(2)``,
``np.finfo``); a numpy scalar folded so stays a constant until a graph
operation needs it as a 0-d tensor.
"""
from __future__ import annotations

import operator

import numpy as np
import torch
import torch._numpy as tnp
from torch.utils import _pytree as pytree

from ..breaks import GraphBreak, would_raise
from ..sources import ExprSource, Source
from .base import NO, Value, read_before_effects
from .constants import FOLDED_KINDS, NUMBER_TYPES, Const, fold_call_lazy, unguarded, varies
from .containers import ListV, TupleV
from .methods import MethodV
from .tensors import CONVERSIONS as TENSOR_CONVERSIONS, TensorV, check_static

# what numpy returns as a scalar (np.float32, ...) when the result is 0-d
_REDUCTIONS = {
    "sum", "mean", "max", "min", "amax", "amin", "prod", "product", "std", "var", "argmax",
    "argmin", "any", "all", "median", "ptp", "count_nonzero", "dot", "vdot", "inner", "trace",
    "average", "nansum", "nanmean", "nanmax", "nanmin", "nanprod", "nanstd", "nanvar",
    "nanargmax", "nanargmin", "nanmedian", "quantile", "percentile", "nanquantile",
    "nanpercentile", "round", "around", "clip", "conj", "conjugate", "real", "imag", "angle",
}
# ndarray attributes that need the data in Python, or numpy internals
_OPAQUE_ATTRS = {"flags", "flat", "base", "data", "ctypes", "strides", "__array_interface__"}
# ndarray methods that need the data in Python
_DATA_METHODS = {"tolist", "item", "tobytes", "tofile", "dump", "dumps", "__array__",
                 "__bool__", "__float__", "__int__", "__index__", "__complex__"}
# ndarray methods that change the array in place
_INPLACE_METHODS = {"sort", "fill", "put", "resize"}
_OPS = {operator.add: "add", operator.sub: "sub", operator.mul: "mul",
        operator.truediv: "truediv", operator.floordiv: "floordiv", operator.mod: "mod",
        operator.pow: "pow", operator.matmul: "matmul", operator.and_: "and_",
        operator.or_: "or_", operator.xor: "xor", operator.lshift: "lshift",
        operator.rshift: "rshift", operator.lt: "lt", operator.le: "le", operator.gt: "gt",
        operator.ge: "ge", operator.eq: "eq", operator.ne: "ne", operator.neg: "neg",
        operator.pos: "pos", operator.invert: "invert", operator.abs: "abs"}


def _to_tnp(x):
    return tnp.ndarray(x) if isinstance(x, torch.Tensor) else x


def _to_torch(x):
    return x.tensor if isinstance(x, tnp.ndarray) else x


class NumpyCall:
    """An fx call target: the numpy function, ndarray method, attribute or
    operator ``name`` on tensors, each tensor argument seen as an ndarray
    (``torch._numpy``); array results come back as tensors."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind  # "function", "method", "attr" or "operator"
        self.name = name
        self.__name__ = self.__qualname__ = f"numpy_{kind}_{name.replace('.', '_')}"

    def __call__(self, *args, **kwargs):
        args, kwargs = pytree.tree_map(_to_tnp, (args, kwargs))
        if self.kind == "function":
            fn = tnp
            for part in self.name.split("."):
                fn = getattr(fn, part)
            out = fn(*args, **kwargs)
        elif self.kind == "method":
            out = getattr(args[0], self.name)(*args[1:], **kwargs)
        elif self.kind == "attr":
            out = getattr(args[0], self.name)
        else:
            out = getattr(operator, self.name)(*args)
        return pytree.tree_map(_to_torch, out)

    def __repr__(self) -> str:
        return self.__name__

    def __reduce__(self):
        return (numpy_call, (self.kind, self.name))


_CALLS: dict = {}


def numpy_call(kind: str, name: str) -> NumpyCall:
    c = _CALLS.get((kind, name))
    if c is None:
        c = _CALLS[(kind, name)] = NumpyCall(kind, name)
    return c


def np_dtype_of(dtype: torch.dtype) -> np.dtype:
    try:
        return np.dtype(str(dtype).removeprefix("torch."))
    except TypeError:
        raise would_raise(TypeError, f"{dtype} has no numpy equivalent") from None


class NdarrayV(Value):
    """An ndarray (``scalar`` False) or a numpy scalar (``scalar`` True) whose
    data is the graph tensor ``tensor``; a numpy scalar folded from
    constants keeps its value in ``const`` and gets a tensor only when a
    graph operation needs one."""

    __slots__ = ("tensor", "scalar", "const", "source")
    operand_rank = 4  # numpy (or, against a torch tensor, torch) decides

    def __init__(self, tensor: TensorV | None, scalar: bool = False, const=NO,
                 source: Source | None = None) -> None:
        self.tensor = tensor
        self.scalar = scalar
        self.const = const
        self.source = source

    def python_type(self) -> type:
        if self.const is not NO:
            return type(self.const)
        if self.scalar:
            return np_dtype_of(self.tensor.fake.dtype).type
        return np.ndarray

    def _repr(self) -> str:
        if self.const is not NO:
            return repr(self.const)
        return f"{'scalar ' if self.scalar else ''}{self.tensor._repr()}"

    def as_python(self):
        return self.const

    def graph_tensor(self, tx) -> TensorV:
        """The tensor of the value (a folded scalar enters the graph now)."""
        if self.tensor is None:
            c = self.const
            self.tensor = tx.output.call(
                "call_function", torch.tensor, (Const(c.item()),),
                {"dtype": Const(_torch_dtype(c.dtype))})
        return self.tensor

    def _fake(self, tx):
        return self.graph_tensor(tx).fake

    # -- Python semantics --------------------------------------------------------
    def truth(self, tx) -> bool:
        if self.const is not NO:
            return bool(self.const)
        raise GraphBreak("JF004", "truth value of a numpy array computed in the graph")

    def length(self, tx) -> int:
        fake = self._fake(tx)
        if fake.dim() == 0:
            raise would_raise(TypeError, "len() of unsized object")
        check_static(self.tensor)
        return int(fake.shape[0])

    def iterate(self, tx) -> list[Value]:
        n = self.length(tx)
        if n > tx.config.unroll_limit:
            raise GraphBreak("JF007", f"iteration over {n} rows of an ndarray")
        return [self.get_item(tx, Const(i)) for i in range(n)]

    def contains(self, tx, item: Value) -> bool:
        raise GraphBreak("JF004", "membership test in a numpy array needs its data")

    def get_item(self, tx, key: Value) -> Value:
        k = key.as_python()
        if any(isinstance(i, slice) and i.step is not None and i.step < 0
               for i in (k if isinstance(k, tuple) else (k,))):
            # numpy's view with negative strides: torch has none (it would copy)
            raise GraphBreak("JF022", "a negative-step slice of an ndarray (a view with "
                             "negative strides)")
        basic = k is not NO and all(
            isinstance(i, (int, np.integer)) and not isinstance(i, bool)
            for i in (k if isinstance(k, tuple) else (k,)))
        out = _record(tx, numpy_call("operator", "getitem"), [self, key], {})
        # an index of integers only picks a scalar: numpy returns it as one
        return _as_numpy(out, scalar_if_0d=basic)

    def store_item(self, tx, key: Value, value: Value) -> None:
        if self.scalar or self.const is not NO:
            raise would_raise(TypeError, "numpy scalars do not support item assignment")
        v = value.graph_tensor(tx) if isinstance(value, NdarrayV) else value
        if isinstance(v, TensorV) and not isinstance(value, NdarrayV):
            raise GraphBreak("JF015", "a torch tensor stored into a numpy array")
        self.graph_tensor(tx).store_item(tx, _unwrap(tx, key), v)

    def get_attr(self, tx, name: str) -> Value:
        if self.const is not NO and not callable(getattr(self.const, name, None)):
            try:
                return _const_value(getattr(self.const, name))
            except AttributeError:
                raise would_raise(AttributeError, f"{type(self.const).__name__} has no "
                                  f"attribute {name!r}") from None
        fake = self._fake(tx)
        if name in ("shape", "ndim", "size", "dtype", "itemsize", "nbytes"):
            check_static(self.tensor)
            dt = np_dtype_of(fake.dtype)
            meta = {"shape": lambda: tuple(int(n) for n in fake.shape),
                    "ndim": lambda: fake.dim(), "size": lambda: int(fake.numel()),
                    "dtype": lambda: dt, "itemsize": lambda: dt.itemsize,
                    "nbytes": lambda: dt.itemsize * int(fake.numel())}[name]()
            return Const(meta)
        if name in ("T", "mT", "real", "imag"):
            out = _record(tx, numpy_call("attr", name), [self], {})
            return _as_numpy(out, scalar_if_0d=self.scalar)
        if name in _OPAQUE_ATTRS:
            raise GraphBreak("JF022", f"ndarray.{name}")
        attr = getattr(np.ndarray, name, None)
        if attr is None:
            raise would_raise(AttributeError, f"'numpy.ndarray' object has no attribute {name!r}")
        if callable(attr):
            return MethodV(self, name)
        raise GraphBreak("JF022", f"ndarray.{name}")

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        if name in _DATA_METHODS:
            if self.const is not NO:
                return _fold(getattr(self.const, name), args, kwargs)
            raise GraphBreak("JF004", f"ndarray.{name}() needs the array's data in Python")
        if "out" in kwargs:
            raise GraphBreak("JF015", "numpy out= arguments")
        if self.const is not NO and _all_const(args, kwargs):
            out = _fold_numpy(getattr(self.const, name), args, kwargs)
            if out is not None:
                return out
        if not hasattr(tnp.ndarray, name):
            raise GraphBreak("JF002", f"ndarray.{name}() is not modelled")
        if name in _INPLACE_METHODS:
            if self.scalar:
                raise would_raise(AttributeError, f"numpy scalars have no {name}()")
            _record(tx, numpy_call("method", name), [self] + list(args), kwargs)
            return Const(None)
        out = _record(tx, numpy_call("method", name), [self] + list(args), kwargs)
        return _as_numpy(out, scalar_if_0d=name in _REDUCTIONS)

    # -- operands ---------------------------------------------------------------------
    def unary_op(self, tx, fn) -> Value:
        if self.const is not NO:
            return _const_value(_apply(fn, self.const))
        if fn not in _OPS:
            raise GraphBreak("JF024", f"{fn.__name__} of an ndarray")
        return _as_numpy(_record(tx, numpy_call("operator", _OPS[fn]), [self], {}),
                         scalar_if_0d=True)

    def binary_op(self, tx, fn, a: Value, b: Value):
        other = b if a is self else a
        if isinstance(other, TensorV):
            if b is self and self.scalar:
                # tensor <op> numpy scalar: torch takes the scalar as a Python
                # number of its kind
                x = self._as_wrapped_number(tx, other)
                return other.binary_op(tx, fn, a, x) if fn not in _CMP else \
                    other.compare_op(tx, fn, a, x)
            # an array with a tensor, or numpy on the left: numpy converts the
            # tensor and wraps its result back (a DeprecationWarning) or
            # refuses: numpy's business, run natively
            raise GraphBreak("JF024", f"{fn.__name__} of a numpy value and a torch tensor")
        if not isinstance(other, (NdarrayV, Const)) or isinstance(other, Const) and not \
                isinstance(other.as_python(), (int, float, complex, bool, np.generic)):
            return NotImplemented
        if fn in _INPLACE_OPS:
            if a is not self:
                return NotImplemented
            if self.scalar or self.const is not NO:  # immutable: the plain operator
                return self.binary_op(tx, _INPLACE_OPS[fn], a, b)
            # ndarray.__iadd__: the array's own data changes (as does any view of it)
            self.graph_tensor(tx).binary_op(tx, fn, self.tensor, _unwrap(tx, b))
            return self
        if a.as_python() is not NO and b.as_python() is not NO:
            return _const_value(_apply(fn, a.as_python(), b.as_python()))
        if fn not in _OPS:
            return NotImplemented
        return _as_numpy(_record(tx, numpy_call("operator", _OPS[fn]), [a, b], {}),
                         scalar_if_0d=True)

    compare_op = binary_op

    def _as_wrapped_number(self, tx, other: TensorV) -> TensorV:
        """The scalar's 0-d tensor in the dtype torch computes ``other <op>
        number`` in (a number does not promote a tensor of its category)."""
        t = self.graph_tensor(tx)
        fake = t.fake
        py = True if fake.dtype is torch.bool else 1j if fake.is_complex() else \
            1.0 if fake.is_floating_point() else 1
        dtype = torch.result_type(other.fake, py)
        if dtype == fake.dtype:
            return t
        return tx.output.call("call_method", "to", (t, Const(dtype)), {})

    def identical(self, tx, other: Value):
        if isinstance(other, NdarrayV):
            if self.const is not NO or other.const is not NO:
                return NotImplemented
            return self.tensor.node is other.tensor.node and self.scalar == other.scalar
        return False

    # -- after the graph ------------------------------------------------------------
    def reconstruct(self, rb) -> tuple[str, bool]:
        if self.source is not None:
            return self.source.expr(), read_before_effects(self.source)
        if self.const is not NO:
            return rb.fb.const(self.const), False  # numpy scalars are immutable
        text = f"{rb.expr(self.tensor)}.detach().numpy()"
        return (text + "[()]" if self.scalar else text), True


_CMP = (operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne)
_INPLACE_OPS = {operator.iadd: operator.add, operator.isub: operator.sub,
                operator.imul: operator.mul, operator.itruediv: operator.truediv,
                operator.ifloordiv: operator.floordiv, operator.imod: operator.mod,
                operator.ipow: operator.pow, operator.iand: operator.and_,
                operator.ior: operator.or_, operator.ixor: operator.xor,
                operator.ilshift: operator.lshift, operator.irshift: operator.rshift,
                operator.imatmul: operator.matmul}


def _torch_dtype(dt: np.dtype) -> torch.dtype:
    return getattr(torch, np.dtype(dt).name)


def _apply(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001
        raise would_raise(type(e), f"{getattr(fn, '__name__', fn)}: {e}") from None


def _const_value(x) -> Value:
    """A folded value: numpy scalars stay numpy values (a graph operation
    needs them as tensors, never as fx literals)."""
    if isinstance(x, np.generic) and type(x) is not np.float64:
        return NdarrayV(None, True, const=x)
    if isinstance(x, np.ndarray):
        raise AssertionError("a mutable ndarray is never a constant")
    return Const(x)


def _all_const(args, kwargs) -> bool:
    return all(a.as_python() is not NO for a in list(args) + list(kwargs.values()))


def _fold(fn, args, kwargs) -> Value:
    pa = [a.as_python() for a in args]
    pk = {k: v.as_python() for k, v in kwargs.items()}
    if any(a is NO for a in pa) or any(v is NO for v in pk.values()):
        raise GraphBreak("JF015", f"{getattr(fn, '__name__', fn)}() of non-constant values")
    return _const_value(_apply(lambda: fn(*pa, **pk)))


def _fold_numpy(fn, args, kwargs) -> Value | None:
    """``fn`` of constants folded, unless it makes an array: a new mutable
    array each call is made by the graph (None)."""
    pa = [a.as_python() for a in args]
    pk = {k: v.as_python() for k, v in kwargs.items()}
    out = _apply(lambda: fn(*pa, **pk))
    if isinstance(out, np.ndarray) or isinstance(out, (tuple, list)) and any(
            isinstance(x, np.ndarray) for x in out):
        return None
    if isinstance(out, (tuple, list)):
        items = [_const_value(x) for x in out]
        return TupleV(items) if isinstance(out, tuple) else ListV(items)
    return _const_value(out)


def _unwrap(tx, v: Value, item: bool = False):
    """An argument of a numpy call as a graph argument: arrays as their
    tensors, numpy dtypes and scalar types as their names. ``item``: inside
    a list or tuple (which numpy makes an array of its own dtype)."""
    if isinstance(v, NdarrayV):
        return v.graph_tensor(tx)
    if isinstance(v, TensorV):
        raise GraphBreak("JF015", "a torch tensor passed to numpy (converted through "
                         "__array__)")
    if isinstance(v, (TupleV, ListV)):
        items = [_unwrap(tx, x, item=True) for x in v.items]
        return TupleV(items) if isinstance(v, TupleV) else ListV(items)
    py = v.as_python()
    if type(py) is np.float64 and not item:
        # a float64 scalar kept as a number (constants.NUMBER_TYPES): numpy's
        # own scalar here, whose type takes part in numpy's promotion
        return NdarrayV(None, True, const=py)
    if isinstance(py, np.dtype):
        return Const(py.name)
    if isinstance(py, type) and issubclass(py, np.generic):
        return Const(np.dtype(py).name)
    return v


def _varying_number(v: Value) -> bool:
    return varies(v) and type(v._value) in NUMBER_TYPES


def _record(tx, target: NumpyCall, args: list, kwargs: dict) -> Value:
    return tx.output.call("call_function", target, tuple(_unwrap(tx, a) for a in args),
                          {k: _unwrap(tx, v) for k, v in kwargs.items()})


def _as_numpy(v: Value, scalar_if_0d: bool) -> Value:
    """A numpy call's result: its tensors as arrays (0-d ones as numpy
    scalars where numpy returns scalars)."""
    if isinstance(v, TensorV):
        return NdarrayV(v, scalar=scalar_if_0d and v.fake.dim() == 0)
    if isinstance(v, (TupleV, ListV)):
        items = [_as_numpy(x, scalar_if_0d) for x in v.items]
        return TupleV(items, cls=v.cls) if isinstance(v, TupleV) else ListV(items)
    return v


# -- conversions between tensors and arrays ---------------------------------------------

def tensor_as_array(tx, t: TensorV, force: bool = False) -> NdarrayV:
    """``t.numpy()`` (also ``np.asarray(t)``): an array sharing the tensor's
    memory, where eager allows it."""
    fake = t.fake
    if fake.device.type != "cpu" and not force:
        raise would_raise(TypeError, "can't convert a non-CPU tensor to numpy")
    if fake.requires_grad and not force:
        raise would_raise(RuntimeError, "Can't call numpy() on Tensor that requires grad")
    np_dtype_of(fake.dtype)  # bfloat16 and others have no numpy dtype: eager raises
    src = t
    if force:
        src = tx.output.call("call_method", "detach", (t,), {})
    return NdarrayV(tx.output.call("call_function", torch.ops.aten.alias.default, (src,), {}))


def array_as_tensor(tx, fn, args: list, kwargs: dict) -> Value | None:
    """``torch.from_numpy``/``as_tensor``/``asarray``/``tensor`` of an array
    value, or None when the first argument is no numpy value."""
    if not args or not isinstance(args[0], NdarrayV):
        return None
    a = args[0]
    if fn is torch.from_numpy:
        if a.scalar or a.const is not NO:
            raise would_raise(TypeError, "expected np.ndarray (got numpy scalar)")
        if len(args) > 1 or kwargs:
            raise would_raise(TypeError, "from_numpy() takes one argument")
        return tx.output.call("call_function", torch.ops.aten.alias.default,
                              (a.graph_tensor(tx),), {})
    if len(args) > 1 or set(kwargs) - {"dtype"}:
        raise GraphBreak("JF015", f"{fn.__name__}() of an array with a device or options")
    t = a.graph_tensor(tx)
    dtype = kwargs.get("dtype")
    shares = fn in (torch.as_tensor, torch.asarray) and not a.scalar and a.const is NO
    out = tx.output.call("call_function", torch.ops.aten.alias.default if shares else
                         torch.clone, (t,), {})
    if dtype is not None and dtype.as_python() not in (None, t.fake.dtype):
        out = tx.output.call("call_method", "to", (out, dtype), {})
    return out


# -- numpy callables ---------------------------------------------------------------------

# numpy views with negative strides, which torch cannot represent (a copy)
_NEGATIVE_STRIDE_VIEWS = {"flip", "flipud", "fliplr", "rot90"}
_ARRAY_MAKERS = ("asarray", "array", "asanyarray", "ascontiguousarray", "asfortranarray")


def numpy_function(name: str, fn):
    """The handler of the numpy callable ``fn`` (``np.<name>``)."""
    is_ufunc = isinstance(fn, np.ufunc)
    scalar_type = isinstance(fn, type) and issubclass(fn, np.generic)

    def call(tx, args, kwargs):
        if "out" in kwargs:
            raise GraphBreak("JF015", "numpy out= arguments")
        if name in _ARRAY_MAKERS and args and isinstance(args[0], TensorV):
            # np.asarray(t): through Tensor.__array__, the tensor's memory
            arr = tensor_as_array(tx, args[0])
            if name in ("asarray", "asanyarray") and not kwargs and len(args) == 1:
                return arr
            args = [arr] + list(args[1:])
        if name in _ARRAY_MAKERS and args and isinstance(args[0], (ListV, TupleV)) and \
                any(_varying_number(x) for x in args[0].items):
            # an array of floats that vary between calls (a simulator's
            # state): folding it would specialise them and recompile at every
            # new value. The floats are one float64 vector input, computed
            # natively (numpy makes float64 of Python floats too); only the
            # conversion (a dtype= cast) is the graph's. Other numpy functions
            # of varying floats still fold: torch's kernels need not round
            # as numpy's do.
            vec = tx.output.float_list_input(list(args[0].items))
            if vec is not None:
                args = [NdarrayV(vec, False)] + list(args[1:])
        if is_ufunc and not kwargs and args and all(
                isinstance(a, Const) and type(a._value) in NUMBER_TYPES for a in args) and \
                any(unguarded(a) for a in args):
            # np.sin of a float from mutable state: kept a function of the
            # values read, recomputed natively by numpy itself (exact), so a
            # new value each call costs no recompile
            return fold_call_lazy(fn, list(args))
        if not any(isinstance(a, (NdarrayV, TensorV)) for a in
                   _flat(list(args) + list(kwargs.values()))):
            if _all_const(args, kwargs):
                out = _fold_numpy(fn, args, kwargs)
                if out is not None:
                    return out
        if scalar_type:
            # np.float32(a): a cast; a scalar of a 0-d array
            if len(args) != 1 or kwargs:
                raise GraphBreak("JF015", f"np.{name}() arguments")
            out = _record(tx, numpy_call("method", "astype"), [args[0], Const(name)], {})
            return _as_numpy(out, scalar_if_0d=True)
        if not hasattr(tnp, name) or name in _NEGATIVE_STRIDE_VIEWS:
            raise GraphBreak("JF002", f"numpy.{name} is not modelled")
        out = _record(tx, numpy_call("function", name), list(args), kwargs)
        return _as_numpy(out, scalar_if_0d=is_ufunc or name in _REDUCTIONS)

    return call


def _flat(values: list) -> list:
    out = []
    for v in values:
        if isinstance(v, (TupleV, ListV)):
            out += _flat(v.items)
        else:
            out.append(v)
    return out


def numpy_callables():
    """(name, callable) of the numpy namespace that torch._numpy models."""
    for name in dir(tnp):
        if name.startswith("_") or name in ("ndarray", "dtype", "finfo", "iinfo", "linalg",
                                             "fft", "random", "set_default_dtype"):
            continue
        obj = getattr(np, name, None)
        if obj is None or not callable(obj):
            continue
        yield name, obj


# -- numpy values read from the frame -----------------------------------------------------

def wrap_numpy(output, obj, source: Source) -> Value | None:
    """An ndarray or numpy scalar read from the frame: an array is a graph
    input (its tensor shares the array's memory); a scalar is a constant
    (specialised and guarded like a Python number). None when it is
    something else (an array numpy-only dtypes, read-only or with negative
    strides: used as an opaque object)."""
    g = output.guards
    if isinstance(obj, np.generic):
        if not isinstance(obj, (np.number, np.bool_)) or type(obj) is np.float64:
            return None
        g.constant(source, obj)
        return NdarrayV(None, True, const=obj, source=source)
    if type(obj) is not np.ndarray or not obj.flags.writeable or obj.ndim == 0 or \
            min(obj.strides, default=0) < 0:
        return None
    try:
        real = torch.from_numpy(obj)
    except (TypeError, ValueError):
        return None
    e = source.expr()
    g.type_is(source, obj)
    g.add(f"{e}.dtype == {g.fb.const(obj.dtype)}", f"{source.name()}.dtype == {obj.dtype}")
    g.add(f"{e}.ndim == {obj.ndim} and {e}.flags.writeable and __jf_h_min({e}.strides) >= 0",
          f"{source.name()} is a writeable {obj.ndim}-d array with positive strides")
    tsrc = ExprSource(f"__jf_torch.from_numpy({e})", f"from_numpy({source.name()})")
    t = output.tensor_input(real, tsrc)
    return NdarrayV(t, source=source)


def _tensor_numpy(tx, t: TensorV, args: list, kwargs: dict) -> Value:
    force = kwargs.get("force", args[0] if args else Const(False)).as_python()
    if len(args) + len(kwargs) > 1 or not isinstance(force, bool):
        raise GraphBreak("JF015", "Tensor.numpy() arguments")
    return tensor_as_array(tx, t, force)


TENSOR_CONVERSIONS["numpy"] = _tensor_numpy
# (numpy's float64 scalars are numbers: constants.NUMBER_TYPES)
FOLDED_KINDS.append((np.generic, lambda x: Const(x) if type(x) is np.float64 else
                     NdarrayV(None, True, const=x)))
