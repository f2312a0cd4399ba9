"""Training graphs run through one lean ``autograd.Function`` per graph.

In: an ``fx.GraphModule`` (inputs as placeholders; fake values in
``meta['val']`` when sizes are symbolic), its real example inputs, the
function compiling one aten graph (``pipeline.compile_graph``, passed in: the
pipeline imports this module) and the backend's options.
Out: a callable with the graph's calling convention whose outputs carry
autograd history, or ``None`` when the graph needs AOTAutograd's runtime.

AOTAutograd traces the joint forward/backward graph (functionalised,
decomposed, with one tangent per differentiable output) and the min-cut
partitioner splits it, exactly as on the ``aot_module_simplified`` path; both
halves are compiled by ``compile_graph`` (the backward on its first use).  Data
mutations of inputs that do not require grad (buffers, running statistics)
stay in the forward graph as ``copy_`` nodes; their version counters are
moved after the call.  What differs is the run time.  AOTAutograd's wrappers
handle other input mutations, outputs aliasing inputs or each other, tensor
subclasses, functionalised RNG and effect tokens, and they cost ~12 us per
forward call and ~60 us per backward call (a TreeLSTM node's graphs) whether a
graph needs them or not: a TreeLSTM step calls 33 small graphs and ran 6.8 ms
through them, 5.0 ms without.  A graph that needs none of that (the common case) runs through
:class:`_Compiled`: the forward graph's outputs are the user's outputs
followed by the values saved for backward; the backward graph takes saved
values and tangents by name.
Any other graph returns ``None`` here and the caller uses AOTAutograd's
runtime unchanged.
"""
from __future__ import annotations

import logging

import torch
import torch.fx

from ....torch_compat import DelayedError, OpOverload, are_functorch_transforms_active
from .grad_accumulation import plan as plan_deferred, stash, usable
from .graph import _restride
from .untraced import never_traced, stand_aside

log = logging.getLogger("janus_frame.backend")


class _Plan:
    """What one compiled training graph needs at run time (fixed at compile time)."""

    __slots__ = ("fw", "bw", "make_bw", "n_out", "saved", "syms", "non_diff",
                 "gather", "params", "deferred", "bw_deferred",
                 "make_bw_deferred", "n_grads", "edges", "options", "rerun")

    def __init__(self, options):
        self.options = options  # read per backward call (defer_grads)
        self.bw = None
        # the captured graph, when running it again gives the same outputs
        # (no input updated in place, no random draws): a backward that must
        # itself be differentiable differentiates a re-run of it
        self.rerun = None
        self.params = ()
        self.deferred = None
        self.bw_deferred = None


class _Compiled(torch.autograd.Function):
    """Forward: the compiled forward graph; backward: the compiled backward.

    ``plan.saved`` is the slice of forward outputs that are tensors saved for
    backward (through ``save_for_backward``, so in-place changes to them
    before backward raise as in eager), ``plan.syms`` the slice of saved sizes.
    ``plan.gather(saved, grads)`` lists the backward graph's inputs (see
    :func:`_gatherer`).
    """

    @staticmethod
    def forward(ctx, plan, *args):
        outs = plan.fw(*args)
        ctx.plan = plan
        if plan.rerun is not None:
            ctx.inputs = args
        ctx.save_for_backward(*outs[plan.saved])
        if plan.syms is not None:
            ctx.syms = outs[plan.syms]
        if plan.params:
            ctx.params = [args[i] for i in plan.params]
        user = outs[:plan.n_out]
        if plan.non_diff:
            ctx.mark_non_differentiable(*[user[i] for i in plan.non_diff])
        return user

    @staticmethod
    def backward(ctx, *grads):
        plan = ctx.plan
        saved = ctx.saved_tensors
        if plan.syms is not None:
            saved = saved + tuple(ctx.syms)
        args = plan.gather(saved, grads)
        if plan.deferred is not None and usable(
                ctx.params, [ctx.next_functions[i][0] for i in plan.edges], plan.options):
            res = (plan.bw_deferred or _build_deferred(plan))(*args)
            n = plan.n_grads
            stash(ctx.params, plan.deferred, res[n:])
            return (None, *res[:n])
        bw = plan.bw or _build_backward(plan)
        if not torch.is_grad_enabled():
            return (None, *bw(*args))
        if plan.rerun is not None:
            # create_graph=True: the gradients must carry history; the
            # captured graph's ops, run again on the inputs, have it
            return (None, *_differentiable_grads(plan.rerun, ctx.inputs, grads))
        # the compiled backward has no derivative of its own, so its results
        # carry a node that raises when differentiated
        with torch.no_grad():
            res = bw(*args)
        return (None, *_not_differentiable(res))


def _differentiable_grads(gm, inputs, grads) -> list:
    """The gradients of ``gm``'s outputs at ``inputs`` for the output
    gradients ``grads``, with history (``create_graph=True``)."""
    with torch.enable_grad():
        # each input through an alias of its own: the gradient with respect
        # to the alias is this graph's part alone (with respect to the input
        # itself, it would also count the paths through the history of the
        # other inputs: a parameter used by an earlier step too), and the
        # alias links it back to the input for the next differentiation
        inputs = [x.view_as(x) if isinstance(x, torch.Tensor) and x.requires_grad else x
                  for x in inputs]
        outs = gm(*inputs)
    wrt = [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.requires_grad]
    if not isinstance(outs, (tuple, list)):
        outs = (outs,)
    pairs = [(o, g) for o, g in zip(outs, grads)
             if isinstance(o, torch.Tensor) and o.requires_grad and g is not None]
    res = [None] * len(inputs)
    if wrt and pairs:
        got = torch.autograd.grad([o for o, _ in pairs], [inputs[i] for i in wrt],
                                  [g for _, g in pairs], create_graph=True, allow_unused=True)
        for i, g in zip(wrt, got):
            res[i] = g
    return res


_DOUBLE = (b"janus_frame: the backward of a compiled graph cannot be differentiated again "
           b"(double backward through torch.autograd.grad(..., create_graph=True)); "
           b"run this function uncompiled for higher-order gradients")


def _not_differentiable(res):
    idx = [i for i, r in enumerate(res) if isinstance(r, torch.Tensor)]
    if not idx:
        return res
    marked = DelayedError(_DOUBLE, len(idx))(
        *[res[i].detach().requires_grad_(True) for i in idx])
    if not isinstance(marked, tuple):
        marked = (marked,)
    out = list(res)
    for i, m in zip(idx, marked):
        out[i] = m
    return out


def _gatherer(bw_args, tangent_of, layouts):
    """``gather(saved, grads)``: the backward graph's inputs in order, from
    the saved values and autograd's gradients of the outputs (generated once
    per graph: a Python loop over them cost more than the rest of a small
    backward's bookkeeping).  The kernels index tangents with the strides
    they were traced with; autograd may hand over another layout (an expanded
    gradient from ``y.sum().backward()``), which is copied into that one."""
    items = []
    for is_saved, i in bw_args:
        if is_saved:
            items.append(f"saved[{i}]")
        elif layouts[i] is None:
            items.append(f"_contiguous(grads[{tangent_of[i]}])")
        else:
            items.append(f"_restride(grads[{tangent_of[i]}], {layouts[i]!r})")
    src = f"def gather(saved, grads):\n    return ({', '.join(items)}{',' if len(items) == 1 else ''})\n"
    ns = {"_contiguous": _contiguous, "_restride": _restride_to}
    exec(compile(src, "<janus_frame backward inputs>", "exec"), ns)
    return ns["gather"]


def _contiguous(g):
    return g if g.is_contiguous() else g.contiguous()


def _restride_to(g, strides):
    return g if g.stride() == strides else _restride(g, strides)


def _build_backward(plan):
    # (two threads in their first backward may both build it: the disk
    # cache makes the second build a load)
    plan.bw = plan.make_bw()
    return plan.bw


def _build_deferred(plan):
    plan.bw_deferred = plan.make_bw_deferred()
    return plan.bw_deferred


# run by the autograd engine, possibly inside a frame torch.compile is tracing
never_traced(_Compiled.forward, _Compiled.backward, _contiguous, _restride_to)


def lazy_backward(build, graph, graphs, on_error):
    """The callable for a backward ``graph``, built on its first use.

    That use is inside autograd's backward (the user's ``loss.backward()``),
    where an internal error would reach the user: so ``build(graph)`` (a
    CompiledGraph) is compiled and its kernels loaded here, and after any
    error ``on_error(exc)`` records the fallback (it raises under
    ``strict``) and the graph runs eagerly, as the forward graph of a
    refused compile does.  ``graphs`` collects what was built."""
    try:
        cg = build(graph)
        cg._prepare()
    except Exception as e:  # noqa: BLE001 -- never break the user's backward
        on_error(e)
        return stand_aside(graph)
    graphs.append(cg)
    return stand_aside(cg.__call__)


def compile_lean(gm, example_inputs, compile_graph, device, options, on_error):
    """The compiled training callable for ``gm``, or ``None`` when the graph
    needs AOTAutograd's runtime (see the module docstring).  Its
    ``janus_graphs`` lists the CompiledGraphs, the backward ones once built.
    ``on_error(exc)``: a backward graph failed to build on its first use
    (see :func:`lazy_backward`)."""
    from ....torch_compat import (
        OutputType, PlainAOTOutput, TangentAOTInput, aot_export_function,
        input_mutation_needs_runtime, min_cut_rematerialization_partition)

    from ..passes.decomp import decomposition_table

    if any(n.op == "get_attr" for n in gm.graph.nodes):
        return None  # parameters as attributes: their grads need AOTAutograd's lifting
    vals = [n.meta.get("val", n.meta.get("example_value"))
            for n in gm.graph.nodes if n.op == "placeholder"]
    if len(vals) != len(example_inputs):
        return None
    if any(v is None for v in vals):
        vals = list(example_inputs)  # static sizes: traced from the real inputs
    for v, x in zip(vals, example_inputs):
        if isinstance(x, torch.Tensor) != isinstance(v, torch.Tensor):
            return None
        if isinstance(x, torch.Tensor) and (v.requires_grad != x.requires_grad
                                            or type(x) not in (torch.Tensor, torch.nn.Parameter)):
            return None
    try:
        with torch.enable_grad():
            joint, meta, _, _ = aot_export_function(
                gm, tuple(vals), decompositions=decomposition_table(), trace_joint=True,
                keep_input_mutations=True)
    except Exception as e:  # noqa: BLE001 -- export refuses what AOTAutograd's runtime handles
        log.debug("lean training path refused (%r): AOTAutograd runtime", e)
        return None
    # export-mode tracing records dtype conversions as metadata assertions
    # (no result, nothing to compute): checked at trace time already
    for n in list(joint.graph.nodes):
        if n.op == "call_function" and n.target is torch.ops.aten._assert_tensor_metadata.default \
                and not n.users:
            joint.graph.erase_node(n)
    joint.recompile()
    # data mutations AOTAutograd keeps in the graph (inputs not requiring
    # grad, or mutated under no_grad: buffers, running statistics) are
    # copy_ nodes of the forward graph, done by its kernels; any other
    # mutation needs AOTAutograd's epilogue
    if (any(input_mutation_needs_runtime(i) for i in meta.input_info)
            or any(o.output_type != OutputType.non_alias for o in meta.output_info)
            or meta.num_intermediate_bases or meta.tokens or meta.is_rng_op_functionalized):
        return None
    tangent_of = []
    for d in meta.traced_tangents_descs:
        if not (isinstance(d, TangentAOTInput) and isinstance(d.output, PlainAOTOutput)):
            return None
        tangent_of.append(d.output.idx)
    placeholders = [n for n in joint.graph.nodes if n.op == "placeholder"]
    n_primals = sum(1 for n in placeholders if n.name.startswith("primals"))
    if n_primals != len(vals) or len(placeholders) != n_primals + len(tangent_of):
        return None
    n_out = len(meta.output_info)
    fw_gm, bw_gm = min_cut_rematerialization_partition(joint, None, num_fwd_outputs=n_out)

    fw_outs = list(fw_gm.graph.output_node().args[0])
    saved_names = [getattr(o, "name", None) for o in fw_outs[n_out:]]
    saved_vals = [o.meta.get("val") for o in fw_outs[n_out:]]
    n_tensors = 0
    while n_tensors < len(saved_vals) and isinstance(saved_vals[n_tensors], torch.Tensor):
        n_tensors += 1
    if not all(isinstance(v, (torch.SymInt, int)) for v in saved_vals[n_tensors:]):
        return None  # opaque objects or tensors after sizes: not a layout we know
    if any(o.meta.get("saved_tensor_with_no_vc_check") for o in fw_outs[n_out:]):
        return None
    plan = _Plan(options)
    plan.n_out = n_out
    if not any(i.mutates_data or i.mutates_metadata for i in meta.input_info) and not any(
            n.op == "call_function" and isinstance(n.target, OpOverload)
            and torch.Tag.nondeterministic_seeded in n.target.tags
            for n in joint.graph.nodes):
        plan.rerun = gm
    plan.saved = slice(n_out, n_out + n_tensors)
    plan.syms = slice(n_out + n_tensors, len(fw_outs)) if n_tensors < len(saved_vals) else None
    plan.non_diff = tuple(i for i, (o, info) in enumerate(zip(fw_outs[:n_out], meta.output_info))
                          if isinstance(o, torch.fx.Node) and isinstance(o.meta.get("val"), torch.Tensor)
                          and not info.requires_grad)
    bw_args = []
    layouts = []
    k = 0
    for n in bw_gm.graph.nodes:
        if n.op != "placeholder":
            continue
        if n.name.startswith("tangents"):
            v = n.meta.get("val")
            if not isinstance(v, torch.Tensor):
                return None
            strides = None  # contiguous
            if not v.is_contiguous():
                # traced with its output's layout (a transposed output)
                strides = tuple(v.stride())
                if not all(isinstance(st, int) for st in strides):
                    return None
            layouts.append(strides)
            bw_args.append((False, k))
            k += 1
        elif n.name in saved_names:
            bw_args.append((True, saved_names.index(n.name)))
        else:
            return None
    if k != len(tangent_of):
        return None
    plan.gather = _gatherer(bw_args, tangent_of, layouts)

    fw = compile_graph(fw_gm, device)
    fw._prepare()  # built now: a failure falls back here, not in the user's first call
    graphs = [fw]
    plan.fw = stand_aside(fw.__call__)

    # a saved input the forward range-checked is read by the backward as
    # the same tensor (saved with save_for_backward: version-checked)
    prechecked = frozenset(k for k in getattr(fw.prog, "input_checks", ())
                           if k[0] in saved_names)

    def build(g):
        if prechecked:
            return compile_graph(g, device, prechecked=prechecked)
        return compile_graph(g, device)

    def make_bw():
        return lazy_backward(build, bw_gm, graphs, on_error)

    plan.make_bw = make_bw
    leaves = [i for i, x in enumerate(example_inputs)
              if isinstance(x, torch.Tensor) and x.is_leaf and x.requires_grad]
    specs, variant = plan_deferred(bw_gm, leaves)
    if specs:
        plan.deferred = specs
        plan.params = tuple(spec.index for spec in specs)
        # the backward node's next_functions list the tensor inputs only
        tensor_pos = {i: k for k, i in enumerate(
            i for i, x in enumerate(example_inputs) if isinstance(x, torch.Tensor))}
        plan.edges = tuple(tensor_pos[i] for i in plan.params)
        plan.n_grads = len(vals)

        def make_bw_deferred():
            return lazy_backward(build, variant, graphs, on_error)

        plan.make_bw_deferred = make_bw_deferred
    apply = _Compiled.apply
    # Function.apply's Python layer only unwraps tensors that outlived a
    # torch.func transform; the C entry point below it saves ~2 us per call
    raw_apply = super(torch.autograd.Function, _Compiled).apply
    transforms_active = are_functorch_transforms_active

    # inputs the forward kernels updated in place (buffers, running
    # statistics): their version counters move, as AOTAutograd's runtime
    # moves them, so a value saved for some backward before the update fails
    # that backward's check as in eager instead of being read updated
    bumped = tuple(meta.mutated_graph_handled_indices_seen_by_autograd)
    increment_version = torch.autograd.graph.increment_version

    def call(*args):
        out = apply(plan, *args) if transforms_active() else raw_apply(plan, *args)
        if bumped:
            increment_version([args[i] for i in bumped])
        return out

    call.janus_graph = fw
    call.janus_lean = True
    call.janus_graphs = graphs
    return call
