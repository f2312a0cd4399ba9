"""Where a varying Python number may become a 0-d graph input.

In: an operation about to be recorded (``OutputGraph.call``) and its
operands.  Out: ``number_operands_ok``: True where a number operand and a
0-d tensor of its value compute the same, so a number that changes between
calls can be a graph input instead of a guarded constant.
"""
from __future__ import annotations

import operator

import torch

from .values import TensorV


# Operations for which a Python number operand and a 0-d tensor of its value
# (int64 / float64) compute the same: elementwise arithmetic and comparisons
# with a tensor.  Elsewhere the two differ: indexing with a 0-d tensor copies
# where an int takes a view (in-place writes through it would be lost), and
# factories read a tensor's dtype.
_NUMBER_OPERAND_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv,
    operator.mod, operator.pow, operator.lt, operator.le, operator.gt, operator.ge,
    operator.eq, operator.ne, operator.iadd, operator.isub, operator.imul, operator.itruediv,
    operator.ifloordiv, operator.imod, operator.ipow, torch.add, torch.sub, torch.subtract,
    torch.mul, torch.multiply, torch.div, torch.divide, torch.true_divide, torch.floor_divide,
    torch.remainder, torch.fmod, torch.pow, torch.rsub, torch.lt, torch.le, torch.gt, torch.ge,
    torch.eq, torch.ne, torch.maximum, torch.minimum, torch.lerp}
_NUMBER_OPERAND_METHODS = {
    "add", "sub", "mul", "div", "true_divide", "floor_divide", "remainder", "fmod", "pow",
    "add_", "sub_", "mul_", "div_", "pow_", "lt", "le", "gt", "ge", "eq", "ne", "lerp", "lerp_",
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
    "__rtruediv__", "__pow__", "__rpow__"}


def number_operands_ok(kind, target, args) -> bool:
    """May the varying numbers among ``args`` become 0-d graph inputs?  Only
    for elementwise arithmetic (above), and not beside a 0-d tensor of the
    number's category but another dtype (two 0-d operands promote to the
    wider dtype, where a Python number takes the tensor's)."""
    if kind == "call_function":
        if target not in _NUMBER_OPERAND_FUNCTIONS:
            return False
    elif kind != "call_method" or target not in _NUMBER_OPERAND_METHODS:
        return False
    for a in args:
        if isinstance(a, TensorV) and a.fake.dim() == 0:
            dt = a.fake.dtype
            if dt.is_floating_point or dt.is_complex:
                if dt is not torch.float64:
                    return False
            elif dt is not torch.int64 and dt is not torch.bool:
                return False
    return True
