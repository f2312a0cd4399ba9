"""The table of per-op lowerings, and what every lowering module needs to
add to it.

In: nothing.  Out: ``LOWERINGS`` (aten OpOverload -> ``fn(ctx, *args,
**kwargs) -> TV``, filled by :mod:`lower.ops` and :mod:`lower.reduce` when
the ``lower`` package is imported), ``register`` (the decorator that fills
it), ``NATIVE`` (the dtypes kernels compute in) and ``meta`` (the result
shape and dtype of the node being lowered).

The table is its own module so that the op modules depend on it and not on
each other: ``lower.ops`` and ``lower.reduce`` are independent registration
modules, imported by the package.
"""
from __future__ import annotations

import torch

from ....torch_compat import OpOverloadPacket
from .tensor_values import sz

LOWERINGS = {}
NATIVE = (torch.float32, torch.float64, torch.int64, torch.int32, torch.int16, torch.int8,
          torch.uint8, torch.bool)


def register(*ops):
    def deco(fn):
        for op in ops:
            if isinstance(op, OpOverloadPacket):
                for o in op.overloads():
                    LOWERINGS[getattr(op, o)] = fn
            else:
                LOWERINGS[op] = fn
        return fn

    return deco


def meta(ctx):
    v = ctx.node.meta.get("val")
    if not isinstance(v, torch.Tensor):
        raise NotImplementedError
    if v.dtype not in NATIVE or v.device.type != "cpu" and v.device.type != "cuda":
        raise NotImplementedError
    return tuple(sz(s) for s in v.shape), v.dtype
