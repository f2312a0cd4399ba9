"""Which errors a segment's graph can still raise when it runs, and what
decides them.

In: a captured fx graph whose nodes carry fake example values (its trace
already raised every error that shapes, dtypes and devices decide).
Out: :func:`run_time_errors` -- None where some operation may raise on the
values it reads (anything may happen), else the index inputs whose values
decide whether it raises: ``(placeholder name, bound, ignored)`` triples,
each one an error unless every element other than ``ignored`` lies in
``[0, bound)``; and :func:`in_range`, the run-time test of one.

The undo set (segment.py) uses it. A graph that updates its inputs in place
and raises midway must leave them as they were, so the frame can rerun
natively and raise eager's error from the user's own line: that takes a copy
of every input it updates, on every call (a training step's parameters and
optimizer state). When every error left is decided by memory shared between
inputs or by index inputs, the replacement tests those first -- an
``aminmax`` over each index input -- and takes the copies only on a call
that could raise.
"""
from __future__ import annotations

import torch
import torch.fx

# Operations that raise nothing at run time once shapes, dtypes and devices
# are those the trace saw (fake tensors raised any error those decide) and
# no two inputs share memory: floating-point arithmetic has no error values
# (inf and nan instead), so only integer division is kept out (_FLOAT_ONLY);
# indexing only with ints and slices (an index tensor may be out of range:
# _INDEXED), nothing reading data to decide (``binary_cross_entropy``
# checks its input lies in [0, 1]; ``multinomial`` its weights).
_SAFE_OPS = frozenset("""
add sub mul neg abs sqrt rsqrt exp exp2 expm1 log log1p log2 sigmoid tanh relu gelu silu mish
sin cos erf softplus leaky_relu elu hardtanh relu6 hardswish hardsigmoid logsigmoid
clamp clamp_min clamp_max maximum minimum lerp addcmul addcdiv sign square reciprocal
copy zero fill masked_fill where iadd isub imul
matmul mm bmm baddbmm linear addmm einsum sum mean amax amin max min argmax argmin norm var std
cumsum prod softmax log_softmax layer_norm group_norm batch_norm rms_norm
conv1d conv2d conv3d conv_transpose1d conv_transpose2d max_pool1d max_pool2d avg_pool1d
avg_pool2d adaptive_avg_pool1d adaptive_avg_pool2d pad interpolate dropout
scaled_dot_product_attention multi_head_attention_forward _canonical_mask
mse_loss l1_loss smooth_l1_loss huber_loss binary_cross_entropy_with_logits
view reshape transpose permute t unsqueeze squeeze flatten contiguous expand expand_as
chunk split cat stack narrow select unbind repeat tile roll flip
detach clone to type_as float double half bfloat16 long int bool
arange full zeros ones empty zeros_like ones_like full_like empty_like triu tril
""".split())
_BASIC_INDEX = (int, slice, type(None), type(Ellipsis))
_FLOAT_ONLY = frozenset("div true_divide truediv itruediv pow ipow floor_divide remainder fmod".split())
# ops that read an index tensor and raise when one of its values is out of range
_INDEXED = frozenset("embedding cross_entropy nll_loss".split())
# value-keeping ops: an index reached through them holds values of its input
_VIEWS = frozenset("""
view reshape transpose permute t unsqueeze squeeze flatten contiguous expand narrow select
detach clone _unsafe_view
""".split())


def _name(n: torch.fx.Node) -> str:
    name = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "")
    base = name.strip("_") if name.startswith("__") else name.rstrip("_")
    return base[len("_foreach_"):] if base.startswith("_foreach_") else base


def _basic_getitem(n: torch.fx.Node) -> bool:
    if len(n.args) != 2:
        return False
    idx = n.args[1] if isinstance(n.args[1], tuple) else (n.args[1],)
    return all(isinstance(i, _BASIC_INDEX) for i in idx)


def _value(x):
    return x.meta.get("example_value") if isinstance(x, torch.fx.Node) else None


def run_time_errors(gm: torch.fx.GraphModule):
    """None: some operation of ``gm`` may raise on the values it reads; else
    the index checks that decide every error left but overlaps (see the
    module docstring)."""
    checks: list = []
    for n in gm.graph.nodes:
        if n.op in ("placeholder", "output", "get_attr"):
            continue
        if n.op not in ("call_function", "call_method"):
            return None
        if n.target is torch.autograd.grad or getattr(n.target, "__name__", "") == "_set_grad_enabled":
            # a backward in the graph: the derivatives of its forward's ops,
            # which raise nothing the forward's own checks left open
            continue
        base = _name(n)
        if base in _SAFE_OPS:
            continue
        if base == "getitem" and _basic_getitem(n):
            continue
        vals = _value(n)
        vals = vals if isinstance(vals, (list, tuple)) else [vals]
        if base in _FLOAT_ONLY and vals and all(
                isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex())
                for v in vals):
            continue
        if base in _INDEXED:
            found = _index_checks(n, base)
            if found is None:
                return None
            checks += found
            continue
        return None
    return tuple(dict.fromkeys(checks))


def _arg(n: torch.fx.Node, pos: int, kw: str, default=None):
    if kw in n.kwargs:
        return n.kwargs[kw]
    return n.args[pos] if len(n.args) > pos else default


def _index_checks(n: torch.fx.Node, base: str):
    """The checks under which ``n`` (an op of _INDEXED) cannot raise: [] when
    its index is known in range, None when no check on an input decides it."""
    if base == "embedding":
        # F.embedding(input, weight, ...) or torch.embedding(weight, input, ...)
        a, b = n.args[0] if n.args else None, n.args[1] if len(n.args) > 1 else None
        va, vb = _value(a), _value(b)
        if not (isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor)):
            return None
        index, weight = (a, vb) if not va.is_floating_point() else (b, va)
        bound, ignore = weight.shape[0] if weight.dim() else None, None
    else:  # cross_entropy / nll_loss (input, target, weight, size_average, ignore_index, ...)
        inp, index = _value(_arg(n, 0, "input")), _arg(n, 1, "target")
        target = _value(index)
        if not (isinstance(inp, torch.Tensor) and isinstance(target, torch.Tensor)):
            return None
        if target.is_floating_point():
            return []  # class probabilities: no index to be out of range
        bound = inp.shape[1] if inp.dim() >= 2 else inp.shape[0] if inp.dim() == 1 else None
        ignore = _arg(n, 4, "ignore_index", -100)
        if type(ignore) is not int:
            return None
    if type(bound) is not int:
        return None  # a symbolic size: not decided here
    src = _index_source(index)
    if src is None:
        return None
    if isinstance(src, range):  # an arange of constants: decided now
        ok = all(0 <= v < bound or v == ignore for v in (src[0], src[-1])) if src else True
        return [] if ok else None
    return [(src.name, bound, ignore)]


def _index_source(node):
    """The placeholder whose values include every value of ``node`` (reached
    through views of it), a ``range`` for an ``arange`` of int constants, or
    None."""
    while isinstance(node, torch.fx.Node):
        if node.op == "placeholder":
            return node
        if node.op not in ("call_function", "call_method"):
            return None
        base = _name(node)
        if base == "arange" and node.op == "call_function":
            if all(type(a) is int for a in node.args) and 1 <= len(node.args) <= 3 and \
                    set(node.kwargs) <= {"dtype", "device", "requires_grad", "layout", "pin_memory"}:
                return range(*node.args)
            return None
        if not (base in _VIEWS or (base == "getitem" and _basic_getitem(node))):
            return None
        node = node.args[0] if node.args else None
    return None


def in_range(checks) -> bool:
    """Does every index tensor of ``checks`` -- ``(tensor, bound, ignored)``
    triples -- hold only values in ``[0, bound)`` or equal to ``ignored``?"""
    for index, bound, ignore in checks:
        if index.numel() == 0:
            continue
        lo, hi = torch.aminmax(index)
        if lo.item() >= 0 and hi.item() < bound:
            continue
        if ignore is None:
            return False
        kept = index[index != ignore]
        if kept.numel() and (kept.min().item() < 0 or kept.max().item() >= bound):
            return False
    return True
