"""Symbolic values as operator arguments (a leaf of the frontend).

In: symbolic values (values.py), possibly nested in tuples, lists, dicts and
slices.
Out: the same structure with tensors replaced by their fx node
(:func:`to_node`, for recording a graph node) or by their fake tensor
(:func:`to_fake`, for running the operator on fake tensors); a value that
cannot be an operator argument is a graph break (JF015).
"""
from __future__ import annotations

import numpy as np
import torch

from .breaks import GraphBreak
from .values import Const, DictV, ListV, ObjV, SliceV, SymV, TensorV, TupleV


def _unwrap(v, tensor):
    """A value as an operator argument: tensors through ``tensor`` (to their
    fx node, or to their fake tensor), containers rebuilt around them."""
    if isinstance(v, TensorV):
        return tensor(v)
    if isinstance(v, SymV):
        return v.node if tensor is _node_of else v.sym
    if isinstance(v, Const):
        x = v.value
        if type(x) is np.float64 and tensor is _node_of:
            # as a Python float in the graph's code (its repr, np.float64(...),
            # names a module the generated code does not import); torch and
            # torch._numpy take both alike
            return float(x)
        return x
    if isinstance(v, TupleV):
        return tuple(_unwrap(x, tensor) for x in v.items)
    if isinstance(v, ListV):
        return [_unwrap(x, tensor) for x in v.items]
    if isinstance(v, SliceV):
        return slice(_unwrap(v.start, tensor), _unwrap(v.stop, tensor), _unwrap(v.step, tensor))
    if isinstance(v, DictV):
        return {k: _unwrap(x, tensor) for k, x in v.items.items()}
    if isinstance(v, ObjV) and isinstance(v.obj, (torch.dtype, torch.device)):
        return v.obj
    raise GraphBreak("JF015", f"{type(v).__name__} passed to a tensor operation")


def _node_of(t: TensorV):
    return t.node


def to_node(v):
    """A value as an fx argument."""
    return _unwrap(v, _node_of)


def to_fake(v):
    """A value as an argument of the operator run on fake tensors."""
    return _unwrap(v, lambda t: t.fake)
