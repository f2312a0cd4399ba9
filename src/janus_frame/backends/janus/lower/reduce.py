"""Reduction lowerings: sum, mean, prod, amax/amin, max/min(dim), argmax/argmin,
any/all, var, var_mean.

In: a lowering context and a :class:`.lowering.TV` input.  Out: a view of the
reduction's output buffer (keepdim dims re-inserted as index maps).  The input
expression is inlined into the reduction (a fused prologue); mean and variance
are a sum reduction followed by a lazy division, so later consumers inline the
division (a fused epilogue).  Variance is Welford's single pass: a ``wmean``
and a ``wm2`` (sum of squared deviations) reduction of the same expression,
which the code generators compute together.
"""
from __future__ import annotations

import torch

from .. import ir
from ..ir import Affine, E, Op, Reduce
from .registry import NATIVE, meta, register
from .tensor_values import as_tv, cast, lazy, sz, unsqueeze, view_of

aten = torch.ops.aten


def _dims(x, dims):
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return list(range(x.ndim))
    if isinstance(dims, int):
        dims = [dims]
    return sorted({d % x.ndim for d in dims})


def reduce(ctx, x, dims, keepdim, rtype, out_dtype, acc_dtype=None):
    """One Reduction node over ``dims`` of ``x``; returns a view of its result."""
    x = as_tv(ctx, x)
    if x.dtype not in NATIVE:
        raise NotImplementedError
    if x.ndim == 0:
        if ir.REDUCTIONS[rtype].index:
            return lazy((), torch.int64, lambda idx: ir.const(0, torch.int64))
        return lazy((), out_dtype, lambda idx: cast(x.load([]), out_dtype))
    dims = _dims(x, dims)
    keep = [d for d in range(x.ndim) if d not in dims]
    ranges = [x.shape[d] for d in keep]
    rranges = [x.shape[d] for d in dims]
    idx = [None] * x.ndim
    for k, d in enumerate(keep):
        idx[d] = Affine.var("v%d" % k)
    for k, d in enumerate(dims):
        idx[d] = Affine.var("r%d" % k)
    expr = x.load(idx)
    acc = acc_dtype or (x.dtype if ir.REDUCTIONS[rtype].index else out_dtype)
    if rtype in (Reduce.ANY, Reduce.ALL):
        acc = torch.bool
    expr = cast(expr, acc)
    out = ctx.prog.new_buffer("buf", ranges, ir.contiguous_strides(ranges), out_dtype if rtype not in (Reduce.ANY, Reduce.ALL) else torch.bool, "temp")
    node = ir.Reduction(f"n{len(ctx.prog.nodes)}", out, ranges, rranges, rtype, expr, x.shape, dims)
    ctx.prog.nodes.append(node)
    tv = view_of(out)
    if rtype in (Reduce.ANY, Reduce.ALL) and out_dtype != torch.bool:
        t0 = tv
        tv = lazy(t0.shape, out_dtype, lambda i: cast(t0.load(i), out_dtype))
    if keepdim:
        for d in dims:
            tv = unsqueeze(tv, d)
    return tv


def _count(x, dims):
    n = 1
    for d in _dims(x, dims):
        n = n * x.shape[d]
    return n


def _num(n, dtype):
    if isinstance(n, (int, float)):
        return ir.const(n, dtype)
    return cast(E(Op.SYM, torch.int64, (), n), dtype)


@register(aten.sum.dim_IntList, aten.sum.default)
def _sum(ctx, x, dims=None, keepdim=False, dtype=None):
    shape, odt = meta(ctx)
    return reduce(ctx, x, dims, keepdim, Reduce.SUM, odt)


@register(aten.prod.dim_int, aten.prod.default)
def _prod(ctx, x, dim=None, keepdim=False, dtype=None):
    shape, odt = meta(ctx)
    return reduce(ctx, x, dim, keepdim, Reduce.PROD, odt)


@register(aten.mean.dim, aten.mean.default)
def _mean(ctx, x, dims=None, keepdim=False, dtype=None):
    shape, odt = meta(ctx)
    s = reduce(ctx, x, dims, keepdim, Reduce.SUM, odt)
    n = _count(x, dims)
    return lazy(s.shape, odt, lambda idx: E(Op.DIV, odt, (s.load(idx), _num(n, odt))))


@register(aten.amax.default, aten.max.default)
def _amax(ctx, x, dims=None, keepdim=False):
    shape, odt = meta(ctx)
    return reduce(ctx, x, dims, keepdim, Reduce.MAX, odt)


@register(aten.amin.default, aten.min.default)
def _amin(ctx, x, dims=None, keepdim=False):
    shape, odt = meta(ctx)
    return reduce(ctx, x, dims, keepdim, Reduce.MIN, odt)


@register(aten.max.dim, aten.min.dim)
def _max_dim(ctx, x, dim, keepdim=False):
    kind = ctx.node.target._opname
    vals = reduce(ctx, x, [dim], keepdim, Reduce(kind), x.dtype)
    idx = reduce(ctx, x, [dim], keepdim, Reduce("arg" + kind), torch.int64)
    return [vals, idx]


@register(aten.argmax.default, aten.argmin.default)
def _argmax(ctx, x, dim=None, keepdim=False):
    kind = ctx.node.target._opname
    if dim is None and keepdim:
        raise NotImplementedError
    return reduce(ctx, x, None if dim is None else [dim], keepdim, Reduce(kind), torch.int64)


@register(aten.any.default, aten.any.dim, aten.any.dims, aten.all.default, aten.all.dim, aten.all.dims)
def _any(ctx, x, dims=None, keepdim=False):
    shape, odt = meta(ctx)
    return reduce(ctx, x, dims, keepdim, Reduce(ctx.node.target._opname), odt)


def _var(ctx, x, dims, correction, keepdim, odt):
    """(var, mean) with keepdim applied to both."""
    if correction is None:
        correction = 1
    x = as_tv(ctx, x)
    if not odt.is_floating_point:
        raise NotImplementedError
    n = _count(x, dims)
    mean_k = reduce(ctx, x, dims, True, Reduce.WMEAN, odt)
    ss = reduce(ctx, x, dims, True, Reduce.WM2, odt)
    denom = n - correction
    if isinstance(denom, (int, float)):
        denom = max(denom, 0)
    var_k = lazy(ss.shape, odt, lambda idx: E(Op.DIV, odt, (ss.load(idx), _num(denom, odt))))
    if keepdim:
        return var_k, mean_k
    from .tensor_values import squeeze_dims

    ds = _dims(x, dims)
    return squeeze_dims(var_k, ds), squeeze_dims(mean_k, ds)


@register(aten.var_mean.correction)
def _var_mean(ctx, x, dims=None, *, correction=None, keepdim=False):
    odt = ctx.node.meta["val"][0].dtype
    v, m = _var(ctx, x, dims, correction, keepdim, odt)
    return [v, m]


@register(aten.var.correction)
def _var_only(ctx, x, dims=None, *, correction=None, keepdim=False):
    shape, odt = meta(ctx)
    return _var(ctx, x, dims, correction, keepdim, odt)[0]


@register(aten.std.correction)
def _std(ctx, x, dims=None, *, correction=None, keepdim=False):
    shape, odt = meta(ctx)
    v = _var(ctx, x, dims, correction, keepdim, odt)[0]
    return lazy(v.shape, odt, lambda idx: E(Op.SQRT, odt, (v.load(idx),)))


_ = sz
