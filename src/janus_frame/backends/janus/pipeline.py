"""The fusing backend's driver: ``janus_backend(gm, example_inputs, *, options=None)``.

In: an ``fx.GraphModule`` and example inputs (the torch.compile backend
protocol), and ``options``: a :class:`janus_frame.config.Config` (the
frontend passes its merged one; ``None`` means the process-wide ``config``,
which is how ``torch.compile(model, backend=jf.backend)`` calls it).  Out: a
callable with the graph's calling convention.

Inference (no input requires grad, or grad mode off): the graph is traced to
functional aten (:mod:`passes.aten`; skipped when it already is), then
:func:`compile_graph` runs the stages -- graph passes, lowering to the loop
IR, scheduling into fused kernels (and segments), C (CPU tensors) or Triton
(CUDA tensors, or ``options.triton_on_cpu``) code generation, build -- and
wraps the result (:mod:`runtime.graph`).  Training: the lean runtime
(:mod:`runtime.training`), else AOTAutograd's with a rematerialising min-cut
partition; both halves go through :func:`compile_graph`.  CPU convolutions
are first rewritten to read channels-last (:mod:`passes.layout`).

Aliasing (:mod:`runtime.aliasing`): a fake run at compile time says whether
outputs view inputs or each other, inputs' metadata change, or mutated
inputs share storage; such inference graphs go through AOTAutograd's runtime
around our kernels (views of intermediates replayed on the kernels'
results), and a graph that mutates inputs or was compiled for aliased ones
checks per call that the inputs' storage relation still holds (else it runs
eagerly).

Under ``options.checks`` each stage boundary is verified (:mod:`verify`):
after the graph passes and after scheduling; the loop IR is verified after
lowering on every compile (cheap).

Failures: every stage tags what it raises with its name (:func:`stats.stage`)
and every refusal goes through :func:`refuse`, the one fallback point: it
records ``(stage, reason, graph, instead)`` in ``stats.fallbacks`` and logs a
warning, or raises under ``options.strict``.  The degradations, best first:
lean runtime -> AOTAutograd's runtime; channels-last -> the captured layout;
anything -> the graph as captured, run eagerly.
"""
from __future__ import annotations

import functools
import itertools
import logging
import time

import torch
import torch.fx

from ...config import config
from ...torch_compat import internal_warnings_hidden
from . import verify
from .build import Build, cache_dir
from .lower import lower
from .passes.aten import (attr, attr_getter, check_no_aliasing, fake_attrs, is_decomposed_aten,
                          lift_tensor_attrs, placeholder_vals, to_aten, writes_back)
from .passes.decomp import decomposition_table
from .passes.graph_passes import optimize
from .passes.layout import channels_last_convs
from .runtime.aliasing import analyse, guarded, split_view_outputs
from .runtime.graph import CompiledGraph
from .runtime.untraced import not_traced, stand_aside
from .schedule import schedule
from .stats import Fallback, stage, stage_of, stats

log = logging.getLogger("janus_frame.kernels")
warn_log = logging.getLogger("janus_frame.backend")


def janus_backend(gm: torch.fx.GraphModule, example_inputs, *, options=None):
    """The torch.compile backend protocol; never rejects a graph (under
    ``options.strict`` an internal error raises instead)."""
    with internal_warnings_hidden():
        return _janus_backend(gm, example_inputs, options)


def _janus_backend(gm, example_inputs, options):
    opts = config if options is None else options
    name = graph_name(gm)
    if torch.is_grad_enabled() and _makes_leaves(gm):
        # a tensor made inside the graph that requires grad (``torch.ones(3,
        # requires_grad=True)``) is a leaf of its own: the outputs computed
        # from it carry its history, which the compiled graphs (whose
        # leaves are their inputs) would drop; as captured, they keep it
        log.debug("%s: runs as captured (it makes tensors that require grad)", name)
        return gm.forward
    device = device_of(gm, example_inputs)
    training = _needs_grad(example_inputs)
    compile_ = _compile_training if training else _compile_inference
    try:
        aliasing = analyse(gm, example_inputs)
    except Exception as e:  # noqa: BLE001 -- then the graph's inputs are taken as unaliased
        refuse(e, name, opts, "no aliasing analysis")
        aliasing = None
    if aliasing is not None and aliasing.needs_epilogue and not training:
        compile_ = _compile_aliasing
    layouts = _layouts(gm, opts, name)
    for i, g in enumerate(layouts):
        try:
            fn = compile_(g, example_inputs, device, opts, name)
            with stage("load"):
                load_kernels(fn)
            return fn if aliasing is None else guarded(fn, gm, aliasing)
        except Exception as e:  # noqa: BLE001 -- never break the user's program
            refuse(e, name, opts, "captured layout" if i + 1 < len(layouts) else "eager")
    return gm.forward


def load_kernels(fn) -> None:
    """Wait for the kernels of ``fn``'s compiled graphs to be built and load
    them now: a build that fails falls back here, not in the user's first
    call (a backward graph built later does so in ``lazy_backward``)."""
    graphs = getattr(fn, "janus_graphs", None)
    if graphs is None:
        g = fn if isinstance(fn, CompiledGraph) else getattr(fn, "janus_graph", None)
        graphs = [g] if g is not None else []
    for g in list(graphs):
        if g._fn is None:
            g._prepare()


def refuse(exc: Exception, graph: str, options, instead: str) -> None:
    """The one fallback point: ``exc`` stopped ``graph``, and ``instead``
    runs in its place.  Raises ``exc`` under ``options.strict``."""
    if options.strict:
        raise exc
    rec = Fallback(stage_of(exc), repr(exc), graph, instead)
    stats.fallbacks.append(rec)
    if instead == "eager":
        warn_log.warning("janus backend: running graph %s eagerly after an internal error at "
                         "stage %s: %s", graph, rec.stage, rec.reason)
    else:
        warn_log.warning("janus backend: graph %s: stage %s failed (%s); falling back to the %s",
                         graph, rec.stage, rec.reason, instead)


_anonymous = itertools.count()


def graph_name(gm) -> str:
    """What the warnings call a graph: ``gm.meta['janus_name']`` when the
    frontend set one, torch.compile's compile id, or a process-wide number."""
    name = getattr(gm, "meta", {}).get("janus_name")
    if name:
        return str(name)
    from ...torch_compat import CompileContext

    cid = CompileContext.current_compile_id()
    if cid is not None:
        return f"torch.compile {cid}"
    return f"#{next(_anonymous)}"


def device_of(gm, example_inputs=()) -> str:
    """The device type of the first tensor input, else of the first node's
    value, else ``"cpu"``."""
    return graph_device(gm, example_inputs).type


def graph_device(gm, example_inputs=()) -> torch.device:
    """The device of the first tensor input, else of the first node's value,
    else the CPU: where the graph's outputs and temporaries are allocated."""
    for x in example_inputs:
        if isinstance(x, torch.Tensor):
            return x.device
    for n in gm.graph.nodes:
        v = n.meta.get("val")
        if isinstance(v, torch.Tensor):
            return v.device
    return torch.device("cpu")


@not_traced
def compile_graph(gm: torch.fx.GraphModule, device: str | None = None, options=None,
                  prechecked=frozenset()):
    """Compile one functional, decomposed aten graph (meta['val'] on every
    placeholder) into a :class:`runtime.graph.CompiledGraph`.  ``prechecked``:
    index range checks the forward of this backward graph did on the saved
    inputs it reads (``prog.input_checks`` of the forward)."""
    opts = config if options is None else options
    t0 = time.perf_counter()
    dev = graph_device(gm)
    triton = (device or dev.type) == "cuda" or opts.triton_on_cpu
    with stage("passes"):
        g = optimize(gm)
    if opts.checks:
        with stage("verify passes"):
            verify.graph_passes(gm, g)
    with stage("lower"):
        prog = lower(g, prechecked)
    with stage("verify lowering"):
        verify.loop_ir(prog)
    with stage("schedule"):
        sched = schedule(prog, cpp=not triton)
    if opts.checks:
        with stage("verify schedule"):
            verify.schedule(sched)
    if triton:
        from .codegen.triton import generate_triton

        with stage("codegen"):
            tk = generate_triton(sched, opts)
        cg = CompiledGraph(prog, sched, None, None, backend="triton", triton_kernels=tk,
                           options=opts, device=dev)
        text = "\n\n".join(k.source for k in tk.values())
    else:
        from .codegen.c.kernel import generate

        with stage("codegen"):
            csrc = generate(sched, sched.segments())
        with stage("build"):
            build = Build(csrc.text, directory=cache_dir(opts), libmvec=opts.libmvec) \
                if sched.kernels else None
        cg = CompiledGraph(prog, sched, csrc if sched.kernels else None, build, options=opts,
                           device=dev)
        text = csrc.text
    cg.compile_seconds = time.perf_counter() - t0
    cg.passes = _pass_counts(gm, g, sched)
    if log.isEnabledFor(logging.DEBUG) or _logs_on():
        log.info("graph IR:\n%s\nschedule:\n%s\nsource:\n%s", prog.format(), sched.format(), text)
    stats.add(cg)
    return cg


def _pass_counts(before, after, sched):
    """What the graph passes (see :mod:`passes.graph_passes`) and the
    scheduler's library-call rewrites did to one graph: a Counter by kind
    (``accumulate``: products added into their running sum in place;
    ``epilogue``: pointwise results stored over the product they read)."""
    import collections

    counts = collections.Counter(after.meta.get("janus_passes", {}) if after is not before else {})
    counts["accumulate"] = len(getattr(sched, "accumulate", ()))
    counts["epilogue"] = len(getattr(sched, "alias", {}))
    return collections.Counter({k: v for k, v in counts.items() if v})


def _logs_on():
    from ...diagnostics.logs import artifact_logger

    return artifact_logger("kernels") is not None


def _layouts(gm, opts, name):
    """The graphs to try, best first: CPU convolutions reading channels-last
    (:mod:`passes.layout`), then the graph as captured."""
    if not opts.channels_last:
        return [gm]
    try:
        with stage("layout"):
            nhwc = channels_last_convs(gm)
    except Exception as e:  # noqa: BLE001 -- the captured layout needs no rewrite
        refuse(e, name, opts, "captured layout")
        return [gm]
    return [gm] if nhwc is gm else [nhwc, gm]


def _makes_leaves(gm) -> bool:
    """Does a node other than an input make a leaf tensor that requires grad?"""
    for n in gm.graph.nodes:
        v = n.meta.get("example_value", n.meta.get("val"))
        if n.op != "placeholder" and isinstance(v, torch.Tensor) and v.requires_grad and \
                v.grad_fn is None:
            return True
    return False


def _needs_grad(example_inputs):
    return torch.is_grad_enabled() and any(
        isinstance(x, torch.Tensor) and x.requires_grad for x in example_inputs)


def _compile_inference(gm, example_inputs, device, opts, name):
    if is_decomposed_aten(gm):
        return compile_graph(gm, device, opts)
    lifted, targets = lift_tensor_attrs(gm)
    if not targets:
        with stage("trace"):
            g = to_aten(gm, example_inputs)
            if writes_back(g):
                check_no_aliasing(example_inputs)
        return compile_graph(g, device, opts)
    vals = placeholder_vals(gm)
    if any(v is None for v in vals):
        vals = list(example_inputs)
    with stage("trace"):
        g = to_aten(lifted, None, fake_attrs(gm, targets, vals) + vals)
        if writes_back(g):
            check_no_aliasing([attr(gm, t) for t in targets] + list(example_inputs))
    cg = compile_graph(g, device, opts)
    # the protocol: the graph's own positional inputs; attributes are read per
    # call (a module may rebind them; in-place updates are seen either way)
    getters = [attr_getter(t) for t in targets]

    def call(*args):
        return cg(*[get(gm) for get in getters], *args)

    call.janus_graph = cg
    return call


def _compile_aliasing(gm, example_inputs, device, opts, name):
    """Inference whose outputs alias inputs or each other, which changes an
    input's metadata, or whose mutated input shares storage with another
    (:mod:`runtime.aliasing`): AOTAutograd's runtime around our kernels
    regenerates the aliases and applies the mutations as eager does."""
    from ...torch_compat import aot_module_simplified

    graphs = []

    def inner(g, ex):
        split = split_view_outputs(g)
        cg = compile_graph(g if split is None else split[0], device_of(g, ex), opts)
        graphs.append(cg)
        run = stand_aside(cg.boxed)
        if split is None:
            f = run
        else:
            epilogue = split[1]

            def f(args):
                return epilogue(run(args))

        f._boxed_call = True
        f.janus_graph = cg
        return f

    with stage("aliasing.aot"):
        fn = aot_module_simplified(gm, example_inputs, fw_compiler=inner,
                                   decompositions=decomposition_table(),
                                   keep_inference_input_mutations=True)
    fn.janus_graphs = graphs
    return fn


def _compile_training(gm, example_inputs, device, opts, name):
    from ...torch_compat import aot_module_simplified, min_cut_rematerialization_partition

    from .runtime.training import compile_lean, lazy_backward

    compile_ = functools.partial(compile_graph, options=opts)

    def bw_failed(e):
        refuse(e, f"{name} (backward)", opts, "eager")

    try:
        with stage("training.lean"):
            lean = compile_lean(gm, example_inputs, compile_, device, opts, bw_failed)
    except Exception as e:  # noqa: BLE001 -- AOTAutograd's runtime below is the general path
        refuse(e, name, opts, "AOTAutograd runtime")
        lean = None
    if lean is not None:
        return lean
    graphs = []

    def inner(g, ex):
        cg = compile_(g, device_of(g, ex))
        graphs.append(cg)
        f = stand_aside(cg.boxed)
        f._boxed_call = True
        f.janus_graph = cg
        return f

    def inner_bw(g, ex):
        # compiled on the first backward, inside the user's backward() call:
        # after an internal error the backward graph runs eagerly
        run = lazy_backward(lambda g: compile_(g, device_of(g, ex)), g, graphs, bw_failed)

        def f(args):
            out = run(*args)
            args.clear()
            return out

        f._boxed_call = True
        return f

    with stage("training.aot"):
        fn = aot_module_simplified(gm, example_inputs, fw_compiler=inner, bw_compiler=inner_bw,
                                   decompositions=decomposition_table(),
                                   partition_fn=min_cut_rematerialization_partition,
                                   keep_inference_input_mutations=True)
    fn.janus_graphs = graphs
    return fn
