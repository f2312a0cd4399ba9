"""Opcode handlers: building and unpacking tuples, lists, sets, dicts,
slices and f-strings; the iteration protocol used by loops and builtins.

In/out: the Translator's stack.
"""
from __future__ import annotations

import operator

import torch

from .breaks import GraphBreak
from .ops_arith import _NO
from .sources import AttrSource, ItemSource
from .values import (
    Const, DerivedConst, DictV, IterV, ListV, ObjV, SetV, SliceV, TensorV, TupleV, Value,
    unguarded,
)


def _format(value, conv: int, spec: str) -> str:
    """FORMAT_VALUE: an f-string field (conversion 1 str, 2 repr, 3 ascii)."""
    if conv == 1:
        value = str(value)
    elif conv == 2:
        value = repr(value)
    elif conv == 3:
        value = ascii(value)
    return format(value, spec)


def _concat(*parts: str) -> str:
    """BUILD_STRING."""
    return "".join(parts)


class ContainerOps:
    def BUILD_TUPLE(self, ins):
        self.push(TupleV(self.popn(ins.arg)))

    def BUILD_LIST(self, ins):
        self.push(ListV(self.popn(ins.arg)))

    def BUILD_SET(self, ins):
        items = self.popn(ins.arg)
        self.push(SetV(self._dedup(items)))

    def _dedup(self, items):
        out, seen, seen_ids = [], set(), set()
        for x in items:
            if isinstance(x, ObjV) and type(x.obj).__eq__ is object.__eq__:
                if id(x.obj) in seen_ids:  # identity-hashed objects (modules, ...)
                    continue
                seen_ids.add(id(x.obj))
                out.append(x)
                continue
            k = self.as_python(x)
            if k is not _NO:
                if k in seen:
                    continue
                seen.add(k)
            out.append(x)
        return out

    def BUILD_MAP(self, ins):
        flat = self.popn(2 * ins.arg)
        d = {}
        for i in range(0, len(flat), 2):
            d[self.const_key(flat[i])] = flat[i + 1]
        self.push(DictV(d))

    def BUILD_CONST_KEY_MAP(self, ins):
        keys = self.pop()
        vals = self.popn(ins.arg)
        self.push(DictV(dict(zip(keys.value, vals))))

    def const_key(self, v: Value):
        k = self.as_python(v)
        if k is _NO:
            raise GraphBreak("JF009", f"dict key of type {v.python_type().__name__}")
        try:
            hash(k)
        except TypeError:
            raise GraphBreak("JF012", "unhashable dict key") from None
        return k

    def BUILD_SLICE(self, ins):
        if ins.arg == 3:
            step = self.pop()
        else:
            step = Const(None)
        stop = self.pop()
        start = self.pop()
        self.push(SliceV(start, stop, step))

    def BUILD_STRING(self, ins):
        parts = self.popn(ins.arg)
        if not all(isinstance(p, Const) and isinstance(p._value, str) for p in parts):
            raise GraphBreak("JF009", "f-string of non-constant values")
        if any(unguarded(p) for p in parts):
            # built again after the graph from its unspecialised parts
            self.push(DerivedConst(_concat, parts))
            return
        self.push(Const("".join(p.value for p in parts)))

    def FORMAT_VALUE(self, ins):
        flags = ins.arg
        spec = self.pop() if flags & 0x04 else Const("")
        v = self.pop()
        conv = Const(flags & 0x03)
        if unguarded(v) and isinstance(spec, Const) and not unguarded(spec):
            # a value read from the frame only formatted (e.g. a loss printed
            # after .item()): not specialised, formatted again at run time
            try:
                self.push(DerivedConst(_format, [v, conv, spec]))
                return
            except Exception:  # noqa: BLE001 - fold below reports the error
                pass
        val = self.as_python(v)
        if val is _NO or isinstance(v, TensorV):
            raise GraphBreak("JF009", "f-string of a non-constant value")
        self.push(self.fold(_format, val, conv.value, spec.value))

    def LIST_APPEND(self, ins):
        item = self.pop()
        lst = self.stack[-ins.arg]
        self.mutate_list(lst)
        lst.items.append(item)

    def SET_ADD(self, ins):
        item = self.pop()
        s = self.stack[-ins.arg]
        self.mutate_list(s)  # a comprehension's set handed over by a resume function
        s.items = self._dedup(s.items + [item])

    def MAP_ADD(self, ins):
        value = self.pop()
        key = self.pop()
        d = self.stack[-ins.arg]
        self.mutate_dict(d)  # a comprehension's dict handed over by a resume function
        d.items[self.const_key(key)] = value

    def LIST_EXTEND(self, ins):
        it = self.pop()
        lst = self.stack[-ins.arg]
        self.mutate_list(lst)
        lst.items.extend(self.iterate(it))

    def SET_UPDATE(self, ins):
        it = self.pop()
        s = self.stack[-ins.arg]
        self.mutate_list(s)
        s.items = self._dedup(s.items + self.iterate(it))

    def DICT_UPDATE(self, ins):
        upd = self.pop()
        d = self.stack[-ins.arg]
        self.mutate_dict(d)
        d.items.update(self.dict_items(upd))

    def DICT_MERGE(self, ins):
        upd = self.pop()
        d = self.stack[-ins.arg]
        items = self.dict_items(upd)
        dup = set(items) & set(d.items)
        if dup:
            raise GraphBreak("JF012", f"got multiple values for keyword argument {dup.pop()!r}")
        self.mutate_dict(d)
        d.items.update(items)

    def dict_items(self, v: Value) -> dict:
        if isinstance(v, DictV):
            return dict(v.items)
        if isinstance(v, Const) and isinstance(v.value, dict):
            return {k: Const(x) for k, x in v.value.items()}
        raise GraphBreak("JF009", f"dict update from {v.python_type().__name__}")

    def LIST_TO_TUPLE(self, ins):
        self.push(TupleV(self.pop().items))

    def UNPACK_SEQUENCE(self, ins):
        items = self.iterate(self.pop())
        if len(items) != ins.arg:
            raise GraphBreak("JF012", f"cannot unpack {len(items)} values into {ins.arg}")
        for x in reversed(items):
            self.push(x)

    def UNPACK_EX(self, ins):
        arg = ins.arg
        before, after = (arg & 0xFF, arg >> 8) if isinstance(arg, int) else arg
        items = self.iterate(self.pop())
        if len(items) < before + after:
            raise GraphBreak("JF012", "not enough values to unpack")
        mid = ListV(items[before:len(items) - after])
        out = items[:before] + [mid] + items[len(items) - after:]
        for x in reversed(out):
            self.push(x)

    # -- iteration ---------------------------------------------------------------------
    def iterate(self, v: Value) -> list[Value]:
        """The items an iteration over ``v`` produces, materialised."""
        if isinstance(v, (ListV, TupleV, SetV)):
            return list(v.items)
        if isinstance(v, DictV):
            return [Const(k) for k in v.items]
        if isinstance(v, IterV):
            items = v.items[v.pos:]
            v.pos = len(v.items)
            return items
        if isinstance(v, Const):
            val = v.value
            if isinstance(val, (tuple, list, str, range, torch.Size, bytes, frozenset, set)):
                if len(val) > self.config.unroll_limit:
                    raise GraphBreak("JF007", f"iteration over {len(val)} items")
                return [Const(x) for x in val]
            raise GraphBreak("JF012", f"{type(val).__name__} is not iterable")
        if isinstance(v, TensorV):
            if v.fake.dim() == 0:
                raise GraphBreak("JF012", "iteration over a 0-d tensor")
            n = int(v.fake.shape[0])  # unrolled: a dynamic size is specialised
            return [self.output.call("call_function", operator.getitem, (v, Const(i)), {})
                    for i in range(n)]
        if isinstance(v, ObjV):
            obj = v.obj
            if isinstance(obj, (torch.nn.ModuleList, torch.nn.Sequential)):
                self.length(v)
                return [self.output.wrap(m, ItemSource(AttrSource(v.source, "_modules"), k)
                                         if v.source else None)
                        for k, m in obj._modules.items()]
            if isinstance(obj, torch.nn.ModuleDict):
                self.length(v)
                if v.source is not None:
                    self.output.guards.add(
                        f"__jf_h_list({v.source.expr()}._modules) == {list(obj._modules)!r}",
                        f"keys of {v.source.name()} == {list(obj._modules)!r}")
                return [Const(k) for k in obj._modules]
            if isinstance(obj, torch.nn.ParameterList):
                self.length(v)
                return [self.output.wrap(p, ItemSource(AttrSource(v.source, "_parameters"), k)
                                         if v.source else None)
                        for k, p in obj._parameters.items()]
        raise GraphBreak("JF009", f"iteration over {v.python_type().__name__}")
