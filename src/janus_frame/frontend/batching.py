"""Which segments a recursion's batching may record (the run-time side is
janus_frame/batching.py).

In: a closed segment (segment.py).
Out: ``segment_mode`` -- ``record`` (a pure graph call whose only exit is a
return or a recursive call), ``transit`` (no graph, the same exits) or
``abort`` (anything else: its replacement drops a recording that reaches
it); ``plan_for`` -- the run-time plan of a recordable segment.
"""
from __future__ import annotations

import copy

import torch

from ..backends import is_fusing
from ..batching import Plan


# -- which segments are recorded -----------------------------------------------------------


def segment_mode(seg, why: bool = False) -> str:
    """``record``: the segment's graph call can be deferred; ``transit``: no
    graph, and nothing but a return or a recursive call; ``abort``: it
    cannot run while recording (``why``: the reason instead)."""
    if seg.replay:
        return "side effects" if why else "abort"
    if seg.rb.loop_guard is not None or seg.checks:
        return "a loop or a speculated branch" if why else "abort"
    brk = seg.brk
    if brk is not None and not seg.frame.batchable_call:
        return f"break {brk.id}" if why else "abort"
    if seg.graph is None:
        return "transit"
    undo = seg.undo
    if undo is None or undo.inputs or undo.random or seg.output.sym_inputs:
        return "in-place updates, random numbers or dynamic sizes" if why else "abort"
    if _out_meta(seg.graph) is None:
        return "outputs other than tensors of static sizes" if why else "abort"
    return "record"


def _out_meta(gm):
    out = next(n for n in reversed(gm.graph.nodes) if n.op == "output")
    meta = []
    for o in out.args[0]:
        v = getattr(o, "meta", {}).get("example_value")
        if not isinstance(v, torch.Tensor):
            return None
        if not all(type(s) is int for s in (*v.shape, *v.stride())):
            return None
        meta.append((tuple(v.shape), tuple(v.stride()), v.dtype, v.device, v.requires_grad))
    return meta


def plan_for(seg, backend):
    """The plan of a recordable segment (before the backend sees its graph:
    the captured graph is copied, a backend may rewrite it in place).
    ``backend``: the segment's; the fusing backend also compiles the batched
    graphs."""
    if segment_mode(seg) != "record":
        return None
    gm = seg.graph
    return Plan(torch.fx.GraphModule(gm, copy.deepcopy(gm.graph)), _out_meta(gm),
                seg.code.co_qualname, backend if is_fusing(backend) else None)
