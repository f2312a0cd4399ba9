"""Comparisons of (possibly symbolic) sizes while lowering, and slice bounds.

In: the lowering context (its fx node's values carry the ShapeEnv of the
symbolic sizes) and size expressions.  Out: :func:`less` decides ``a < b``
statically or from the sizes' hints (raising NotImplementedError, i.e. a
library call, when it cannot); :func:`clamp_index` normalises a slice bound
as torch does.
"""
from __future__ import annotations

import sympy
import torch

from .tensor_values import sz


def _shape_env(ctx):
    """The ShapeEnv of the symbolic sizes around the node being lowered, or None."""
    node = getattr(ctx, "node", None)
    if node is None:
        return None
    vals = [node.meta.get("val")] + [a.meta.get("val") for a in node.all_input_nodes]
    for v in vals:
        for s in _syms_of(v):
            return s.node.shape_env
    return None


def _syms_of(v):
    if isinstance(v, torch.SymInt):
        yield v
    elif isinstance(v, torch.Tensor):
        yield from (s for s in v.shape if isinstance(s, torch.SymInt))
    elif isinstance(v, (list, tuple)):
        for x in v:
            yield from _syms_of(x)


def less(ctx, a, b) -> bool:
    """Whether size expression ``a < b``, where one side may be symbolic.

    Decided statically when sympy or the ShapeEnv can; else by the sizes'
    hints: the trace that made the graph took the branch of the same
    comparison on the same hints (torch's slice and select normalise their
    bounds this way) and guarded it, so every call reaching this compiled
    graph takes it too.  Undecidable (sizes without hints) -> the op runs as
    a library call."""
    rel = sympy.Lt(sympy.sympify(a), sympy.sympify(b))
    if rel in (sympy.true, sympy.false):
        return bool(rel)
    env = _shape_env(ctx)
    if env is None:
        raise NotImplementedError
    from ....torch_compat import evaluate_static

    static = evaluate_static(env, rel)
    if static in (sympy.true, sympy.false):
        return bool(static)
    hinted = rel.xreplace(env.var_to_val)
    if hinted in (sympy.true, sympy.false):
        return bool(hinted)
    raise NotImplementedError


def clamp_index(ctx, i, n, default):
    """A slice bound as torch normalises it: a negative one counts from the
    end, then the bound is clamped to ``[0, n]``.  With symbolic sizes the
    comparisons go through :func:`less` (a bound like ``-s0`` of a
    dimension ``s0`` must become 0, not stay an offset before the data)."""
    if i is None:
        return default
    i = sz(i)
    if isinstance(i, int) and isinstance(n, int):
        if i < 0:
            i += n
        return min(max(i, 0), n)
    if isinstance(i, int) and i >= 2 ** 60:  # "to the end" (sys.maxsize and the like)
        return n
    if less(ctx, i, 0):
        i = sz(i + n)
        if less(ctx, i, 0):
            return 0
    if less(ctx, n, i):
        return n
    return i
