"""Opcode handlers: binary and unary operators, comparisons, identity and
membership tests, subscripts. Tensor operands become graph operations;
constant operands are folded at trace time; containers are modelled.

In/out: the Translator's stack.
"""
from __future__ import annotations

import enum
import operator

import torch

from .breaks import GraphBreak
from .sources import AttrSource, ItemSource, KeyedItemSource
from .fake import to_fake
from .values import (
    NULL, CellV, Const, DerivedConst, DictV, DynInt, FunctionV, IterV, ListV, MethodV, NewObjV, NullV,
    ItemV, ObjV, RecordDictV, SetV, SliceV, SymV, TensorListV, TensorV, TupleV, Value, unguarded,
)

BINARY = {
    "ADD": operator.add, "AND": operator.and_, "FLOOR_DIVIDE": operator.floordiv,
    "LSHIFT": operator.lshift, "MATRIX_MULTIPLY": operator.matmul, "MULTIPLY": operator.mul,
    "REMAINDER": operator.mod, "OR": operator.or_, "POWER": operator.pow,
    "RSHIFT": operator.rshift, "SUBTRACT": operator.sub, "TRUE_DIVIDE": operator.truediv,
    "XOR": operator.xor,
    "INPLACE_ADD": operator.iadd, "INPLACE_AND": operator.iand,
    "INPLACE_FLOOR_DIVIDE": operator.ifloordiv, "INPLACE_LSHIFT": operator.ilshift,
    "INPLACE_MATRIX_MULTIPLY": operator.imatmul, "INPLACE_MULTIPLY": operator.imul,
    "INPLACE_REMAINDER": operator.imod, "INPLACE_OR": operator.ior,
    "INPLACE_POWER": operator.ipow, "INPLACE_RSHIFT": operator.irshift,
    "INPLACE_SUBTRACT": operator.isub, "INPLACE_TRUE_DIVIDE": operator.itruediv,
    "INPLACE_XOR": operator.ixor,
}
COMPARE = {"LT": operator.lt, "LE": operator.le, "EQ": operator.eq, "NE": operator.ne,
           "GT": operator.gt, "GE": operator.ge}
_INPLACE = {f for name, f in BINARY.items() if name.startswith("INPLACE_")}

_SEQ_MODULES = (torch.nn.ModuleList, torch.nn.Sequential)
# int arithmetic on sizes that stays symbolic (``x.view(B * T, -1)``)
_SIZE_ARITH = {operator.add: operator.add, operator.sub: operator.sub,
               operator.mul: operator.mul, operator.floordiv: operator.floordiv,
               operator.mod: operator.mod, operator.iadd: operator.add,
               operator.isub: operator.sub, operator.imul: operator.mul,
               operator.ifloordiv: operator.floordiv, operator.imod: operator.mod}


def _int_like(v: Value) -> bool:
    return isinstance(v, SymV) or isinstance(v, Const) and type(v._value) is int


class ArithOps:
    # -- operators -----------------------------------------------------------------
    def BINARY_OP(self, ins):
        b = self.pop()
        a = self.pop()
        self.push(self.binary(BINARY[ins.arg.name], a, b))

    def binary(self, fn, a: Value, b: Value) -> Value:
        if isinstance(a, TensorV) or isinstance(b, TensorV):
            out = self.output.call("call_function", fn, (a, b), {})
            if fn in _INPLACE and isinstance(a, TensorV) and isinstance(out, TensorV):
                return a  # `x += y` on a tensor updates x itself: same object after
            return out
        if (isinstance(a, SymV) or isinstance(b, SymV)) and fn in _SIZE_ARITH and \
                _int_like(a) and _int_like(b):
            return self.output.sym_call(_SIZE_ARITH[fn], a, b)
        if isinstance(a, Const) and isinstance(b, Const):
            return self.fold_lazy(fn, a, b)
        if isinstance(a, (ListV, TupleV)) and fn in (operator.add, operator.iadd):
            if isinstance(b, type(a)) or (isinstance(b, (ListV, TupleV)) and fn is operator.iadd
                                          and isinstance(a, ListV)):
                if fn is operator.iadd and isinstance(a, ListV):
                    self.mutate_list(a)
                    a.items.extend(b.items)
                    return a
                return type(a)(a.items + b.items)
        if isinstance(a, (ListV, TupleV)) and fn in (operator.mul, operator.imul) and \
                isinstance(b, Const) and isinstance(b.value, int):
            if fn is operator.imul and isinstance(a, ListV):
                self.mutate_list(a)
                a.items[:] = a.items * b.value
                return a
            return type(a)(a.items * b.value)
        if isinstance(a, Const) and isinstance(b, (ListV, TupleV)) and fn is operator.mul:
            return self.binary(fn, b, a)
        if isinstance(a, Const) and isinstance(b, (ListV, TupleV)) and isinstance(a.value, tuple):
            return self.binary(fn, TupleV([Const(x) for x in a.value]), b)
        if isinstance(b, Const) and isinstance(a, TupleV) and isinstance(b.value, tuple):
            return self.binary(fn, a, TupleV([Const(x) for x in b.value]))
        raise GraphBreak("JF009", f"operator {fn.__name__} on {a.python_type().__name__} and "
                         f"{b.python_type().__name__}")

    def fold_lazy(self, fn, a: Const, b: Const) -> Const:
        """Fold, keeping the operands' guards pending when they are (see
        DerivedConst)."""
        if (unguarded(a) or unguarded(b)) and isinstance(a._value, (int, float)) and \
                isinstance(b._value, (int, float)):
            try:
                return DerivedConst(fn, [a, b])
            except Exception:  # noqa: BLE001 - e.g. ZeroDivisionError: fold reports it
                pass
        return self.fold(fn, a.value, b.value)

    def fold(self, fn, *args) -> Const:
        try:
            return Const(fn(*args))
        except Exception as e:  # noqa: BLE001
            raise GraphBreak("JF012", f"{getattr(fn, '__name__', fn)} raised "
                             f"{type(e).__name__}: {e}") from None

    def mutate_list(self, v: ListV) -> None:
        """``v`` is about to change in place; a list read from the frame is
        realised and replayed after the graph."""
        if self.output.predicating is not None:
            from .predication import NoPredication

            raise NoPredication(self.output.predicating, "a side mutates a container")
        if v.source is not None:
            v.items  # noqa: B018 - realise: the change is applied to the items
            self.output.effects.container_mutated(v)

    def mutate_dict(self, v: DictV) -> None:
        if self.output.predicating is not None:
            from .predication import NoPredication

            raise NoPredication(self.output.predicating, "a side mutates a container")
        if v.source is not None:
            v.items  # noqa: B018
            self.output.effects.container_mutated(v)

    def COMPARE_OP(self, ins):
        b = self.pop()
        a = self.pop()
        self.push(self.compare(COMPARE[ins.arg.name], a, b))

    def compare(self, fn, a: Value, b: Value) -> Value:
        if isinstance(a, ItemV) or isinstance(b, ItemV):
            # `t.item() > c` for a branch: compared as tensors (a speculation site)
            x, y = (a.tensor if isinstance(a, ItemV) else a), (b.tensor if isinstance(b, ItemV)
                                                              else b)
            if fn in (operator.lt, operator.le, operator.gt, operator.ge, operator.eq,
                      operator.ne) and all(isinstance(v, TensorV) or isinstance(v, Const) and
                                           type(v._value) in (int, float, bool) for v in (x, y)):
                return self.output.call("call_function", fn, (x, y), {})
            raise GraphBreak("JF004", "Tensor.item() compared with a non-number")
        if isinstance(a, TensorV) or isinstance(b, TensorV):
            if fn in (operator.eq, operator.ne) and (_is_none(a) or _is_none(b)):
                return Const(fn is operator.ne)
            return self.output.call("call_function", fn, (a, b), {})
        if (isinstance(a, SymV) or isinstance(b, SymV)) and _int_like(a) and _int_like(b):
            # a condition on sizes: the shape environment guards it
            return Const(bool(fn(to_fake(a), to_fake(b))))
        if isinstance(a, Const) and isinstance(b, Const):
            return self.fold_lazy(fn, a, b)
        ca, cb = self.as_python(a), self.as_python(b)
        if ca is not _NO and cb is not _NO:
            return self.fold(fn, ca, cb)
        if fn in (operator.eq, operator.ne) and isinstance(a, ObjV) and isinstance(b, ObjV):
            if type(a.obj).__eq__ is object.__eq__:
                return Const((a.obj is b.obj) == (fn is operator.eq))
            if isinstance(a.obj, enum.Enum) and isinstance(b.obj, enum.Enum):
                # members are singletons guarded by identity: their equality
                # (also of str/int-valued enums) is a constant of the trace
                return Const(fn(a.obj, b.obj))
        raise GraphBreak("JF009", f"comparison {fn.__name__} of {a.python_type().__name__} and "
                         f"{b.python_type().__name__}")

    def as_python(self, v: Value):
        """The Python value of a value made only of constants, else _NO."""
        if isinstance(v, Const):
            return v.value
        if isinstance(v, (ListV, TupleV, SetV)):
            items = [self.as_python(x) for x in v.items]
            if any(x is _NO for x in items):
                return _NO
            if isinstance(v, TupleV):
                if v.cls is torch.Size:
                    return torch.Size(items)
                return v.cls(*items) if v.cls else tuple(items)
            return list(items) if isinstance(v, ListV) else set(items)
        if isinstance(v, DictV):
            vals = {k: self.as_python(x) for k, x in v.items.items()}
            return _NO if any(x is _NO for x in vals.values()) else vals
        if isinstance(v, SliceV):
            parts = [self.as_python(x) for x in (v.start, v.stop, v.step)]
            return _NO if any(p is _NO for p in parts) else slice(*parts)
        if isinstance(v, ObjV) and isinstance(v.obj, (torch.dtype, torch.device, type)):
            return v.obj
        return _NO

    def IS_OP(self, ins):
        b = self.pop()
        a = self.pop()
        same = self.identical(a, b)
        self.push(Const(same != bool(ins.arg)))

    def identical(self, a: Value, b: Value) -> bool:
        if a is b:
            return True
        if isinstance(a, Const) and isinstance(b, Const):
            for x, y in ((a, b), (b, a)):
                # `v is None` on a value read from the frame guards only that,
                # not the value (an int that varies stays unspecialised)
                if y._guard is None and y._value is None and unguarded(x) and \
                        x.source is not None:
                    result = x._value is None
                    self.output.guards.add(f"({x.source.expr()} is None) is {result!r}",
                                           f"{x.source.name()} is {'' if result else 'not '}None")
                    return result
            return a.value is b.value
        if isinstance(a, ObjV) and isinstance(b, ObjV):
            return a.obj is b.obj
        if isinstance(a, TensorV) and isinstance(b, TensorV):
            return a.node is b.node
        if isinstance(a, NullV) or isinstance(b, NullV):
            return False
        # values of different kinds are different objects (a tensor is not None)
        if isinstance(a, Const) or isinstance(b, Const):
            return False
        if type(a) is not type(b):
            return False
        raise GraphBreak("JF009", f"identity test of {a.python_type().__name__} values")

    def CONTAINS_OP(self, ins):
        container = self.pop()
        item = self.pop()
        self.push(Const(self.contains(container, item) != bool(ins.arg)))

    def contains(self, container: Value, item: Value) -> bool:
        keyed = self._tensor_keyed(container, item)
        if keyed is not None:
            real, key = keyed
            found = key in real
            # the answer, guarded (identity of the key: tensors hash by id)
            expr = f"__jf_h_dict.__contains__({container.source.expr()}, {item.source.expr()})"
            self.output.guards.add(f"{expr} is {found}", f"{item.source.name()} "
                                   f"{'in' if found else 'not in'} {container.source.name()}")
            return found
        if isinstance(container, DictV):
            key = self.as_python(item)
            if key is _NO:
                raise GraphBreak("JF009", "membership test with a non-constant key")
            return key in container.items
        if isinstance(container, (ListV, TupleV, SetV)):
            for x in container.items:
                if x is item or (isinstance(x, TensorV) and isinstance(item, TensorV) and
                                 x.node is item.node):
                    return True
            if isinstance(item, TensorV) and isinstance(container, SetV):
                return False  # tensors hash by identity: not the same tensor, not in the set
            if isinstance(item, ObjV) and type(item.obj).__eq__ is object.__eq__:
                # objects compared by identity (modules, plain objects)
                return any(isinstance(x, ObjV) and x.obj is item.obj for x in container.items)
            if isinstance(item, ObjV) and isinstance(item.obj, enum.Enum):
                # an enum member (guarded by identity) among constants and members
                vals = [x.obj if isinstance(x, ObjV) else self.as_python(x)
                        for x in container.items]
                if not any(v is _NO or isinstance(x, TensorV)
                           for v, x in zip(vals, container.items)):
                    return any(v == item.obj for v in vals)
            key = self.as_python(item)
            vals = [self.as_python(x) for x in container.items]
            if key is _NO or any(isinstance(x, TensorV) for x in container.items):
                raise GraphBreak("JF009", "membership test involving tensors")
            return any(v is not _NO and v == key for v in vals)
        if isinstance(container, Const):
            key = self.as_python(item)
            if key is _NO:
                raise GraphBreak("JF009", "membership test with a non-constant item")
            return self.fold(operator.contains, container.value, key).value
        if isinstance(container, ObjV) and isinstance(container.obj, (dict, set, frozenset)):
            key = self.as_python(item)
            if key is _NO:
                raise GraphBreak("JF009", "membership test with a non-constant key")
            if container.source is not None:
                self.output.guards.add(
                    f"({key!r} in {container.source.expr()}) is {key in container.obj!r}",
                    f"{key!r} {'in' if key in container.obj else 'not in'} "
                    f"{container.source.name()}")
            return key in container.obj
        raise GraphBreak("JF009", f"membership test on {container.python_type().__name__}")

    # -- truth ----------------------------------------------------------------------
    def truth(self, v: Value) -> bool:
        if isinstance(v, SymV):
            return bool(v.sym != 0)  # a condition on the size, not its value
        if isinstance(v, Const):
            return bool(v.value)
        if isinstance(v, TensorV):
            raise GraphBreak("JF005", "condition is a tensor")
        if isinstance(v, (ListV, TupleV, SetV, DictV)):
            return bool(v.items)
        if isinstance(v, (FunctionV, MethodV, CellV, IterV)):
            return True
        if isinstance(v, NullV):
            return False
        if isinstance(v, ObjV):
            obj = v.obj
            t = type(obj)
            if isinstance(obj, torch.nn.Module):
                if hasattr(t, "__len__"):
                    return self.length(v) > 0
                return True
            if hasattr(t, "__bool__") or hasattr(t, "__len__"):
                if isinstance(obj, (dict, list, tuple, set, frozenset, str, bytes)) and \
                        t.__len__ in (dict.__len__, list.__len__, tuple.__len__, set.__len__,
                                      frozenset.__len__, str.__len__, bytes.__len__):
                    # a builtin container subclass (OrderedDict, ...): guard its emptiness
                    result = bool(obj)
                    if v.source is not None:
                        self.output.guards.add(
                            f"__jf_h_bool({v.source.expr()}) is {result!r}",
                            f"{v.source.name()} is {'non-' if result else ''}empty")
                    return result
                if t.__module__ == "builtins" and v.source is None:
                    return bool(obj)
                raise GraphBreak("JF009", f"truth value of a {t.__name__}")
            return True
        if isinstance(v, NewObjV):
            if hasattr(v.cls, "__bool__") or hasattr(v.cls, "__len__"):
                raise GraphBreak("JF009", f"truth value of a {v.cls.__name__}")
            return True
        raise GraphBreak("JF009", f"truth value of {v.python_type().__name__}")

    def length(self, v: Value) -> int:
        if isinstance(v, (ListV, TupleV, SetV, DictV)):
            return len(v.items)
        if isinstance(v, Const):
            return self.fold(len, v.value).value
        if isinstance(v, TensorV):
            if v.fake.dim() == 0:
                raise GraphBreak("JF012", "len() of a 0-d tensor")
            return int(v.fake.shape[0])  # a dynamic size is specialised
        if isinstance(v, ObjV) and isinstance(v.obj, (dict, list, tuple, set, frozenset)) and \
                type(v.obj).__len__ in (dict.__len__, list.__len__, tuple.__len__, set.__len__,
                                        frozenset.__len__):
            n = len(v.obj)  # a builtin container subclass (OrderedDict, ...)
            if v.source is not None:
                self.output.guards.add(f"__jf_h_len({v.source.expr()}) == {n}",
                                       f"len({v.source.name()}) == {n}")
            return n
        if isinstance(v, ObjV) and isinstance(v.obj, torch.nn.Module) and \
                hasattr(type(v.obj), "__len__"):
            n = len(v.obj)
            if v.source is not None:
                self.output.guards.add(f"__jf_h_len({v.source.expr()}) == {n}",
                                       f"len({v.source.name()}) == {n}")
            return n
        raise GraphBreak("JF009", f"len() of {v.python_type().__name__}")

    def UNARY_NOT(self, ins):
        v = self.pop()
        if isinstance(v, TensorV):
            raise GraphBreak("JF004", "`not` on a tensor needs its value")
        self.push(Const(not self.truth(v)))

    def _unary(self, fn):
        v = self.pop()
        if isinstance(v, TensorV):
            self.push(self.output.call("call_function", fn, (v,), {}))
        elif isinstance(v, SymV) and fn in (operator.neg, operator.pos):
            self.push(self.output.sym_call(fn, v))
        elif isinstance(v, Const):
            self.push(self.fold(fn, v.value))
        else:
            raise GraphBreak("JF009", f"{fn.__name__} of {v.python_type().__name__}")

    def UNARY_NEGATIVE(self, ins):
        self._unary(operator.neg)

    def UNARY_POSITIVE(self, ins):
        self._unary(operator.pos)

    def UNARY_INVERT(self, ins):
        self._unary(operator.invert)

    # -- subscripts ----------------------------------------------------------------------
    def BINARY_SUBSCR(self, ins):
        key = self.pop()
        obj = self.pop()
        self.push(self.getitem(obj, key))

    def _tensor_keyed(self, obj: Value, key: Value):
        """``(dict, tensor)`` when ``obj`` is a real dict reached from the frame
        and ``key`` one of the graph's input tensors as it was passed in
        (dicts keyed by parameters: ``optimizer.state[p]``); else None."""
        if not (isinstance(obj, ObjV) and isinstance(obj.obj, dict) and obj.source is not None
                and isinstance(key, TensorV) and key.source is not None):
            return None
        for v, t in self.output.inputs:
            if v is key:
                return obj.obj, t
        return None

    def getitem(self, obj: Value, key: Value) -> Value:
        keyed = self._tensor_keyed(obj, key)
        if keyed is not None:
            real, t = keyed
            if t not in real:  # (a defaultdict would insert: not a pure read)
                raise GraphBreak("JF012", f"KeyError: {key.source.name()} not in "
                                 f"{obj.source.name()}")
            self.output.guards.add(
                f"__jf_h_dict.__contains__({obj.source.expr()}, {key.source.expr()})",
                f"{key.source.name()} in {obj.source.name()}")
            return self.output.wrap(real[t], KeyedItemSource(obj.source, key.source))
        if isinstance(obj, TensorListV) and obj.symbolic and isinstance(key, Const) and \
                not isinstance(key, SymV) and type(key.value) is int:
            # an item of a stacked list: a row of the stack (the same values)
            return self.output.call("call_function", operator.getitem, (obj.stacked, key), {})
        if isinstance(obj, TensorV):
            if isinstance(key, DynInt) and key._guard is not None and key._value >= 0 \
                    and obj.fake.dim() > 0:
                # an int that varies between calls indexes through a graph input
                src = key.source
                self.output.guards.add(f"{src.expr()} >= 0", f"{src.name()} >= 0")
                idx = self.output.int_input(key, vector=True)
                sel = self.output.call("call_function", torch.index_select, (obj, Const(0), idx),
                                       {})
                return self.output.call("call_method", "squeeze", (sel, Const(0)), {})
            return self.output.call("call_function", operator.getitem, (obj, key), {})
        k = self.as_python(key)
        if isinstance(obj, (ListV, TupleV)):
            if isinstance(k, int) and not isinstance(k, bool):
                try:
                    return obj.items[k]
                except IndexError:
                    raise GraphBreak("JF012", "index out of range") from None
            if isinstance(k, slice):
                return (ListV if isinstance(obj, ListV) else TupleV)(obj.items[k])
            if isinstance(key, TensorV):
                raise GraphBreak("JF004", "indexing a Python list with a tensor")
        if isinstance(obj, RecordDictV) and isinstance(k, (int, slice)) and \
                not isinstance(k, bool):
            values = list(obj.items.values())  # ModelOutput: by position among non-None
            if isinstance(k, slice):
                return TupleV(values[k])
            try:
                return values[k]
            except IndexError:
                raise GraphBreak("JF012", "index out of range") from None
        if isinstance(obj, DictV) and k is not _NO:
            try:
                return obj.items[k]
            except (KeyError, TypeError):
                raise GraphBreak("JF012", f"KeyError {k!r}") from None
        if isinstance(obj, Const) and k is not _NO:
            return self.fold(operator.getitem, obj.value, k)
        if isinstance(obj, ObjV) and k is not _NO:
            return self.getitem_object(obj, k)
        raise GraphBreak("JF009", f"subscript of {obj.python_type().__name__} with "
                         f"{key.python_type().__name__}")

    def getitem_object(self, obj: ObjV, k) -> Value:
        real = obj.obj
        if isinstance(real, _SEQ_MODULES) and isinstance(k, int):
            keys = list(real._modules.keys())
            self.length(obj)
            key = keys[k]
            src = ItemSource(AttrSource(obj.source, "_modules"), key) if obj.source else None
            return self.output.wrap(real._modules[key], src)
        if isinstance(real, torch.nn.ModuleDict) and isinstance(k, str):
            src = ItemSource(AttrSource(obj.source, "_modules"), k) if obj.source else None
            return self.output.wrap(real._modules[k], src)
        if isinstance(real, (dict, torch.nn.ParameterDict)) or type(real).__module__ == "builtins":
            try:
                item = real[k]
            except Exception as e:  # noqa: BLE001
                raise GraphBreak("JF012", f"subscript raised {type(e).__name__}") from None
            src = ItemSource(obj.source, k) if obj.source else None
            return self.output.wrap(item, src)
        getitem = getattr(type(real), "__getitem__", None)
        if getitem is not None and hasattr(getitem, "__code__"):
            return self.call_value(self.output.wrap(getitem, None), [obj, Const(k)], {})
        raise GraphBreak("JF009", f"subscript of {type(real).__name__}")

    def STORE_SUBSCR(self, ins):
        key = self.pop()
        obj = self.pop()
        value = self.pop()
        if isinstance(obj, TensorV):
            self.output.call("call_function", operator.setitem, (obj, key, value), {})
            return
        k = self.as_python(key)
        if isinstance(obj, ListV) and isinstance(k, (int, slice)):
            self.mutate_list(obj)
            if isinstance(k, slice):
                if not isinstance(value, (ListV, TupleV)):
                    raise GraphBreak("JF009", "slice assignment from a non-sequence")
                obj.items[k] = value.items
            else:
                obj.items[k] = value
            return
        if isinstance(obj, DictV) and k is not _NO:
            if obj.source is not None and obj._lazy is not None:
                obj.pending.append(("__setitem__", [Const(k), value]))
                self.output.effects.container_mutated(obj)
                return
            self.mutate_dict(obj)
            obj.items[k] = value
            return
        raise GraphBreak("JF011", f"item assignment on {obj.python_type().__name__}")

    def DELETE_SUBSCR(self, ins):
        key = self.pop()
        obj = self.pop()
        k = self.as_python(key)
        if isinstance(obj, ListV) and isinstance(k, (int, slice)):
            self.mutate_list(obj)
            del obj.items[k]
            return
        if isinstance(obj, DictV) and k in obj.items:
            self.mutate_dict(obj)
            del obj.items[k]
            return
        raise GraphBreak("JF011", f"item deletion on {obj.python_type().__name__}")


class _NoValue:
    def __repr__(self) -> str:
        return "<no constant value>"


_NO = _NoValue()


def _is_none(v: Value) -> bool:
    return isinstance(v, Const) and v.value is None


__all__ = ["ArithOps", "BINARY", "COMPARE", "_NO", "NULL"]
