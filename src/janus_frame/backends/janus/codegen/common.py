"""What the code generators share.

In: nothing.  Out: :class:`CodegenError` (a schedule a generator cannot
print), :func:`pyexpr` (a size expression as Python source, used by the
Triton kernels and by the run-time wrapper, :mod:`runtime.graph`) and
``SAME_TEXT``: the ops printed alike in C and in Triton's Python (entries of
both render tables).
"""
from __future__ import annotations

import sympy
from torch.utils._sympy.printers import PythonPrinter

from ..ir import Op


class CodegenError(Exception):
    pass


_PY_PRINTER = PythonPrinter()


def pyexpr(x) -> str:
    """A size expression (int or sympy) as Python source, by torch's sympy
    printer (FloorDiv as //, Max as max(), ...)."""
    if isinstance(x, int):
        return str(x)
    if isinstance(x, (sympy.Integer, sympy.Symbol)):
        return str(x)
    return f"({_PY_PRINTER.doprint(x)})"


# Operators with one spelling in C and in Python.  AND and OR are bitwise on
# bools: side-effect free, no short circuit, so the C loops stay branch free.
SAME_TEXT = {
    Op.ADD: "({0} + {1})",
    Op.SUB: "({0} - {1})",
    Op.MUL: "({0} * {1})",
    Op.NEG: "(-{0})",
    Op.LT: "({0} < {1})",
    Op.LE: "({0} <= {1})",
    Op.GT: "({0} > {1})",
    Op.GE: "({0} >= {1})",
    Op.EQ: "({0} == {1})",
    Op.NE: "({0} != {1})",
    Op.AND: "({0} & {1})",
    Op.OR: "({0} | {1})",
    Op.ISNAN: "({0} != {0})",
}
