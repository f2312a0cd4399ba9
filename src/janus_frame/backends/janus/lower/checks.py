"""Run-time checks that generated code relies on.

In: nothing.  Out: ``CHECK_INDEX``, the op
``janus_frame::check_index(Tensor index, SymInt[] size, int dim, str op) -> ()``
that the lowerings of gathering and scattering ops (``gather``,
``index_select``, ``scatter``; ``op`` names the eager op whose error to
raise) put before the kernel reading or writing at their data-dependent
index, and ``check_index``, the function the runtime wrapper calls for it
directly; ``CHECK_TARGET``,
``janus_frame::check_target(Tensor target, SymInt n, int ignore) -> ()``,
the same for the class targets of ``nll_loss`` (and of its backward's
scatter), checked as the user passed them: the index the decomposition
computes from them (ignored targets replaced by 0) then stays a lazy
expression in the consuming kernel instead of a buffer of its own, and the
forward's gather and the backward's scatter over the same targets share one
check (``Lowering.check_index`` keeps one per tensor and bound).

Why: a fused kernel reads ``x[index[i]]`` with no check of its own (it clamps
the index, so it never leaves the buffer, but an out-of-range index would
silently give some other element).  Eager raises instead.  The check is one
``aminmax`` pass over the index tensor -- far less than the kernel's own
work -- and only when it fails is eager's exception made, by running the
eager op on a zero-memory stand-in of the operand (an expanded scalar of the
operand's size): the same type and message as eager's, without a copy of
the operand.
"""
from __future__ import annotations

import torch

_LIB = torch.library.Library("janus_frame", "FRAGMENT")
_LIB.define("check_index(Tensor index, SymInt[] size, int dim, str op) -> ()")


def check_index(index, size, dim, op):
    """Raise eager's error when some element of ``index`` is outside
    ``[0, size[dim])`` (``op`` applied to an operand of shape ``size``)."""
    if index.numel() == 0:
        return
    lo, hi = torch.aminmax(index)
    # (compared as Python ints: a third of the time of tensor comparisons)
    if lo.item() < 0 or hi.item() >= size[dim]:
        _raise_eager(index, size, dim, op)


def check_target(target, n, ignore):
    """Raise ``nll_loss``'s error when some class target other than
    ``ignore`` is outside ``[0, n)``: one ``aminmax`` pass; a second only
    when the first sees a value out of range (an ignored target, usually)."""
    if target.numel() == 0:
        return
    lo, hi = torch.aminmax(target)
    if lo.item() >= 0 and hi.item() < n:
        return
    flat = target.reshape(-1)
    kept = flat[flat != ignore]
    if kept.numel() == 0:
        return
    lo, hi = torch.aminmax(kept)
    if lo < 0 or hi >= n:
        bad = kept[(kept < 0) | (kept >= n)]
        raise IndexError(f"Target {int(bad[0])} is out of bounds.")


def _raise_eager(index, size, dim, op):
    index = index.cpu()
    if op == "nll_loss":
        # (the targets, ignored ones already replaced by a valid 0)
        flat = index.reshape(-1)
        bad = flat[(flat < 0) | (flat >= size[dim])]
        raise IndexError(f"Target {int(bad[0])} is out of bounds.")
    base = torch.zeros((), dtype=torch.float32).expand(list(size))
    if op == "index_select":
        torch.index_select(base, dim, index)
    elif op == "gather":
        torch.gather(base, dim, index)
    elif op == "scatter":
        torch.scatter(base, dim, index, 0.0)
    # (unreachable unless eager accepts what the check refused)
    raise IndexError(f"index out of range for dimension {dim} with size {size[dim]} in {op}")


def _meta(index, size, dim, op):
    return None


def _meta_target(target, n, ignore):
    return None


_LIB.define("check_target(Tensor target, SymInt n, int ignore) -> ()")
_LIB.impl("check_index", check_index, "CompositeExplicitAutograd")
_LIB.impl("check_index", _meta, "Meta")
_LIB.impl("check_target", check_target, "CompositeExplicitAutograd")
_LIB.impl("check_target", _meta_target, "Meta")

CHECK_INDEX = torch.ops.janus_frame.check_index.default
CHECK_TARGET = torch.ops.janus_frame.check_target.default
