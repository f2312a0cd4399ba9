"""Run-time checks that generated code relies on.

In: nothing.  Out: ``CHECK_INDEX``, the op
``janus_frame::check_index(Tensor index, SymInt[] size, int dim, str op) -> ()``
that the lowerings of gathering and scattering ops (``gather``,
``index_select``, ``scatter``; ``op`` names the eager op whose error to
raise, ``nll_loss`` for the gather of its class targets) put before the
kernel reading or writing at their data-dependent index, and ``check_index``, the function the runtime
wrapper calls for it directly.

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
    n = size[dim]
    if lo < 0 or hi >= n:
        _raise_eager(index, size, dim, op)


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


_LIB.impl("check_index", check_index, "CompositeExplicitAutograd")
_LIB.impl("check_index", _meta, "Meta")

CHECK_INDEX = torch.ops.janus_frame.check_index.default
