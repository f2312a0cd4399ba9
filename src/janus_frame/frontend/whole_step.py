"""``loss.backward()`` inside the graph: forward, backward and update as one step.

In: a ``loss.backward()`` call met while tracing (``trace_backward``), on a
loss computed in the open segment; later, that segment's graph
(``has_backward`` / ``lower``).
Out: while tracing, the gradients of the segment's leaf inputs as one
``torch.autograd.grad`` node, accumulated as autograd's AccumulateGrad
would: ``p.grad = g`` (an attribute store replayed after the graph) where
``.grad`` is None, ``p.grad.add_(g)`` where it is a tensor; later reads of
``p.grad`` (an optimizer's step traced next) see the new value.  Or None:
the call then runs natively, after the graph, as it always did (JF002).
Before the backend, ``lower`` traces such a graph to aten ops with
``make_fx`` (the backward's ops written out), so every backend gets a plain
graph; it is compiled and run with grad mode off (nothing in it is
differentiated again).

Why: a training step compiled as forward graph, native backward and a
separate optimizer graph pays an autograd node, a saved-activation handoff
and two graph calls per step; as one graph the backend schedules gradient
producers and the update together (JANUS traced one graph per iteration).

When it applies (anything else keeps today's break; the run-time half is the
guard built by ``_guard``):
- ``backward()`` with no arguments other than ``gradient=None``,
  ``retain_graph`` None/False, ``create_graph=False``, ``inputs=None``, on a
  one-element loss with history (which ops of the forward autograd
  recorded follows the grad mode of each, as traced: ``lower`` replays the
  graph from the mode the segment starts in);
- every input of the segment that requires grad is a leaf without tensor
  hooks (a non-leaf's gradient would flow on into autograd graphs built
  outside the segment), and no tensor made in the segment is a leaf that
  requires grad;
- no torch.distributed process group (DDP's reducer hooks the accumulation
  nodes, which cannot be seen from Python), anomaly mode off, no saved-tensor
  hooks, no torch-function mode or autocast in the segment.

Outputs of the step whose history the backward consumed (the loss, its
intermediates) keep a history whose backward raises eager's "backward
through the graph a second time" error; the backward is refused when the
loss's own history saved nothing (eager could differentiate it again).
What differs: an output that is an intermediate whose own part of the
history saved nothing can be differentiated again in eager; from the step
graph it raises.
"""
from __future__ import annotations

import collections
import contextlib

import torch
import torch.fx

from .breaks import GraphBreak
from .values import Const, TensorV, TupleV

_ARGS = ("gradient", "retain_graph", "create_graph", "inputs")

# backward calls traced into a graph (tests tell a traced step from a fallback)
counts: collections.Counter = collections.Counter()


def enabled(tx) -> bool:
    return tx.config.whole_step


def trace_backward(tx, loss: TensorV, args: list, kwargs: dict):
    """Record ``loss.backward()`` in the graph; Const(None) when done, None
    when the call must run natively."""
    out = tx.output
    if not enabled(tx) or not _plain_call(args, kwargs):
        return None
    fake = loss.fake
    if loss.node.op == "placeholder" or not fake.requires_grad or fake.grad_fn is None \
            or fake.numel() != 1:
        return None
    if out.tf_modes or out.autocast or out.native_autocast or not _ambient_ok():
        return None
    consumed = _history(fake.grad_fn)
    # a second backward through the consumed history: eager raises when the
    # history saved tensors (freed by the first); outputs of the step then
    # raise the same (``reconsumed``).  History with nothing saved could be
    # differentiated again, which the step graph cannot: refused.  (Read off
    # the nodes before the backward frees them: provoking the error instead
    # throws a C++ exception, which some environments cannot unwind.)
    if not _saves_tensors(fake.grad_fn):
        return None
    if any(_live_history(n.meta.get("example_value"), consumed) for n in out.graph.nodes):
        return None  # a value with autograd history the backward leaves alive
    leaves = []
    for v, real in out.inputs:
        if not (isinstance(real, torch.Tensor) and real.requires_grad):
            continue
        if real.grad_fn is not None or v.source is None or _hooked(real) \
                or v.node.graph is not out.graph:
            return None
        leaves.append((v, real))
    if not leaves or _leaf_made_in_graph(out.graph):
        return None
    try:
        grads = out.call("call_function", torch.autograd.grad,
                         (loss, TupleV([v for v, _ in leaves])), {"allow_unused": Const(True)})
    except GraphBreak:
        return None
    if not isinstance(grads, TupleV):
        return None
    out.backward_error = SECOND_BACKWARD
    _guard(out, [v for v, _ in leaves])
    counts["traced"] += 1
    out.backward_consumed = (out.backward_consumed or set()) | consumed
    for (v, real), g in zip(leaves, grads.items):
        if not isinstance(g, TensorV):
            continue  # not reached from the loss: its .grad stays as it is
        cur = v.get_attr(tx, "grad")
        if isinstance(cur, Const):
            cur.as_python()  # installs its guard: the step is traced for .grad None
        if isinstance(cur, TensorV):
            # AccumulateGrad adds into an existing .grad in place
            out.call("call_method", "add_", (cur, g), {})
        elif isinstance(cur, Const) and cur.as_python() is None:
            out.effects.store_attr(real, v.source, "grad", _obey_layout(out, v, g),
                                   through_descriptor=True)
        else:
            raise GraphBreak("JF022", f"{v.source.name()}.grad is neither None nor a tensor")
    return Const(None)


def node_key(f) -> tuple:
    """An autograd node's identity: its Python object is made anew at each
    access on some torch versions (2.11), so ``id()`` of it is not one."""
    return (type(f).__name__, f._sequence_nr(), len(f.next_functions))


def _nodes(fn):
    """The autograd nodes reachable from ``fn``, each once."""
    seen, stack = set(), [fn]
    while stack:
        f = stack.pop()
        if f is None or node_key(f) in seen:
            continue
        seen.add(node_key(f))
        yield f
        stack.extend(nf for nf, _ in f.next_functions)


def _history(fn) -> set:
    """Keys of the autograd nodes reachable from ``fn``."""
    return {node_key(f) for f in _nodes(fn)}


def _live_history(val, consumed) -> bool:
    vals = val if isinstance(val, (tuple, list)) else (val,)
    return any(isinstance(t, torch.Tensor) and t.grad_fn is not None
               and node_key(t.grad_fn) not in consumed for t in vals)


def refuse_new_history(val, what: str) -> None:
    """After a backward traced into the graph, the graph runs with grad mode
    off: an operation that would start new autograd history (a forward after
    the step, reading updated parameters with grad mode on) ends the graph
    before it, so that it runs where autograd records it."""
    if _live_history(val, set()):
        raise GraphBreak("JF002", f"{what} builds autograd history after a backward "
                         "traced into the graph")


# autograd's error for a backward through freed saved tensors (engine.cpp /
# saved_variable.cpp, the same text from torch 2.11 to 2.15)
SECOND_BACKWARD = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward.")


def _saves_tensors(fn) -> bool:
    """Does the history from ``fn`` hold saved tensors (``_saved_*`` of the
    generated nodes, ``saved_tensors`` of custom Functions)?"""
    for f in _nodes(fn):
        for name in dir(f):
            if name.startswith("_saved_") or name == "saved_tensors":
                try:
                    v = getattr(f, name)
                except Exception:  # noqa: BLE001 -- already freed: it did save
                    return True
                vals = v if isinstance(v, (tuple, list)) else (v,)
                if any(isinstance(t, torch.Tensor) for t in vals):
                    return True
    return False


class _Consumed(torch.autograd.Function):
    """The history of a step output whose graph the step's backward consumed:
    differentiating it again raises eager's error."""

    @staticmethod
    def forward(ctx, t, anchor, message):
        ctx.message = message
        return t.detach()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(ctx.message)


_ANCHOR = None


def _anchor():
    global _ANCHOR
    if _ANCHOR is None:
        _ANCHOR = torch.empty(0, requires_grad=True)
    return _ANCHOR


def consumed_outputs(gm: torch.fx.GraphModule, output) -> tuple:
    """Positions of the graph's outputs that have autograd history in eager,
    history the traced backward consumed."""
    consumed = output.backward_consumed or set()
    (outs,) = [n.args[0] for n in gm.graph.nodes if n.op == "output"]
    pos = []
    for i, n in enumerate(outs if isinstance(outs, (tuple, list)) else (outs,)):
        val = n.meta.get("example_value") if isinstance(n, torch.fx.Node) else None
        if isinstance(val, torch.Tensor) and val.grad_fn is not None \
                and node_key(val.grad_fn) in consumed:
            pos.append(i)
    return tuple(pos)


def _plain_call(args, kwargs) -> bool:
    if len(args) > len(_ARGS):
        return False
    bound = dict(zip(_ARGS, args))
    for k, a in kwargs.items():
        if k not in _ARGS or k in bound:
            return False
        bound[k] = a
    for k, a in bound.items():
        if not isinstance(a, Const):
            return False
        py = a.as_python()
        if py is not None and not (k in ("retain_graph", "create_graph") and py is False):
            return False
    return True


def _hooked(t: torch.Tensor) -> bool:
    return bool(t._backward_hooks) or bool(getattr(t, "_post_accumulate_grad_hooks", None))


def _saved_tensor_hooks_active() -> bool:
    from ..torch_compat import saved_tensors_hooks_active

    return saved_tensors_hooks_active()


def _ambient_ok() -> bool:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return False
    return not torch.is_anomaly_enabled() and not _saved_tensor_hooks_active()


def whole_step_ok(tensors) -> bool:
    """Run-time half of the conditions: the leaves are still leaves without
    hooks, and the ambient autograd state still allows the step graph."""
    for t in tensors:
        if t.grad_fn is not None or _hooked(t):
            return False
    return _ambient_ok()


def _guard(out, leaves) -> None:
    k = out.guards.fb.const
    exprs = ", ".join(v.source.expr() for v in leaves)
    out.guards.add(f"{k(whole_step_ok)}(({exprs},))",
                   "the backward in the graph: " + ", ".join(v.source.name() for v in leaves)
                   + " are leaves without hooks; no process group, anomaly mode or "
                   "saved-tensor hooks")


def _leaf_made_in_graph(graph: torch.fx.Graph) -> bool:
    for n in graph.nodes:
        if n.op == "placeholder":
            continue
        val = n.meta.get("example_value")
        if isinstance(val, torch.Tensor) and val.requires_grad and val.grad_fn is None:
            return True
    return False


def _obey_layout(out, v: TensorV, g: TensorV) -> TensorV:
    """``g`` with the parameter's strides, as AccumulateGrad stores a new
    ``.grad`` (it copies a gradient laid out otherwise)."""
    pf, gf = v.fake, g.fake
    sym = any(isinstance(s, torch.SymInt) for s in (*pf.stride(), *gf.stride()))
    if not sym and tuple(pf.stride()) == tuple(gf.stride()):
        return g
    like = out.call("call_function", torch.empty_like, (v,), {})
    return out.call("call_method", "copy_", (like, g), {})


# -- the graph ---------------------------------------------------------------

def has_backward(gm: torch.fx.GraphModule) -> bool:
    return any(n.op == "call_function" and n.target is torch.autograd.grad
               for n in gm.graph.nodes)


def lower(gm: torch.fx.GraphModule, example, grad_enabled: bool) -> torch.fx.GraphModule:
    """``gm`` traced to aten ops, its backward written out: the graph's inputs
    are the placeholders' fake values (symbolic sizes kept); ``grad_enabled``:
    the grad mode the segment starts in (the graph records only switches)."""
    from ..torch_compat import detect_fake_mode, make_fx

    vals = [n.meta.get("example_value") for n in gm.graph.nodes if n.op == "placeholder"]
    if any(v is None for v in vals):
        vals = list(example)
    symbolic = any(isinstance(s, torch.SymInt) for v in vals if isinstance(v, torch.Tensor)
                   for s in (*v.shape, *v.stride()))
    fake_mode = detect_fake_mode(vals)

    def step(*args):
        with torch.set_grad_enabled(grad_enabled):
            return gm(*args)

    with fake_mode if fake_mode is not None else contextlib.nullcontext():
        return make_fx(step, tracing_mode="symbolic" if symbolic else "fake",
                       _allow_non_fake_inputs=True)(*vals)


def without_grad(fn, reconsumed: tuple = (), message: str = ""):
    """``fn`` called with grad mode off: the step's gradients are computed by
    the graph itself; autograd must record nothing around it.  Outputs at
    ``reconsumed`` get a history whose backward raises ``message``, as
    eager's consumed history does."""
    no_grad, enable_grad, apply = torch.no_grad, torch.enable_grad, _Consumed.apply

    def run(*args):
        with no_grad():
            outs = fn(*args)
        if reconsumed:
            outs = list(outs)
            with enable_grad():
                for i in reconsumed:
                    outs[i] = apply(outs[i], _anchor(), message)
        return outs

    run.__wrapped__ = fn
    return run
