"""Parameter gradients of small graphs summed once, at the end of backward.

In: a partitioned backward graph (fx, aten; outputs in the order of the
forward inputs) and the positions of the forward inputs that are leaves
requiring grad (parameters).
Out: :func:`plan` gives, per parameter whose gradient the graph computes as a
thin product ``L @ R`` (inner dimension at most ``THIN``: one tree node's or
one RNN step's batch), a sum over a thin first axis (a bias) or rows added
into a zero table (an embedding), a
:class:`Deferred` spec, plus a variant of the backward graph that returns
those factors in place of the dense gradients.  At run time :func:`usable`
says whether this backward call may use the variant and :func:`stash` takes
its factors.

Why: a recursive or step-by-step model calls the same small graph many times
per training step.  Each backward call then writes a dense gradient for every
weight (a 640x128 outer product for one TreeLSTM node) and autograd adds it
into ``.grad``: two passes over the weight per call, 15 us of a node's
backward.  Because ``sum_n L_n @ R_n == cat(L) @ cat(R)``, the factors of every
call are kept and one product per weight runs when the backward pass ends
(autograd's ``queue_callback``), reading and writing the gradient once
(TreeLSTM step: 5.0 -> 4.6 ms; 94 -> 51 matrix products, 95 -> 23 additions).
An embedding's gradient (a zero table with the looked-up rows added: written,
copied by the out-of-place ``index_put`` and added into ``.grad``, 128 KB
three times per TreeLSTM leaf) becomes one ``index_put_`` of all rows into
``.grad`` (4.6 -> 4.05 ms).

When: only in a ``.backward()`` that accumulates into the parameter's
``.grad`` (``torch._C._will_engine_execute_node`` on its AccumulateGrad node;
not ``autograd.grad``, not ``backward(inputs=...)`` leaving it out, not
``create_graph``), for parameters with no hooks, and never while
``torch.distributed`` is initialised; otherwise the dense variant runs as
usual.  The difference that remains: ``.grad`` of such a parameter is
written when the pass ends, not when its last contribution arrives, so code
reading ``.grad`` during the pass, or a hook registered on the AccumulateGrad
node itself (which cannot be seen from Python), sees it late; the
``defer_grads`` option (``JANUS_FRAME_DEFER_GRADS=0``), read per backward
call, turns this off.  Factors are kept per thread and per backward pass
(graph task id), so a nested backward (reentrant checkpointing) flushes only
its own; a pass that raised never flushes, and its factors are dropped after
a few later passes.
"""
from __future__ import annotations

import functools
import threading

import torch
import torch.fx

from ....torch_compat import current_graph_task_id, will_engine_execute_node
from .graph import _restride
from .untraced import never_traced

aten = torch.ops.aten

THIN = 16  # largest inner dimension (rows per call) worth deferring
_VIEWS = {aten.permute.default, aten.t.default, aten.view.default, aten.reshape.default,
          aten._unsafe_view.default, aten.alias.default, aten.squeeze.dim,
          aten.unsqueeze.default}


class Deferred:
    """How parameter ``index``'s gradient is rebuilt from stacked factors:
    ``kind`` "mm" (factors L [M, k], R [k, N]: ``L @ R``), "sum" (factor A
    [k, ...]: ``A.sum(0, keepdim)``) or "index" (factors idx [k], rows
    [k, ...]: rows added at idx, straight into ``.grad``), then the view ops
    of ``chain``."""

    __slots__ = ("index", "kind", "keepdim", "chain", "nfactors", "key")

    def __init__(self, index, kind, keepdim, chain):
        self.index = index
        self.kind = kind
        self.keepdim = keepdim
        self.chain = chain
        self.nfactors = 1 if kind == "sum" else 2
        self.key = (kind, keepdim, tuple((str(op), repr(args)) for op, args in chain))


def _static(x):
    if isinstance(x, (list, tuple)):
        return all(_static(v) for v in x)
    return isinstance(x, (int, bool)) and not isinstance(x, torch.SymInt)


def _thin(node, dim):
    v = node.meta.get("val")
    return isinstance(v, torch.Tensor) and v.dim() == 2 and isinstance(v.shape[dim], int) \
        and v.shape[dim] <= THIN


def _scatter_of_rows(node):
    """``index_put(zeros, [idx], rows, accumulate=True)``: an embedding's (or
    any row gather's) gradient, a dense zero tensor with a few rows added."""
    base, indices, rows = node.args[:3]
    accumulate = node.args[3] if len(node.args) > 3 else False
    if not (accumulate is True and isinstance(base, torch.fx.Node) and len(base.users) == 1
            and base.target is aten.full.default and base.args[1] == 0
            and len(indices) == 1 and isinstance(indices[0], torch.fx.Node)):
        return False
    b, i, r = base.meta.get("val"), indices[0].meta.get("val"), rows.meta.get("val")
    return (isinstance(b, torch.Tensor) and isinstance(i, torch.Tensor) and isinstance(r, torch.Tensor)
            and i.dtype == torch.int64 and i.dim() == 1 and _static(list(b.shape) + list(r.shape))
            and list(r.shape) == [i.shape[0]] + list(b.shape[1:]))


def plan(bw_gm: torch.fx.GraphModule, params):
    """``(specs, variant)``: the deferrable gradients among positions
    ``params`` of ``bw_gm``'s outputs, and the backward graph returning their
    factors (appended to its outputs, the dense gradients replaced by None);
    ``([], None)`` when there are none."""
    outs = list(bw_gm.graph.output_node().args[0])
    found = []
    for p in params:
        node, chain = outs[p], []
        while (isinstance(node, torch.fx.Node) and node.target in _VIEWS
               and len(node.users) == 1 and _static(node.args[1:]) and not node.kwargs):
            chain.append((node.target, tuple(node.args[1:])))
            node = node.args[0]
        if not isinstance(node, torch.fx.Node) or len(node.users) != 1 or node.kwargs:
            continue
        if node.target is aten.mm.default and _thin(node.args[0], 1):
            found.append((Deferred(p, "mm", False, chain[::-1]), list(node.args)))
        elif node.target is aten.index_put.default and not chain and _scatter_of_rows(node):
            found.append((Deferred(p, "index", False, []), [node.args[1][0], node.args[2]]))
        elif (node.target is aten.sum.dim_IntList and list(node.args[1]) == [0]
              and _thin(node.args[0], 0)):
            keepdim = bool(node.args[2]) if len(node.args) > 2 else False
            found.append((Deferred(p, "sum", keepdim, chain[::-1]), [node.args[0]]))
    if not found:
        return [], None
    g = torch.fx.Graph()
    env = {}
    for n in bw_gm.graph.nodes:
        if n.op != "output":
            env[n] = g.node_copy(n, lambda a: env[a])
    deferred = {spec.index for spec, _ in found}
    new_outs = [None if i in deferred else (env[o] if isinstance(o, torch.fx.Node) else o)
                for i, o in enumerate(outs)]
    for _, factors in found:
        new_outs += [env[f] for f in factors]
    g.output(tuple(new_outs))
    g.eliminate_dead_code()
    return [spec for spec, _ in found], torch.fx.GraphModule(bw_gm, g)


def usable(params, nodes, options) -> bool:
    """Whether this backward call may leave these parameters' gradients to
    the end-of-pass sum: ``options.defer_grads`` is on, it runs in a
    ``.backward()`` that accumulates into each one's ``.grad`` (``nodes``:
    their AccumulateGrad nodes), no hook watches them, and their ``.grad`` is
    absent or a plain dense tensor."""
    if torch.is_grad_enabled():
        return False  # create_graph: gradients must carry history
    if not options.defer_grads or _distributed():
        return False  # (DDP/FSDP/ZeRO hook the AccumulateGrad nodes and read .grad mid-pass)
    for w, node in zip(params, nodes):
        if not w.is_leaf or w._backward_hooks or getattr(w, "_post_accumulate_grad_hooks", None):
            return False  # (a graph compiled for a parameter may be called with an intermediate)
        g = w.grad
        if g is not None and (g.requires_grad or g.layout != torch.strided or g.shape != w.shape
                              or g.dtype != w.dtype):
            return False
        try:
            if node is None or not will_engine_execute_node(node):
                return False
        except RuntimeError:
            return False  # torch.autograd.grad(): gradients are returned, not accumulated
    return True


def _distributed():
    return _dist_probe()()


@functools.lru_cache(maxsize=None)
def _dist_probe():
    """``torch.distributed.is_initialized`` (looked up once), or a stand-in
    where torch is built without it."""
    dist = getattr(torch, "distributed", None)
    if dist is None or not dist.is_available():
        return lambda: False
    return dist.is_initialized


class _State(threading.local):
    def __init__(self):
        self.passes = {}  # graph task id -> {(id(w), key): [w, spec, [factors...]]}


_state = _State()
_LOCK = threading.Lock()
counts = {"calls": 0, "sums": 0}  # backward calls deferred, gradients summed at pass end
_MAX_PENDING = 4  # passes that raised never flush: forget the oldest beyond this


def stash(params, specs, factors):
    """Keep the factors of one backward call until its pass ends."""
    counts["calls"] += 1
    tid = current_graph_task_id()
    passes = _state.passes
    groups = passes.get(tid)
    if groups is None:
        if len(passes) >= _MAX_PENDING:
            del passes[min(passes)]
        groups = passes[tid] = {}
        torch.autograd.Variable._execution_engine.queue_callback(functools.partial(_flush, tid))
    i = 0
    for w, spec in zip(params, specs):
        k = (id(w), spec.key)
        entry = groups.get(k)
        if entry is None:
            entry = groups[k] = [w, spec, []]
        entry[2].append(factors[i:i + spec.nfactors])
        i += spec.nfactors


def _flush(tid):
    groups = _state.passes.pop(tid, None)
    if not groups:
        return
    # passes on other threads may add into the same .grad (AccumulateGrad
    # holds a lock per parameter for the same reason)
    with _LOCK, torch.no_grad():
        for w, spec, calls in groups.values():
            if spec.kind == "index":
                _add_rows(w, calls)
            else:
                _accumulate(w, _gradient(spec, calls))
            counts["sums"] += 1


never_traced(_flush)  # called by the engine (see runtime.never_traced)


def _stacked(calls, k, dim=0):
    """Factor ``k`` of every call, concatenated along ``dim`` (no copy for one call)."""
    return calls[0][k] if len(calls) == 1 else torch.cat([c[k] for c in calls], dim)


def _gradient(spec, calls):
    if spec.kind == "mm":
        g = torch.mm(_stacked(calls, 0, 1), _stacked(calls, 1))
    else:
        g = _stacked(calls, 0).sum(0, keepdim=spec.keepdim)
    for op, args in spec.chain:
        g = op(g, *args)
    return g


def _accumulate(w, g):
    """``w.grad += g`` as AccumulateGrad does it: the first gradient is taken
    over (laid out like the parameter), later ones are added in place."""
    if w.grad is None:
        b = g._base
        if b is not None and b.shape == g.shape and b.stride() == g.stride() \
                and b.storage_offset() == g.storage_offset():
            g = b  # a chain of transposes that cancel out
        if g.stride() != w.stride() or g._base is not None:
            g = _restride(g, w.stride())
        w.grad = g
    else:
        w.grad.add_(g)


def _add_rows(w, calls):
    if w.grad is None:
        w.grad = torch.zeros_like(w, memory_format=torch.preserve_format)
    w.grad.index_put_((_stacked(calls, 0),), _stacked(calls, 1), accumulate=True)
