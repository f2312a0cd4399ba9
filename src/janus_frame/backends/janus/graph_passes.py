"""Rewrites of a functional aten graph before it is lowered.

In: an ``fx.GraphModule`` of decomposed aten ops with ``meta['val']`` on
every node.  Out: the same module when nothing applies, else a new module over
a rewritten copy of the graph (the caller's graph is never modified: an
inference graph may be the very module the frontend captured).

``fold_add_into_addmm``: ``add(mm(a, b), c)`` becomes ``addmm(c, a, b)`` when
the product has no other reader and ``c`` has the product's dtype and
broadcasts to its shape.  The library then adds ``c`` while writing the
product, instead of a separate pass reading two matrices and writing a third.
This matters where autograd sums per-use gradients of a weight: an LSTM
unrolled over T steps has, per weight, T matrix products summed by T - 1
adds of the whole gradient; folded, it is one chain of accumulating library
calls (and one live accumulator instead of T products).  The same holds for
``x @ w_ih + h @ w_hh`` in the forward graph.
"""
from __future__ import annotations

import torch
import torch.fx
from torch.fx.experimental.symbolic_shapes import statically_known_true

aten = torch.ops.aten


def _val(n):
    return n.meta.get("val") if isinstance(n, torch.fx.Node) else None


def _same_size(a, b) -> bool:
    # statically: comparing symbolic sizes with == would add shape guards
    # from inside the backend, after the frontend has rendered its guards
    return len(a) == len(b) and all(statically_known_true(x == y) for x, y in zip(a, b))


def _broadcasts_to(c, shape) -> bool:
    cs = list(c.shape)
    if len(cs) > len(shape):
        return False
    for x, y in zip(reversed(cs), reversed(list(shape))):
        if not (statically_known_true(x == 1) or statically_known_true(x == y)):
            return False
    return True


def _foldable(add):
    """(mm node, bias node) when ``add`` can become an addmm, else None."""
    if add.op != "call_function" or add.target is not aten.add.Tensor or len(add.args) != 2:
        return None
    if add.kwargs.get("alpha", 1) != 1:
        return None
    out = _val(add)
    if not isinstance(out, torch.Tensor):
        return None
    # prefer folding the later product into the earlier one: in a chain of
    # gradient sums the running sum is then always the bias operand
    for mm, c in ((add.args[1], add.args[0]), (add.args[0], add.args[1])):
        if not (isinstance(mm, torch.fx.Node) and mm.op == "call_function"
                and mm.target is aten.mm.default and len(mm.users) == 1):
            continue
        p, cv = _val(mm), _val(c)
        if not (isinstance(p, torch.Tensor) and isinstance(cv, torch.Tensor)):
            continue
        if cv.dtype != p.dtype or out.dtype != p.dtype or cv.device != p.device:
            continue
        if not p.dtype.is_floating_point or not _same_size(out.shape, p.shape):
            continue
        if not _broadcasts_to(cv, p.shape):
            continue
        return mm, c
    return None


def fold_add_into_addmm(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    if not any(_foldable(n) for n in gm.graph.nodes):
        return gm
    graph = torch.fx.Graph()
    env = {}
    out, old_output = graph.graph_copy(gm.graph, env, return_output_node=True)
    graph.output(out).meta = dict(old_output.meta)
    folded = 0
    for n in list(graph.nodes):
        hit = _foldable(n)
        if hit is None:
            continue
        mm, c = hit
        with graph.inserting_before(n):
            new = graph.call_function(aten.addmm.default, (c, mm.args[0], mm.args[1]))
        new.meta = dict(n.meta)
        n.replace_all_uses_with(new)
        graph.erase_node(n)
        graph.erase_node(mm)
        folded += 1
    return torch.fx.GraphModule(gm, graph)
