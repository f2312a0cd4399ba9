"""Opcode handlers: building and unpacking tuples, lists, sets, dicts,
slices and f-strings.

In/out: the frame's stack.
"""
from __future__ import annotations

from ..breaks import GraphBreak, would_raise
from ..values import NO, Const, DerivedConst, DictV, ListV, SetV, SliceV, TensorV, TupleV
from ..values.constants import fold, unguarded
from ..values.containers import dedup
from ..values.dicts import dict_key
from .registry import handler

# FORMAT_VALUE's flags: the conversion (1 str, 2 repr, 3 ascii), and whether
# a format spec is on the stack
_FV_CONVERSION = 0x03
_FV_HAVE_SPEC = 0x04


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

# -- building ------------------------------------------------------------------------


@handler("BUILD_TUPLE")
def BUILD_TUPLE(tx, ins):
    tx.stack.append(TupleV(tx.popn(ins.arg)))


@handler("BUILD_LIST")
def BUILD_LIST(tx, ins):
    tx.stack.append(ListV(tx.popn(ins.arg)))


@handler("BUILD_SET")
def BUILD_SET(tx, ins):
    tx.stack.append(SetV(dedup(tx.popn(ins.arg))))


@handler("BUILD_MAP")
def BUILD_MAP(tx, ins):
    flat = tx.popn(2 * ins.arg)
    d = {}
    for i in range(0, len(flat), 2):
        d[dict_key(flat[i])] = flat[i + 1]
    tx.stack.append(DictV(d))


@handler("BUILD_CONST_KEY_MAP")
def BUILD_CONST_KEY_MAP(tx, ins):
    keys = tx.stack.pop()
    vals = tx.popn(ins.arg)
    tx.stack.append(DictV(dict(zip(keys.value, vals))))


@handler("BUILD_SLICE")
def BUILD_SLICE(tx, ins):
    step = tx.stack.pop() if ins.arg == 3 else Const(None)
    stop = tx.stack.pop()
    start = tx.stack.pop()
    tx.stack.append(SliceV(start, stop, step))


@handler("BUILD_STRING")
def BUILD_STRING(tx, ins):
    parts = tx.popn(ins.arg)
    if not all(isinstance(p, Const) and isinstance(p._value, str) for p in parts):
        raise GraphBreak("JF024", "f-string of non-constant values")
    if any(unguarded(p) for p in parts):
        # built again after the graph from its unspecialised parts
        tx.stack.append(DerivedConst(_concat, parts))
        return
    tx.stack.append(Const("".join(p.value for p in parts)))


def format_field(tx, v, conv: int, spec):
    """An f-string field: ``v`` converted (``conv``: 0 none, 1 str, 2 repr,
    3 ascii), then formatted with ``spec`` (FORMAT_VALUE; 3.13 splits it into
    CONVERT_VALUE, FORMAT_SIMPLE and FORMAT_WITH_SPEC, handlers/v313.py)."""
    conv = Const(conv)
    if unguarded(v) and isinstance(spec, Const) and not unguarded(spec):
        # a value read from the frame only formatted (e.g. a loss printed
        # after .item()): not specialised, formatted again at run time
        try:
            return DerivedConst(_format, [v, conv, spec])
        except Exception:  # noqa: BLE001 - fold below reports the error
            pass
    val = v.as_python()
    if val is NO or isinstance(v, TensorV):
        raise GraphBreak("JF024", "f-string of a non-constant value")
    return fold(_format, val, conv.value, spec.value)


@handler("FORMAT_VALUE", until=(3, 13))
def FORMAT_VALUE(tx, ins):
    flags = ins.arg
    spec = tx.stack.pop() if flags & _FV_HAVE_SPEC else Const("")
    v = tx.stack.pop()
    tx.stack.append(format_field(tx, v, flags & _FV_CONVERSION, spec))

# -- comprehensions and displays: add to the container ``arg`` deep ----------------


@handler("LIST_APPEND")
def LIST_APPEND(tx, ins):
    item = tx.stack.pop()
    lst = tx.stack[-ins.arg]
    lst.will_mutate(tx)
    lst.items.append(item)


@handler("SET_ADD")
def SET_ADD(tx, ins):
    item = tx.stack.pop()
    s = tx.stack[-ins.arg]
    s.will_mutate(tx)  # a comprehension's set handed over by a resume function
    s.items = dedup(s.items + [item])


@handler("MAP_ADD")
def MAP_ADD(tx, ins):
    value = tx.stack.pop()
    key = tx.stack.pop()
    d = tx.stack[-ins.arg]
    d.will_mutate(tx)  # a comprehension's dict handed over by a resume function
    d.items[dict_key(key)] = value


@handler("LIST_EXTEND")
def LIST_EXTEND(tx, ins):
    it = tx.stack.pop()
    lst = tx.stack[-ins.arg]
    lst.will_mutate(tx)
    lst.items.extend(it.iterate(tx))


@handler("SET_UPDATE")
def SET_UPDATE(tx, ins):
    it = tx.stack.pop()
    s = tx.stack[-ins.arg]
    s.will_mutate(tx)
    s.items = dedup(s.items + it.iterate(tx))


@handler("DICT_UPDATE")
def DICT_UPDATE(tx, ins):
    upd = tx.stack.pop()
    d = tx.stack[-ins.arg]
    d.will_mutate(tx)
    d.items.update(upd.dict_items(tx))


@handler("DICT_MERGE")
def DICT_MERGE(tx, ins):
    upd = tx.stack.pop()
    d = tx.stack[-ins.arg]
    items = upd.dict_items(tx)
    dup = set(items) & set(d.items)
    if dup:
        raise would_raise(TypeError, f"got multiple values for keyword argument {dup.pop()!r}")
    d.will_mutate(tx)
    d.items.update(items)


@handler("LIST_TO_TUPLE", until=(3, 12))
def LIST_TO_TUPLE(tx, ins):
    tx.stack.append(TupleV(tx.stack.pop().items))

# -- unpacking -----------------------------------------------------------------------


@handler("UNPACK_SEQUENCE")
def UNPACK_SEQUENCE(tx, ins):
    items = tx.stack.pop().iterate(tx)
    if len(items) != ins.arg:
        raise would_raise(ValueError, f"cannot unpack {len(items)} values into {ins.arg}")
    tx.stack.extend(reversed(items))


@handler("UNPACK_EX")
def UNPACK_EX(tx, ins):
    arg = ins.arg
    before, after = (arg & 0xFF, arg >> 8) if isinstance(arg, int) else arg
    items = tx.stack.pop().iterate(tx)
    if len(items) < before + after:
        raise would_raise(ValueError, "not enough values to unpack")
    mid = ListV(items[before:len(items) - after])
    out = items[:before] + [mid] + items[len(items) - after:]
    tx.stack.extend(reversed(out))
