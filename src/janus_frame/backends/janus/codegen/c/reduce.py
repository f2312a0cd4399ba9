"""C text of the reductions in :data:`ir.REDUCTIONS`.

In: a reduction member of a kernel (its ``rtype`` and input dtype), the name
of its accumulator and the printed value being folded in.  Out: lines of C:
``declare`` (an accumulator of a row loop, with its OpenMP reduction
clauses), ``update`` (one step of a row loop), ``identity`` and
``vec_update`` (one column's slot of the vector accumulators of
:mod:`codegen.c.outer`).  A test checks that every reduction renders.

Row loops carry NaN of max/min in a flag with its own OpenMP clause (the
vectorised compare-and-select drops it); column slots keep NaN in the
select itself (no reduction clause there).  Arg-reductions keep the first
extremum, or the first NaN.
"""
from __future__ import annotations

from ... import ir
from ...ir import NaN, Op
from .expr import cconst

_COMPOUND = {Op.ADD: "+=", Op.MUL: "*=", Op.OR: "|=", Op.AND: "&="}
_CLAUSE = {Op.ADD: "+", Op.MUL: "*", Op.OR: "|", Op.AND: "&", Op.MAXIMUM: "max", Op.MINIMUM: "min"}
_CMP = {Op.MAXIMUM: ">", Op.MINIMUM: "<"}


def identity(m) -> str:
    """The accumulator's starting value: 0 / 1 as such, an extreme of the
    input dtype as a C constant of it."""
    kind = ir.REDUCTIONS[m.node.rtype]
    d = m.node.expr.dtype
    v = kind.identity_value(d)
    return cconst(v, d) if callable(kind.identity) else str(v)


def declare(m, T, a):
    """(declarations, OpenMP reduction clauses, statements after the loop)
    of accumulator ``a`` of C type ``T``."""
    kind = ir.REDUCTIONS[m.node.rtype]
    init = identity(m)
    if kind.index:
        return [f"{T} {a}_v = {init};", f"int64_t {a} = 0;"], [], []
    decl, clauses, finals = [f"{T} {a} = {init};"], [f"reduction({_CLAUSE[kind.combine]}:{a})"], []
    if kind.nan is NaN.STICKY and m.node.expr.dtype.is_floating_point:
        decl.append(f"int {a}_nan = 0;")
        clauses.append(f"reduction(|:{a}_nan)")
        finals.append(f"if ({a}_nan) {a} = NAN;")
    return decl, clauses, finals


def update(m, v, a, sp, index=None):
    """Fold ``v`` into row accumulator ``a`` (``index``: the C text of the
    element's position, for arg-reductions)."""
    kind = ir.REDUCTIONS[m.node.rtype]
    flt = m.node.expr.dtype.is_floating_point
    if kind.index:
        nan = f" || ({v} != {v} && {a}_v == {a}_v)" if flt else ""
        return [f"{sp}if ({v} {_CMP[kind.combine]} {a}_v{nan}) {{ {a}_v = {v}; {a} = {index}; }}"]
    if kind.combine in _CMP:
        out = [f"{sp}{a} = {v} {_CMP[kind.combine]} {a} ? {v} : {a};"]
        if kind.nan is NaN.STICKY and flt:
            out.append(f"{sp}{a}_nan |= ({v} != {v});")
        return out
    return [f"{sp}{a} {_COMPOUND[kind.combine]} {_operand(kind, v)};"]


def vec_update(m, v, a, sp):
    """Fold ``v`` into slot ``a`` of a column accumulator (no reduction
    clause: NaN propagates through the select itself)."""
    kind = ir.REDUCTIONS[m.node.rtype]
    if kind.combine in _CMP:
        nan = f" | {v} != {v}" if m.node.expr.dtype.is_floating_point else ""
        return [f"{sp}{a} = ({v} {_CMP[kind.combine]} {a}{nan}) ? {v} : {a};"]
    return [f"{sp}{a} {_COMPOUND[kind.combine]} {_operand(kind, v)};"]


def _operand(kind, v):
    return f"({v} != 0)" if kind.nan is NaN.TRUTH else v
