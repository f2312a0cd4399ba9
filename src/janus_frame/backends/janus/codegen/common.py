"""What the code generators share.

In: nothing.  Out: :class:`CodegenError` (a schedule a generator cannot
print) and :func:`pyexpr` (a size expression as Python source, used by the
Triton kernels and by the run-time wrapper, :mod:`runtime.graph`).
"""
from __future__ import annotations

import sympy
from torch.utils._sympy.printers import PythonPrinter


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
