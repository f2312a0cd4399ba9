"""Dicts with constant keys, and transformers ModelOutputs.

In: dicts built while tracing (``{...}``, ``dict(...)``, ``**kwargs``, dict
subclasses whose construction is plain), dicts read from the frame whose
keys are all constants (lazily, like lists), ModelOutputs and
``collections.defaultdict`` built while tracing.
Out: ``DictV``, ``RecordDictV``, ``DefaultDictV`` and ``DictViewV`` (a live
keys/values/items view) and what Python does with them while tracing: items, membership,
iteration over keys, their methods (a mutation of a dict read from the frame
is recorded and replayed after the graph), how they are rebuilt after the
graph, and :func:`dict_key`.
"""
from __future__ import annotations

import collections
import dataclasses
import gc
import inspect
import operator
import types

from ..breaks import GraphBreak, would_raise
from ..sources import ExprSource, Source
from .base import NO, Value, read_before_effects
from .constants import LITERAL_TYPES, Const, fold
from .containers import Container, SetV, TupleV, same_or_equal
from .methods import MethodV
from .objects import callable_value

_DICT_MUTATORS = ("pop", "update", "setdefault", "clear", "popitem", "__setitem__")


class DictV(Container, Value):
    """A dict with constant keys; ``cls`` for dict subclasses (e.g. ModelOutput)."""

    __slots__ = ("_items", "source", "cls", "_lazy", "_tguard", "pending")

    def __init__(self, items: dict | None, source: Source | None = None, cls: type = dict, *,
                 lazy=None, type_guard=None) -> None:
        self._items = dict(items) if items is not None else None
        self.source = source
        self.cls = cls
        self._lazy = lazy
        self._tguard = type_guard
        self.pending: list = []

    def python_type(self) -> type:
        self._type_guard()
        return self.cls

    def _repr(self) -> str:
        if self._lazy is not None:
            return "<lazy>"
        return ", ".join(f"{k!r}: {v!r}" for k, v in self._items.items())

    def _apply_pending(self, name: str, args: list) -> None:
        if name == "__setitem__":
            self._items[args[0].value] = args[1]
        elif name == "update":
            self._items.update(args[0].items)
        else:
            raise AssertionError(name)

    def as_python(self):
        vals = {k: x.as_python() for k, x in self.items.items()}
        return NO if any(x is NO for x in vals.values()) else vals

    def truth(self, tx) -> bool:
        return bool(self.items)

    def length(self, tx) -> int:
        return len(self.items)

    def iterate(self, tx) -> list[Value]:
        return [Const(k) for k in self.items]

    def dict_items(self, tx) -> dict:
        return dict(self.items)

    def contains(self, tx, item: Value) -> bool:
        key = item.as_python()
        if key is NO:
            raise GraphBreak("JF021", "membership test with a non-constant key")
        return key in self.items

    def get_item(self, tx, key: Value) -> Value:
        k = key.as_python()
        if k is NO:
            return super().get_item(tx, key)
        try:
            return self.items[k]
        except (KeyError, TypeError) as e:  # Python's own exception: exact
            raise would_raise(type(e), repr(k), exc=e) from None

    def store_item(self, tx, key: Value, value: Value) -> None:
        k = key.as_python()
        if k is NO:
            return super().store_item(tx, key, value)
        if self.source is not None and self._lazy is not None:
            self.pending.append(("__setitem__", [Const(k), value]))
            tx.output.effects.container_mutated(self)
            return
        self.will_mutate(tx)
        self.items[k] = value

    def delete_item(self, tx, key: Value) -> None:
        k = key.as_python()
        if k not in self.items:
            return super().delete_item(tx, key)
        self.will_mutate(tx)
        del self.items[k]

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        if self.source is not None and self._lazy is not None and not kwargs and \
                name == "update" and len(args) == 1:
            # a dict read from the frame and not looked into: record the
            # operation itself (replayed as is; no guard on its keys)
            self.pending.append((name, [DictV(args[0].dict_items(tx))]))
            tx.output.effects.container_mutated(self)
            return Const(None)
        if name in _VIEW_KINDS and not args and not kwargs:
            return DictViewV(self, name)  # live: reads the dict at each use
        if name == "get":
            key = args[0].as_python()
            default = args[1] if len(args) > 1 else Const(None)
            return self.items.get(key, default)
        if name in _DICT_MUTATORS:
            self.will_mutate(tx)
        if name == "pop":
            key = args[0].as_python()
            if key in self.items:
                return self.items.pop(key)
            if len(args) > 1:
                return args[1]
            raise would_raise(KeyError, repr(key), exc=KeyError(key))
        if name == "update":
            if args:
                self.items.update(args[0].dict_items(tx))
            self.items.update(kwargs)
            return Const(None)
        if name == "setdefault":
            key = args[0].as_python()
            return self.items.setdefault(key, args[1] if len(args) > 1 else Const(None))
        if name == "copy":
            return DictV(self.items, cls=self.cls)
        if name == "clear" and not args and not kwargs:
            self.items.clear()
            return Const(None)
        if name == "popitem" and not args and not kwargs and self.cls is dict:
            if not self.items:
                raise would_raise(KeyError, "popitem(): dictionary is empty")
            k, v = self.items.popitem()  # the last inserted item
            return TupleV([Const(k), v])
        if name == "__setitem__":
            self.items[args[0].as_python()] = args[1]
            return Const(None)
        raise self._unsupported_method(name)

    def binary_op(self, tx, fn, a: Value, b: Value):
        """``d | other`` (a new dict) and ``d |= other`` (an update)."""
        if fn is operator.ior and a is self:
            if not isinstance(b, DictV):
                return NotImplemented  # (dict |= pairs also works: left to a break)
            self.will_mutate(tx)
            self.items.update(b.dict_items(tx))
            return self
        if fn is operator.or_ and isinstance(a, DictV) and isinstance(b, DictV) and \
                a.cls in (dict, collections.OrderedDict) and b.cls in (dict,
                                                                        collections.OrderedDict):
            merged = dict(a.items)
            merged.update(b.items)
            # dict | OrderedDict: OrderedDict.__ror__ decides, giving its class
            cls = collections.OrderedDict if collections.OrderedDict in (a.cls, b.cls) else dict
            return DictV(merged, cls=cls)
        return NotImplemented

    def reconstruct(self, rb) -> tuple[str, bool]:
        if self.source is not None:
            return self.source.expr(), read_before_effects(self.source)
        fb = rb.fb
        inner = ", ".join(
            f"{k!r}: {rb.expr(x)}" if type(k) in LITERAL_TYPES else
            f"{fb.const(k)}: {rb.expr(x)}" for k, x in self.items.items())
        if self.cls is dict:
            return f"{{{inner}}}", True
        return f"{fb.const(_build_dict_subclass)}({fb.const(self.cls)}, {{{inner}}})", True

    def replay_mutation(self, rb) -> list[str]:
        if self._lazy is not None:
            return self._replay_pending(rb)
        src = self.source.expr()
        items = ", ".join(f"{rb.fb.const(k)}: {rb.snapshot(x)}" for k, x in self.items.items())
        return [f"{src}.clear()", f"{src}.update({{{items}}})"]


class DefaultDictV(DictV):
    """A ``collections.defaultdict`` built while tracing: a read of a missing
    key calls ``default_factory`` (traced) and stores its result, as
    ``__missing__`` does; ``get``, ``in`` and the rest are a dict's."""

    __slots__ = ("factory",)

    def __init__(self, factory: Value, items: dict) -> None:
        super().__init__(items, cls=collections.defaultdict)
        self.factory = factory  # a callable value, or Const(None)

    def get_item(self, tx, key: Value) -> Value:
        k = key.as_python()
        if k is NO or k in self.items or \
                isinstance(self.factory, Const) and self.factory.value is None:
            return super().get_item(tx, key)
        try:
            hash(k)
        except TypeError as e:  # Python's own exception: exact
            raise would_raise(TypeError, repr(k), exc=e) from None
        value = self.factory.call(tx, [], {})
        self.will_mutate(tx)
        self.items[k] = value
        return value

    def get_attr(self, tx, name: str) -> Value:
        if name == "default_factory":
            return self.factory
        return super().get_attr(tx, name)

    def store_attr(self, tx, name: str, value: Value) -> None:
        if name != "default_factory":
            return super().store_attr(tx, name, value)
        if not (isinstance(value, Const) and value.value is None or callable_value(value)):
            raise would_raise(TypeError, "default_factory must be callable or None")
        self.will_mutate(tx)
        self.factory = value

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        if name in ("copy", "__copy__") and not args and not kwargs:
            return DefaultDictV(self.factory, self.items)
        if name == "__missing__":
            raise GraphBreak("JF022", "defaultdict.__missing__ called directly")
        return super().call_method(tx, name, args, kwargs)

    def reconstruct(self, rb) -> tuple[str, bool]:
        inner = ", ".join(
            f"{k!r}: {rb.expr(x)}" if type(k) in LITERAL_TYPES else
            f"{rb.fb.const(k)}: {rb.expr(x)}" for k, x in self.items.items())
        return (f"{rb.fb.const(collections.defaultdict)}({rb.expr(self.factory)}, "
                f"{{{inner}}})"), True


class RecordDictV(DictV):
    """A transformers ``ModelOutput`` built while tracing: a dataclass whose
    fields are attributes, and whose non-None fields, in field order, are also
    its dict items (``out.loss``, ``out["logits"]``, ``out[0]`` = the first
    non-None field, ``out.to_tuple()``)."""

    __slots__ = ("fields",)

    def __init__(self, cls: type, fields: dict) -> None:
        super().__init__({k: v for k, v in fields.items()
                          if not (isinstance(v, Const) and v.value is None)}, cls=cls)
        self.fields = fields

    def get_item(self, tx, key: Value) -> Value:
        k = key.as_python()
        if not isinstance(k, (int, slice)) or isinstance(k, bool):
            return super().get_item(tx, key)
        values = list(self.items.values())  # by position among non-None fields
        if isinstance(k, slice):
            return TupleV(values[k])
        try:
            return values[k]
        except IndexError:
            raise would_raise(IndexError, "index out of range") from None

    def get_attr(self, tx, name: str) -> Value:
        if name in self.fields:
            return self.fields[name]
        attr = inspect.getattr_static(self.cls, name, None)
        if isinstance(attr, types.FunctionType):  # to_tuple() and other methods
            return MethodV(self, name, attr)
        return super().get_attr(tx, name)


class DictViewV(Value):
    """``d.keys()``, ``d.values()`` or ``d.items()`` of a dict value: a live
    view, as in Python. It holds the dict value, not a copy, so every use
    (``len``, ``in``, iteration, set operators) sees the dict's later
    changes; it is rebuilt as ``<the dict>.keys()`` and so on."""

    __slots__ = ("dict", "kind", "source")

    def __init__(self, d: DictV, kind: str) -> None:
        self.dict = d
        self.kind = kind
        self.source = None

    def python_type(self) -> type:
        base = collections.OrderedDict if issubclass(self.dict.python_type(),
                                                     collections.OrderedDict) else dict
        return _VIEW_TYPES[(base, self.kind)]

    def _repr(self) -> str:
        return f"{self.kind} of {self.dict!r}"

    def _members(self) -> list[Value]:
        items = self.dict.items
        if self.kind == "keys":
            return [Const(k) for k in items]
        if self.kind == "values":
            return list(items.values())
        return [TupleV([Const(k), v]) for k, v in items.items()]

    def _python_members(self) -> list | None:
        """The members as Python values (keys, or (key, value) pairs of
        constants), or None."""
        if self.kind == "keys":
            return list(self.dict.items)
        if self.kind == "items":
            out = []
            for k, v in self.dict.items.items():
                pv = v.as_python()
                if pv is NO:
                    return None
                out.append((k, pv))
            return out
        return None  # values views are not sets

    def as_python(self):
        d = self.dict.as_python()
        if d is NO and self.kind == "keys":
            d = dict.fromkeys(self.dict.items)  # the keys are constants
        return NO if d is NO else getattr(d, self.kind)()

    def truth(self, tx) -> bool:
        return bool(self.dict.items)

    def length(self, tx) -> int:
        return len(self.dict.items)

    def iterate(self, tx) -> list[Value]:
        return self._members()

    def contains(self, tx, item: Value) -> bool:
        if self.kind == "keys":
            return self.dict.contains(tx, item)
        if self.kind == "items":
            # (k, v) in d.items(): k is a key and d[k] is v or equals it
            pair = item.iterate(tx) if isinstance(item, TupleV) else None
            if pair is None or len(pair) != 2:
                pk = item.as_python()
                if pk is NO:
                    raise GraphBreak("JF021", "membership test in dict items of a non-pair")
                if not (isinstance(pk, tuple) and len(pk) == 2):
                    return False
                pair = [Const(pk[0]), Const(pk[1])]
            if not self.dict.contains(tx, pair[0]):
                return False
            return same_or_equal(tx, self.dict.get_item(tx, pair[0]), pair[1])
        return any(same_or_equal(tx, v, item) for v in self._members())

    def get_attr(self, tx, name: str) -> Value:
        if name == "isdisjoint" and self.kind != "values":
            return MethodV(self, name)
        if name == "mapping":
            raise GraphBreak("JF022", "the mapping of a dict view")
        return super().get_attr(tx, name)

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        if name == "isdisjoint" and len(args) == 1 and not kwargs:
            other = _as_set(tx, args[0])
            mine = self._python_members()
            if mine is None or other is None:
                raise GraphBreak("JF021", "isdisjoint() of non-constant members")
            return Const(set(mine).isdisjoint(other))
        return super().call_method(tx, name, args, kwargs)

    def binary_op(self, tx, fn, a: Value, b: Value):
        # keys and items views are sets: & | - ^ with any iterable give a set
        if fn not in _SET_OPS or self.kind == "values":
            return NotImplemented
        left, right = _as_set(tx, a), _as_set(tx, b)
        if left is None or right is None:
            raise GraphBreak("JF021", f"set operator {fn.__name__} on a dict view of "
                             "non-constant members")
        out = fold(_SET_OPS[fn], left, right).value
        return SetV([Const(x) for x in out])

    def compare_op(self, tx, fn, a: Value, b: Value):
        if self.kind == "values":
            # dict_values compares by identity
            if fn in (operator.eq, operator.ne):
                same = isinstance(a, DictViewV) and isinstance(b, DictViewV) and a is b
                return Const(same == (fn is operator.eq))
            return NotImplemented
        if fn not in (operator.eq, operator.ne, operator.lt, operator.le, operator.gt,
                      operator.ge):
            return NotImplemented
        other = b if a is self else a
        if not isinstance(other, (DictViewV, SetV)) and not isinstance(
                other.as_python(), (set, frozenset)):
            # a view equals only sets and set-like views
            if fn in (operator.eq, operator.ne):
                return Const(fn is operator.ne)
            return NotImplemented
        left, right = _as_set(tx, a), _as_set(tx, b)
        if left is None or right is None:
            raise GraphBreak("JF021", "comparison of a dict view of non-constant members")
        return fold(fn, left, right)

    def reconstruct(self, rb) -> tuple[str, bool]:
        if self.source is not None:
            return self.source.expr(), read_before_effects(self.source)
        return f"{rb.expr(self.dict)}.{self.kind}()", True


def wrap_dict_view(output, view, source: Source) -> Value | None:
    """A dict view read from the frame (one handed to a resume function):
    a live view of its dict, which is wrapped like any dict found in the
    frame (reached through the view, so a dict also passed by itself is
    the same value, guarded to be the same object); None when its dict is
    not one the interpreter models."""
    real = gc.get_referents(view)
    if len(real) != 1 or type(real[0]) not in (dict, collections.OrderedDict):
        return None
    kind = _KIND_OF_VIEW[type(view)]
    output.guards.type_is(source, view)
    d = output.wrap(real[0], ExprSource(
        f"__jf_h___import__('gc').get_referents({source.expr()})[0]",
        f"{source.name()}.mapping"))
    if not isinstance(d, DictV):
        return None
    v = DictViewV(d, kind)
    v.source = source
    return v


_VIEW_KINDS = ("keys", "values", "items")
_VIEW_TYPES = {(base, kind): type(getattr(base(), kind)())
               for base in (dict, collections.OrderedDict) for kind in _VIEW_KINDS}
_KIND_OF_VIEW = {t: kind for (_, kind), t in _VIEW_TYPES.items()}
VIEW_TYPES = frozenset(_KIND_OF_VIEW)
_SET_OPS = {operator.and_: operator.and_, operator.or_: operator.or_,
            operator.sub: operator.sub, operator.xor: operator.xor}


def _as_set(tx, v: Value) -> set | None:
    """The members of a set-like operand as a Python set, or None."""
    if isinstance(v, DictViewV):
        m = v._python_members()
        return None if m is None else set(m)
    py = v.as_python()
    if py is not NO and isinstance(py, (set, frozenset)):
        return set(py)
    try:
        items = v.iterate(tx)
    except GraphBreak:
        return None
    vals = [x.as_python() for x in items]
    if any(x is NO for x in vals):
        return None
    try:
        return set(vals)
    except TypeError:
        raise would_raise(TypeError, "unhashable member of a set operand") from None


def dict_key(v: Value):
    """``v`` as a dict key: a hashable constant."""
    k = v.as_python()
    if k is NO:
        raise GraphBreak("JF021", f"dict key of type {v.python_type().__name__}")
    try:
        hash(k)
    except TypeError:
        raise would_raise(TypeError, "unhashable dict key") from None
    return k


def _build_dict_subclass(cls, items: dict):
    """Rebuild a dict subclass (a ModelOutput: a dataclass) made while tracing."""
    if dataclasses.is_dataclass(cls):
        return cls(**items)
    return cls(items)
