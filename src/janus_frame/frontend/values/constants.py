"""Constants: Python values known at trace time, and symbolic sizes.

In: Python values read from the frame (with their source and a pending
guard) or computed while tracing.
Out: ``Const`` (specialised and guarded when its value is first used),
``DynInt``/``DynFloat`` (a number that varies between calls), ``DerivedConst`` (computed
from constants whose guards are still pending), ``SymV`` (a size of a
dynamic dimension), and what each does under Python's operations: operators
fold at trace time, a failing one is a graph break (the program would raise
there too); size arithmetic stays symbolic.
"""
from __future__ import annotations

import collections
import math
import operator
import types
from typing import Any

import numpy as np
import torch

from ..breaks import GraphBreak, would_raise
from ..sources import Source
from .base import NO, Value

# int arithmetic on sizes that stays symbolic (``x.view(B * T, -1)``)
_SIZE_ARITH = {operator.add: operator.add, operator.sub: operator.sub,
               operator.mul: operator.mul, operator.floordiv: operator.floordiv,
               operator.mod: operator.mod, operator.iadd: operator.add,
               operator.isub: operator.sub, operator.imul: operator.mul,
               operator.ifloordiv: operator.floordiv, operator.imod: operator.mod}
LITERAL_TYPES = (int, str, bool, type(None), bytes)
# (a read-only mapping and the views of a mapping folded at trace time, such
# as inspect.Signature.parameters, iterate as they are)
_ITERABLE = (tuple, list, str, range, torch.Size, bytes, frozenset, set, types.MappingProxyType,
             *{type(getattr(m, v)()) for m in (collections.OrderedDict(),
                                              types.MappingProxyType({}))
               for v in ("keys", "values", "items")})


class Const(Value):
    """``guard`` (for values read from the frame) installs the guard on the
    value the first time the trace uses it: a constant that is only passed
    along (to a native call, or back to Python) is never specialised."""

    __slots__ = ("_value", "source", "_guard")

    def __init__(self, value: Any, source: Source | None = None, guard=None) -> None:
        self._value = value
        self.source = source
        self._guard = guard

    @property
    def value(self) -> Any:
        g = self._guard
        if g is not None:
            self._guard = None
            g()
        return self._value

    def python_type(self) -> type:
        return type(self.value)

    def _repr(self) -> str:
        return repr(self._value)

    def as_python(self):
        return self.value

    def truth(self, tx) -> bool:
        return bool(self.value)

    def length(self, tx) -> int:
        return fold(len, self.value).value

    def iterate(self, tx) -> list[Value]:
        val = self.value
        if isinstance(val, _ITERABLE):
            if len(val) > tx.config.unroll_limit:
                raise GraphBreak("JF007", f"iteration over {len(val)} items")
            return [Const(x) for x in val]
        raise would_raise(TypeError, f"{type(val).__name__} is not iterable")

    def contains(self, tx, item: Value) -> bool:
        key = item.as_python()
        if key is NO:
            raise GraphBreak("JF021", "membership test with a non-constant item")
        return fold(operator.contains, self.value, key).value

    def get_item(self, tx, key: Value) -> Value:
        k = key.as_python()
        if k is NO:
            return super().get_item(tx, key)
        return fold(operator.getitem, self.value, k)

    def get_attr(self, tx, name: str) -> Value:
        try:
            return folded(getattr(self.value, name))
        except AttributeError:
            raise would_raise(AttributeError, f"{type(self.value).__name__} has no attribute "
                              f"{name!r}") from None

    def call(self, tx, args: list, kwargs: dict) -> Value:
        return tx.call_object(self, self.value, args, kwargs)

    def dict_items(self, tx) -> dict:
        if isinstance(self.value, dict):
            return {k: Const(x) for k, x in self.value.items()}
        return super().dict_items(tx)

    def unary_op(self, tx, fn) -> Value:
        if fn in (operator.neg, operator.pos):
            return fold_call_lazy(fn, [self])
        return fold(fn, self.value)

    def binary_op(self, tx, fn, a: Value, b: Value):
        if isinstance(a, Const) and isinstance(b, Const):
            return fold_lazy(fn, a, b)
        other = b if a is self else a
        if isinstance(self._value, (str, bytes, frozenset)) and other.as_python() is not NO:
            # "%s" % (a, b), frozenset | {...}: the other operand is made of
            # constants (a tuple, a set built while tracing)
            return fold(fn, a.as_python(), b.as_python())
        return NotImplemented

    def compare_op(self, tx, fn, a: Value, b: Value):
        if isinstance(a, Const) and isinstance(b, Const):
            rel = relation(tx, fn, a, b)
            return rel if rel is not None else fold_lazy(fn, a, b)
        return NotImplemented

    def identical(self, tx, other: Value):
        if not isinstance(other, Const):
            return False  # values of different kinds are different objects
        for x, y in ((self, other), (other, self)):
            # `v is None` on a value read from the frame guards only that,
            # not the value (an int that varies stays unspecialised)
            if y._guard is None and y._value is None and unguarded(x) and \
                    x.source is not None:
                result = x._value is None
                tx.output.guards.add(f"({x.source.expr()} is None) is {result!r}",
                                     f"{x.source.name()} is {'' if result else 'not '}None")
                return result
        return self.value is other.value

    def reconstruct(self, rb) -> tuple[str, bool]:
        if self.source is not None:
            # read now, before any side effect is replayed: value semantics
            return self.source.expr(), True
        x = self.value
        if type(x) in LITERAL_TYPES or (type(x) is float and math.isfinite(x)):
            return repr(x), False
        return rb.fb.const(x), False


class DynInt(Const):
    """An int read from the frame whose value changed between calls before
    (automatic dynamic): tensor operations receive it as a graph input
    instead of a constant; any other use specialises it as usual."""

    __slots__ = ()


class DynFloat(Const):
    """A float read from the frame whose value changed between calls before
    (automatic dynamic): an operand of tensor operations on floating-point
    tensors is a 0-d float64 graph input (the operation then computes as
    with the Python float); any other use specialises it as usual."""

    __slots__ = ()


class DerivedConst(Const):
    """A Python value computed from constants read from the frame, whose guards
    are still pending (``self.counter + 1``). If the trace never uses its
    value, nothing is specialised: it is recomputed from its operands after
    the graph (so a counter that changes every call costs no recompile)."""

    __slots__ = ("fn", "args")

    def __init__(self, fn, args: list) -> None:
        raw = [a._value for a in args]
        super().__init__(fn(*raw), None, guard=self._guard_args)
        self.fn = fn
        self.args = args

    def _guard_args(self) -> None:
        for a in self.args:
            a.value  # noqa: B018 - installs the operand's guard

    def reconstruct(self, rb) -> tuple[str, bool]:
        args = ", ".join(rb.expr(a) for a in self.args)
        return f"{rb.fb.const(self.fn)}({args})", True


class SymV(Const):
    """A symbolic size (``x.shape[0]`` of a dynamic dimension, ``B * T``).

    ``node`` computes it in the graph (``sym_size`` and operator nodes), ``sym``
    is the SymInt of the shape environment. Tensor operations and size
    arithmetic keep it symbolic; reading ``value`` (any use as a Python int:
    ``range``, indexing a list, printing) specialises the size: the shape
    environment records ``sym == value`` and the entry's guards check it."""

    __slots__ = ("node", "sym")
    operand_rank = 2  # size arithmetic before folding

    def __init__(self, node, sym) -> None:
        super().__init__(sym.node.hint, None, guard=self._specialise)
        self.node = node
        self.sym = sym

    def _specialise(self) -> None:
        from ...torch_compat import guard_int

        guard_int(self.sym)

    def python_type(self) -> type:
        return int

    def _repr(self) -> str:
        return f"{self.sym} (now {self._value})"

    def truth(self, tx) -> bool:
        return bool(self.sym != 0)  # a condition on the size, not its value

    def unary_op(self, tx, fn) -> Value:
        if fn in (operator.neg, operator.pos):
            return tx.output.sym_call(fn, self)
        return super().unary_op(tx, fn)

    def binary_op(self, tx, fn, a: Value, b: Value):
        if fn in _SIZE_ARITH and int_like(a) and int_like(b):
            return tx.output.sym_call(_SIZE_ARITH[fn], a, b)
        return super().binary_op(tx, fn, a, b)

    def identical(self, tx, other: Value):
        """``size is None`` (``tgt_len if tgt_len is not None else ...``):
        a size is an int, never the same object as a value of another type,
        so the answer needs no value and the size stays symbolic."""
        if isinstance(other, Const) and not isinstance(other, SymV) and \
                type(other.value) is not int and not isinstance(other.value, int):
            return False
        return super().identical(tx, other)

    def compare_op(self, tx, fn, a: Value, b: Value):
        if int_like(a) and int_like(b):
            # a condition on sizes: the shape environment guards it
            return Const(bool(fn(_size_operand(a), _size_operand(b))))
        return super().compare_op(tx, fn, a, b)

    def reconstruct(self, rb) -> tuple[str, bool]:
        text = rb.sym_text(self) if rb.sym_text is not None else None
        if text is not None:
            return text, True
        return repr(self.value), False  # not a function of the inputs' sizes: specialised


_RELATIONS = {operator.lt: "<", operator.le: "<=", operator.gt: ">", operator.ge: ">=",
              operator.eq: "==", operator.ne: "!="}


def relation(tx, fn, a: Const, b: Const) -> Const | None:
    """A comparison of numbers read from the frame whose values the trace
    has not used (``len(losses) > 3``, ``step % 100 == 0``): its outcome,
    as a constant whose guard, installed when the outcome is used, is the
    relation (``(len(L['losses']) > 3) is False``), not the values: one
    entry serves every value on the same side. None when an operand cannot
    be re-evaluated at run time (then the values are guarded)."""
    op = _RELATIONS.get(fn)
    if op is None or not (unguarded(a) or unguarded(b)) or isinstance(a, SymV) or \
            isinstance(b, SymV):
        return None
    if not all(type(x._value) in NUMBER_TYPES for x in (a, b)):
        return None
    k = tx.output.guards.fb.const
    ea, eb = _rerun_expr(a, k), _rerun_expr(b, k)
    if ea is None or eb is None:
        return None
    result = bool(fn(a._value, b._value))
    guards = tx.output.guards

    def guard() -> None:
        # (bool(): numpy's float64 compares to a numpy bool, never `is` True)
        guards.add(f"__jf_h_bool(({ea}) {op} ({eb})) is {result!r}",
                   f"({_rerun_name(a)} {op} {_rerun_name(b)}) is {result!r}")
    return Const(result, None, guard=guard)


# numbers the trace keeps as Python values: numpy's float64 scalar (what
# numpy's functions of Python floats return: a simulator's state) counts as
# a float -- a subclass of float, whose arithmetic the recomputation (the
# same Python operations, run natively) reproduces with its type
NUMBER_TYPES = (int, float, np.float64)
FLOAT_TYPES = (float, np.float64)


def _rerun_expr(v: Const, k) -> str | None:
    """A guard expression computing ``v`` at run time, or None."""
    x = v._value
    if v._guard is None and (type(x) is int or type(x) is float and math.isfinite(x)):
        return repr(x)  # a literal, or a value already guarded
    if v._guard is None and type(x) is np.float64:
        return k(x)  # (the object itself: its type matters to what it computes)
    if isinstance(v, DerivedConst):
        parts = [_rerun_expr(a, k) for a in v.args]
        if any(p is None for p in parts):
            return None
        return f"{k(v.fn)}({', '.join(parts)})"
    if v.source is not None:
        return v.source.expr()
    return None


def _rerun_name(v: Const) -> str:
    if isinstance(v, DerivedConst) and v._guard is not None:
        return f"{getattr(v.fn, '__name__', 'f')}({', '.join(map(_rerun_name, v.args))})"
    return v.source.name() if v.source is not None else repr(v._value)


def unguarded(v) -> bool:
    """A constant from the frame whose value the trace has not used yet."""
    return isinstance(v, Const) and v._guard is not None


def int_like(v: Value) -> bool:
    return isinstance(v, SymV) or isinstance(v, Const) and type(v._value) is int


def _size_operand(v: Const):
    """An operand of a size comparison, as the shape environment takes it."""
    return v.sym if isinstance(v, SymV) else v.value


# Folded results that are not plain constants, by type: a kind of another
# module makes their value (numpy scalars, numpy.py: a graph operation needs
# them as tensors, never as literals of the fx code)
FOLDED_KINDS: list = []  # (type, factory(value) -> Value)


def folded(x) -> Const:
    """The value of a Python object computed at trace time."""
    for t, make in FOLDED_KINDS:
        if isinstance(x, t):
            return make(x)
    return Const(x)


def fold(fn, *args) -> Const:
    """``fn(*args)`` at trace time; an exception is what the program would
    raise there too."""
    try:
        out = fn(*args)
    except Exception as e:  # noqa: BLE001 - Python's own exception: exact
        raise would_raise(type(e), f"{getattr(fn, '__name__', fn)}: {e}", exc=e) from None
    return folded(out)


def _number(v) -> bool:
    return isinstance(v, Const) and not isinstance(v, SymV) and \
        type(v._value) in (*NUMBER_TYPES, bool)


def fold_call_lazy(fn, args: list) -> Const:
    """``fn(*args)`` of a pure numeric function (``math.cos``, ``abs``, unary
    minus) on numbers, keeping the operands' guards pending like
    :func:`fold_lazy`: a float read from mutable state (a simulator's
    ``self.state``) that only flows through Python arithmetic, comparisons
    (guarded as relations) and values recomputed after the graph is never
    specialised to its value, so a new value each call costs no recompile.
    Anything else folds now (and guards the operands)."""
    if args and all(_number(a) for a in args) and any(unguarded(a) for a in args):
        try:
            return DerivedConst(fn, list(args))
        except Exception:  # noqa: BLE001 - e.g. math domain error: fold reports it
            pass
    return fold(fn, *[a.value for a in args])


def varies(v) -> bool:
    """A number from the frame that varied between calls (automatic
    dynamic: a DynInt/DynFloat), or computed from one, whose value the trace
    has not used: a graph operation gets it as an input rather than a
    constant (output.py)."""
    if not unguarded(v):
        return False
    if isinstance(v, (DynInt, DynFloat)):
        return True
    return isinstance(v, DerivedConst) and any(varies(a) for a in v.args)


def rerun_source(v: Const) -> Source | None:
    """A source that recomputes the unguarded number ``v`` at run time from
    the frame, with Python's own operations (so a float derived by Python
    arithmetic is bitwise what the program computes), or None."""
    from ..sources import ExprSource, PinnedSource

    e = _rerun_expr(v, lambda obj: PinnedSource(obj).expr())
    return None if e is None else ExprSource(e, _rerun_name(v))


def fold_lazy(fn, a: Const, b: Const) -> Const:
    """Fold, keeping the operands' guards pending when they are (see
    DerivedConst)."""
    if (unguarded(a) or unguarded(b)) and isinstance(a._value, (int, float)) and \
            isinstance(b._value, (int, float)):
        try:
            return DerivedConst(fn, [a, b])
        except Exception:  # noqa: BLE001 - e.g. ZeroDivisionError: fold reports it
            pass
    return fold(fn, a.value, b.value)
