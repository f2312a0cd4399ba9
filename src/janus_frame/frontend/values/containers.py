"""Lists, tuples, sets, slices and materialised iterators.

In: containers built while tracing, and lists/tuples/sets read from the frame
(lazily: their items, and the guards on length and items, are realised only
when the trace looks inside).
Out: ``ListV``, ``TupleV`` (namedtuples too), ``SetV``, ``TensorListV`` (a
list of tensors of varying length, one stacked graph input), ``SliceV``,
``IterV``, and what Python does with them while tracing: items, slices,
membership, iteration, ``+``/``*``, their methods (a mutation of a container
read from the frame is recorded and replayed after the graph), how they are
rebuilt after the graph and how their recorded mutations are replayed.
"""
from __future__ import annotations

import enum
import operator
import types

import torch

from ..breaks import GraphBreak, NoPredication, would_raise
from ..sources import Source
from .base import NO, Value, read_before_effects
from .constants import Const, SymV, fold
from .methods import MethodV
from .objects import ObjV, class_attr
from .operators import binary, compare, identical
from .tensors import TensorV

_LIST_MUTATORS = ("append", "extend", "insert", "pop", "remove", "clear", "reverse", "sort")
_SET_MUTATORS = ("add", "discard", "remove", "update", "clear")
_SET_OPERATORS = {operator.or_: operator.or_, operator.and_: operator.and_,
                  operator.sub: operator.sub, operator.xor: operator.xor,
                  operator.ior: operator.or_, operator.iand: operator.and_,
                  operator.isub: operator.sub, operator.ixor: operator.xor}
_SET_QUERIES = ("union", "intersection", "difference", "issubset", "issuperset",
                "isdisjoint", "copy")


class Container:
    """Lists, tuples, sets and dicts. Those read from the frame realise their items (and install the
    guards on length/keys and items) only when the trace looks inside; a
    container only passed along costs at most a type guard. Mutations made
    before (``lst.append(x)`` on a list never looked into) are kept in
    ``pending`` and replayed as operations (see ``replay_mutation``)."""

    __slots__ = ()
    unsupported_id = "JF021"

    def _realize(self):
        if self._lazy is not None:
            realize, self._lazy = self._lazy, None
            self._tguard = None
            self._items = realize()
            for name, args in self.pending:  # mutations recorded before realising
                self._apply_pending(name, args)
        return self._items

    def _apply_pending(self, name: str, args: list) -> None:
        raise AssertionError(name)

    @property
    def items(self):
        return self._items if self._lazy is None else self._realize()

    @items.setter
    def items(self, value) -> None:
        self._lazy = None
        self._items = value

    def _type_guard(self) -> None:
        g = self._tguard
        if g is not None:
            self._tguard = None
            g()

    def will_mutate(self, tx) -> None:
        """The container is about to change in place; one read from the
        frame is realised and replayed after the graph."""
        if tx.output.predicating is not None:
            raise NoPredication(tx.output.predicating, "a side mutates a container")
        if self.source is not None:
            self.items  # noqa: B018 - realise: the change is applied to the items
            tx.output.effects.container_mutated(self)

    def get_attr(self, tx, name: str) -> Value:
        if not hasattr(self.python_type(), name):
            raise would_raise(AttributeError, f"{self.python_type().__name__} has no attribute "
                              f"{name!r}")
        return MethodV(self, name)

    def _unsupported_method(self, name: str):
        return self._unsupported(f"{self.python_type().__name__}.{name}()")

    def _replay_pending(self, rb) -> list[str]:
        """A container never looked into: replay the operations themselves."""
        src = self.source.expr()
        return [f"{src}.{name}({', '.join(rb.snapshot(a) for a in args)})"
                for name, args in self.pending]


class _Seq(Container, Value):
    __slots__ = ("_items", "source", "_lazy", "_tguard", "pending")

    def __init__(self, items, source: Source | None = None, *, lazy=None,
                 type_guard=None) -> None:
        self._items = list(items) if items is not None else None
        self.source = source
        self._lazy = lazy
        self._tguard = type_guard
        self.pending: list = []  # (method, args) recorded while not realised

    def _repr(self) -> str:
        return "<lazy>" if self._lazy is not None else ", ".join(map(repr, self._items))

    def _items_as_python(self) -> list | None:
        items = [x.as_python() for x in self.items]
        return None if any(x is NO for x in items) else items

    def truth(self, tx) -> bool:
        return bool(self.items)

    def length(self, tx) -> int:
        return len(self.items)

    def iterate(self, tx) -> list[Value]:
        return list(self.items)

    def contains(self, tx, item: Value) -> bool:
        for x in self.items:
            if x is item or (isinstance(x, TensorV) and isinstance(item, TensorV) and
                             x.node is item.node):
                return True
        if isinstance(item, TensorV) and isinstance(self, SetV):
            return False  # tensors hash by identity: not the same tensor, not in the set
        if isinstance(item, ObjV) and type(item.obj).__eq__ is object.__eq__:
            # objects compared by identity (modules, plain objects)
            return any(isinstance(x, ObjV) and x.obj is item.obj for x in self.items)
        if isinstance(item, ObjV) and isinstance(item.obj, enum.Enum):
            # an enum member (guarded by identity) among constants and members
            vals = [x.obj if isinstance(x, ObjV) else x.as_python() for x in self.items]
            if not any(v is NO or isinstance(x, TensorV) for v, x in zip(vals, self.items)):
                return any(v == item.obj for v in vals)
        key = item.as_python()
        vals = [x.as_python() for x in self.items]
        if key is NO or any(isinstance(x, TensorV) for x in self.items):
            raise GraphBreak("JF021", "membership test involving tensors")
        return any(v is not NO and v == key for v in vals)



class _Ordered(_Seq):
    """Lists and tuples: indexing, slicing, ``+``, ``*``, index/count."""

    __slots__ = ()

    def get_item(self, tx, key: Value) -> Value:
        k = key.as_python()
        if isinstance(k, int) and not isinstance(k, bool):
            try:
                return self.items[k]
            except IndexError:
                kind = "tuple" if issubclass(self.python_type(), tuple) else "list"
                msg = f"{kind} index out of range"
                raise would_raise(IndexError, msg, exc=IndexError(msg)) from None
        if isinstance(k, slice):
            return self._sliced(self.items[k])
        if isinstance(key, TensorV):
            raise GraphBreak("JF004", "indexing a Python list with a tensor")
        return super().get_item(tx, key)

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        if name in ("index", "count"):
            py = self.as_python()
            key = args[0].as_python()
            return fold(getattr(py, name), key)
        raise self._unsupported_method(name)

    def binary_op(self, tx, fn, a: Value, b: Value):
        """``+`` and ``*`` of lists and tuples; ``self`` is ``a`` or ``b``."""
        if isinstance(a, ListV) and fn is operator.iadd and not isinstance(b, _Ordered):
            items = b.iterate(tx)  # list.__iadd__ extends with any iterable
            a.will_mutate(tx)
            a.items.extend(items)
            return a
        if isinstance(a, _Ordered) and fn in (operator.add, operator.iadd):
            if isinstance(b, type(a)) or (isinstance(b, _Ordered) and fn is operator.iadd
                                          and isinstance(a, ListV)):
                if fn is operator.iadd and isinstance(a, ListV):
                    a.will_mutate(tx)
                    a.items.extend(b.items)
                    return a
                return type(a)(a.items + b.items)
        if isinstance(a, _Ordered) and fn in (operator.mul, operator.imul) and \
                isinstance(b, Const) and isinstance(b.value, int):
            if fn is operator.imul and isinstance(a, ListV):
                a.will_mutate(tx)
                a.items[:] = a.items * b.value
                return a
            return type(a)(a.items * b.value)
        if isinstance(a, Const) and isinstance(b, _Ordered) and fn is operator.mul:
            return binary(tx, fn, b, a)
        if isinstance(a, Const) and isinstance(b, _Ordered) and isinstance(a.value, tuple):
            return binary(tx, fn, TupleV([Const(x) for x in a.value]), b)
        if isinstance(b, Const) and isinstance(a, TupleV) and isinstance(b.value, tuple):
            return binary(tx, fn, a, TupleV([Const(x) for x in b.value]))
        return NotImplemented


class ListV(_Ordered):
    def python_type(self) -> type:
        self._type_guard()
        return list

    def _sliced(self, items: list) -> Value:
        return ListV(items)

    def _apply_pending(self, name: str, args: list) -> None:
        if name == "append":
            self._items.append(args[0])
        elif name == "extend":
            self._items.extend(args[0].items)
        else:
            raise AssertionError(name)

    def as_python(self):
        items = self._items_as_python()
        return NO if items is None else list(items)

    def store_item(self, tx, key: Value, value: Value) -> None:
        k = key.as_python()
        if not isinstance(k, (int, slice)):
            return super().store_item(tx, key, value)
        self.will_mutate(tx)
        if isinstance(k, slice):
            if not isinstance(value, _Ordered):
                raise GraphBreak("JF021", "slice assignment from a non-sequence")
            self.items[k] = value.items
        else:
            self.items[k] = value

    def delete_item(self, tx, key: Value) -> None:
        k = key.as_python()
        if not isinstance(k, (int, slice)):
            return super().delete_item(tx, key)
        self.will_mutate(tx)
        del self.items[k]

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        if self.source is not None and self._lazy is not None and not kwargs and \
                name in ("append", "extend") and len(args) == 1:
            # a list read from the frame and not looked into: record the
            # operation itself (replayed as is; no guard on its length)
            arg = args[0] if name == "append" else TupleV(args[0].iterate(tx))
            self.pending.append((name, [arg]))
            tx.output.effects.container_mutated(self)
            return Const(None)
        if name in _LIST_MUTATORS:
            self.will_mutate(tx)
        if name == "append":
            self.items.append(args[0])
        elif name == "extend":
            self.items.extend(args[0].iterate(tx))
        elif name == "insert":
            self.items.insert(args[0].as_python(), args[1])
        elif name == "pop":
            return self.items.pop(args[0].as_python() if args else -1)
        elif name == "clear":
            self.items.clear()
        elif name == "reverse":
            self.items.reverse()
        elif name == "copy":
            return ListV(self.items)
        elif name == "sort":
            if args:
                raise would_raise(TypeError, "sort() takes no positional arguments")
            order = sort_order(tx, self.items, kwargs.get("key"), kwargs.get("reverse"))
            self.items[:] = [self.items[i] for i in order]
        elif name == "remove":
            for i, x in enumerate(self.items):
                if same_or_equal(tx, x, args[0]):
                    del self.items[i]
                    break
            else:
                raise would_raise(ValueError, "list.remove(x): x not in list")
        else:
            return super().call_method(tx, name, args, kwargs)
        return Const(None)

    def reconstruct(self, rb) -> tuple[str, bool]:
        if self.source is not None:
            return self.source.expr(), read_before_effects(self.source)
        return "[" + ", ".join(rb.expr(x) for x in self.items) + "]", True

    def replay_mutation(self, rb) -> list[str]:
        if self._lazy is not None:
            return self._replay_pending(rb)
        items = ", ".join(rb.snapshot(x) for x in self.items)
        return [f"{self.source.expr()}[:] = [{items}]"]


class TensorListV(ListV):
    """A list of same-shaped tensors whose length varies between calls (a
    list grown in a loop over a dynamic size). It enters the graph as one
    stacked input of symbolic length: ``torch.stack``/``torch.cat`` over it,
    ``len`` and constant indexing stay symbolic; any other use realises the
    items (specialising the length, like any list)."""

    __slots__ = ("stacked", "sym_length")

    def __init__(self, source: Source, stacked, length, realize, type_guard) -> None:
        super().__init__(None, source, lazy=realize, type_guard=type_guard)
        self.stacked = stacked  # TensorV: torch.stack of the items
        self.sym_length = length  # SymV: the list's length

    @property
    def symbolic(self) -> bool:
        """Still one stacked tensor (its items never looked at one by one)."""
        return self._lazy is not None and not self.pending

    def get_item(self, tx, key: Value) -> Value:
        if self.symbolic and isinstance(key, Const) and not isinstance(key, SymV) and \
                type(key.value) is int:
            # an item of a stacked list: a row of the stack (the same values)
            return tx.output.call("call_function", operator.getitem, (self.stacked, key), {})
        return super().get_item(tx, key)


class TupleV(_Ordered):
    """A tuple; ``cls`` is set for tuple subclasses: namedtuples (built as
    ``cls(*items)``), structseqs such as ``torch.return_types.max`` (built
    as ``cls(items)``) and ``torch.Size``."""

    __slots__ = ("cls",)

    def __init__(self, items, source: Source | None = None, cls: type | None = None, *,
                 lazy=None, type_guard=None) -> None:
        super().__init__(items, source, lazy=lazy, type_guard=type_guard)
        self.cls = cls

    def python_type(self) -> type:
        self._type_guard()
        return self.cls or tuple

    def _sliced(self, items: list) -> Value:
        return TupleV(items)

    def as_python(self):
        items = self._items_as_python()
        if items is None:
            return NO
        return build_tuple(self.cls, items) if self.cls else tuple(items)

    def get_attr(self, tx, name: str) -> Value:
        if self.cls is None:
            return super().get_attr(tx, name)
        fields = tuple_fields(self.cls)
        if name in fields:  # a field: its item
            return self.items[fields.index(name)]
        return class_attr(tx, self, self.cls, name)

    def reconstruct(self, rb) -> tuple[str, bool]:
        if self.source is not None:
            return self.source.expr(), read_before_effects(self.source)
        fb = rb.fb
        inner = "".join(rb.expr(x) + ", " for x in self.items)
        if self.cls is not None and (self.cls is torch.Size or is_structseq(self.cls)):
            return f"{fb.const(self.cls)}(({inner}))", False  # one iterable argument
        if self.cls is not None:
            return f"{fb.const(self.cls)}({inner})", False
        return f"({inner})", False


class SetV(_Seq):
    """A set of constants (items deduplicated by value)."""

    def python_type(self) -> type:
        self._type_guard()
        return set

    def as_python(self):
        items = self._items_as_python()
        return NO if items is None else set(items)

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        if name in _SET_MUTATORS:
            if self.source is not None:
                self.items  # noqa: B018 - realise
                tx.output.effects.container_mutated(self)
            if name == "add":
                self.items = dedup(self.items + [args[0]])
            elif name == "update":
                self.items = dedup(self.items + [x for a in args for x in a.iterate(tx)])
            elif name == "clear":
                self.items = []
            else:
                kept = [x for x in self.items if not _same_member(x, args[0])]
                if name == "remove" and len(kept) == len(self.items):
                    raise would_raise(KeyError, "set.remove() of a member not in the set")
                self.items = kept
            return Const(None)
        if name in _SET_QUERIES:
            py = self.as_python()
            others = [TupleV(a.iterate(tx)).as_python() for a in args]
            if py is NO or any(o is NO for o in others):
                raise GraphBreak("JF021", f"set.{name}() of non-constant members")
            out = fold(getattr(py, name), *[set(o) for o in others]).value
            return SetV([Const(x) for x in out]) if isinstance(out, set) else Const(out)
        raise self._unsupported_method(name)

    def binary_op(self, tx, fn, a: Value, b: Value):
        """``| & - ^`` (and their in-place forms) with sets, frozensets and
        dict views, on constant members: Python's own operator decides (the
        result's type, a TypeError)."""
        if fn not in _SET_OPERATORS:
            return NotImplemented
        x, y = a.as_python(), b.as_python()
        if x is NO or y is NO:
            raise GraphBreak("JF021", f"set operator {fn.__name__} on non-constant members")
        inplace = fn in (operator.ior, operator.iand, operator.isub, operator.ixor)
        if inplace and a is self:
            out = fold(_SET_OPERATORS[fn], x, y).value  # (the same set, changed)
            if self.source is not None:
                self.items  # noqa: B018 - realise
                tx.output.effects.container_mutated(self)
            self.items = [Const(v) for v in out]
            return self
        out = fold(_SET_OPERATORS[fn], x, y).value
        if isinstance(out, set):
            return SetV([Const(v) for v in out])
        return Const(out)

    def reconstruct(self, rb) -> tuple[str, bool]:
        inner = ", ".join(rb.expr(x) for x in self.items)
        return (f"{{{inner}}}" if self.items else "__jf_h_set()"), True

    def replay_mutation(self, rb) -> list[str]:
        src = self.source.expr()
        items = ", ".join(rb.snapshot(x) for x in self.items)
        return [f"{src}.clear()", f"{src}.update(({items},))"]


class SliceV(Value):
    __slots__ = ("start", "stop", "step", "source")

    def __init__(self, start: Value, stop: Value, step: Value) -> None:
        self.start, self.stop, self.step = start, stop, step
        self.source = None

    def python_type(self) -> type:
        return slice

    def as_python(self):
        parts = [x.as_python() for x in (self.start, self.stop, self.step)]
        return NO if any(p is NO for p in parts) else slice(*parts)

    def reconstruct(self, rb) -> tuple[str, bool]:
        parts = ", ".join(rb.expr(x) for x in (self.start, self.stop, self.step))
        return f"__jf_h_slice({parts})", False


class IterV(Value):
    """A materialised iterator over symbolic items."""

    __slots__ = ("items", "pos", "source")

    def __init__(self, items) -> None:
        self.items = list(items)
        self.pos = 0
        self.source = None

    def python_type(self) -> type:
        return type(iter([]))

    def truth(self, tx) -> bool:
        return True

    def iterate(self, tx) -> list[Value]:
        items = self.items[self.pos:]
        self.pos = len(self.items)
        return items

    def reconstruct(self, rb) -> tuple[str, bool]:
        rest = "".join(rb.expr(x) + ", " for x in self.items[self.pos:])
        return f"__jf_h_iter(({rest}))", True


def sort_order(tx, items: list, key: Value | None, reverse: Value | None) -> list[int]:
    """The order ``sorted(items, key=key, reverse=reverse)`` puts the items
    in (Python's stable sort): the key function is called on each item in
    order, as Python does; what is compared must be constants (comparing
    tensors needs their data)."""
    rev = reverse.as_python() if reverse is not None else False
    if rev is NO:
        raise GraphBreak("JF015", "sort with a non-constant reverse")
    if key is not None and key.as_python() is not None:
        keys = [key.call(tx, [x], {}) for x in items]
    else:
        keys = list(items)
    if any(isinstance(k, TensorV) for k in keys):
        raise GraphBreak("JF004", "sorting compares tensors in Python")
    pys = [k.as_python() for k in keys]
    if any(p is NO for p in pys):
        raise GraphBreak("JF015", "sorting values that are not constants")
    return fold(lambda: sorted(range(len(pys)), key=pys.__getitem__, reverse=bool(rev))).value


def same_or_equal(tx, x: Value, y: Value) -> bool:
    """``x is y or x == y``, as containers compare members."""
    try:
        if identical(tx, x, y):
            return True
    except GraphBreak:
        pass
    return compare(tx, operator.eq, x, y).truth(tx)


def is_structseq(cls) -> bool:
    """A C struct sequence type (``torch.return_types.*``, ``os.stat_result``):
    a tuple subclass with named fields but no ``_fields``."""
    return isinstance(cls, type) and issubclass(cls, tuple) and \
        isinstance(getattr(cls, "n_sequence_fields", None), int) and \
        isinstance(getattr(cls, "n_fields", None), int)


def is_named_tuple_cls(cls) -> bool:
    """A namedtuple class or a structseq type."""
    return isinstance(cls, type) and issubclass(cls, tuple) and (
        isinstance(getattr(cls, "_fields", None), tuple) or is_structseq(cls))


_STRUCTSEQ_FIELDS: dict = {}


def tuple_fields(cls) -> tuple:
    """The field names of a namedtuple or structseq class, in item order
    (a structseq has no ``_fields``: each member is probed with a marker)."""
    fields = getattr(cls, "_fields", None)
    if isinstance(fields, tuple):
        return fields
    if not is_structseq(cls):
        return ()
    found = _STRUCTSEQ_FIELDS.get(cls)
    if found is None:
        n = cls.n_sequence_fields
        markers = tuple(object() for _ in range(n))
        probe = cls(markers)
        by_marker = {}
        for name, attr in vars(cls).items():
            if isinstance(attr, types.MemberDescriptorType):
                v = getattr(probe, name, None)
                for i, m in enumerate(markers):
                    if v is m:
                        by_marker[i] = name
        found = tuple(by_marker.get(i, f"_{i}") for i in range(n))
        _STRUCTSEQ_FIELDS[cls] = found
    return found


def build_tuple(cls, items):
    """An instance of the tuple subclass ``cls`` holding ``items``."""
    if cls is torch.Size or is_structseq(cls):
        return cls(tuple(items))
    return cls(*items)


def dedup(items: list[Value]) -> list[Value]:
    """Set members: one per value (identity-hashed objects by identity)."""
    out, seen, seen_ids = [], set(), set()
    for x in items:
        if isinstance(x, ObjV) and type(x.obj).__eq__ is object.__eq__:
            if id(x.obj) in seen_ids:  # identity-hashed objects (modules, ...)
                continue
            seen_ids.add(id(x.obj))
            out.append(x)
            continue
        k = x.as_python()
        if k is not NO:
            if k in seen:
                continue
            seen.add(k)
        out.append(x)
    return out


def _same_member(a: Value, b: Value) -> bool:
    if isinstance(a, ObjV) and isinstance(b, ObjV):
        return a.obj is b.obj
    x, y = a.as_python(), b.as_python()
    return x is not NO and y is not NO and x == y
