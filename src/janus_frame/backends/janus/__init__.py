"""The fusing backend: ``janus_backend(gm, example_inputs) -> callable``.

In: an ``fx.GraphModule`` and example inputs (the torch.compile backend
protocol).  Out: a callable with the graph's calling convention.

Inference (no input requires grad, or grad mode off): the graph is traced to
functional aten with our decomposition table (skipped when it already is),
lowered to the loop IR, verified, scheduled into fused kernels, printed as C
(CPU tensors) or Triton (CUDA tensors), built and wrapped.  Training:
AOTAutograd with a rematerialising min-cut partition; both halves go through
the same steps.  Any internal error falls back to running the graph as
captured, with a warning (``JANUS_STRICT=1`` raises instead).

For tests and tools: ``compile_graph`` (one aten graph -> CompiledGraph) and
``stats`` (every graph compiled in this process, with its kernels).
"""
from __future__ import annotations

import contextlib
import logging
import time

import torch
import torch.fx

from . import ir
from .passes.decomp import decomposition_table, needs_decomposition
from .passes.layout import channels_last_convs
from .runtime.untraced import not_traced, stand_aside

log = logging.getLogger("janus_frame.kernels")
warn_log = logging.getLogger("janus_frame.backend")

__all__ = ["janus_backend", "compile_graph", "stats", "reset_stats"]


class Stats:
    """Every graph compiled in this process (most recent last)."""

    def __init__(self):
        self.graphs = []
        self.fallbacks = []

    @property
    def kernel_counts(self):
        return [g.num_kernels for g in self.graphs]

    def clear(self):
        self.graphs.clear()
        self.fallbacks.clear()


stats = Stats()


def reset_stats():
    stats.clear()


def _strict():
    try:
        from ...config import config

        return bool(config.strict)
    except Exception:
        return False


def _device_of(gm, example_inputs):
    for x in example_inputs:
        if isinstance(x, torch.Tensor):
            return x.device.type
    for n in gm.graph.nodes:
        v = n.meta.get("val")
        if isinstance(v, torch.Tensor):
            return v.device.type
    return "cpu"


def _not_traced(fn):
    """Backend code must never be traced by a frame-evaluation frontend: the
    backward graph is compiled lazily, from inside user frames that are being
    compiled (``loss.backward()`` in a compiled step).  ``torch.compiler.disable``
    is the public way to mark that (our own frontend skips backend modules)."""
    return not_traced(fn)


@_not_traced
def compile_graph(gm: torch.fx.GraphModule, device: str | None = None):
    """Compile one functional, decomposed aten graph (meta['val'] on every
    placeholder) into a :class:`runtime.CompiledGraph`."""
    from .lower.lowering import lower
    from .schedule import schedule, Kernel
    from .runtime.graph import CompiledGraph

    from .passes.graph_passes import optimize

    t0 = time.perf_counter()
    prog = lower(optimize(gm))
    ir.verify(prog)
    if device is None:
        device = "cpu"
        for n in gm.graph.nodes:
            v = n.meta.get("val")
            if isinstance(v, torch.Tensor):
                device = v.device.type
                break
    triton = device == "cuda" or _force_triton()
    sched = schedule(prog, cpp=not triton)
    kernels = [s for s in sched.steps if isinstance(s, Kernel)]
    if triton:
        from .codegen.triton import generate_triton

        tk = generate_triton(sched)
        cg = CompiledGraph(prog, sched, None, None, backend="triton", triton_kernels=tk)
        text = "\n\n".join(k.source for k in tk.values())
    else:
        from .codegen.c.kernel import generate
        from .build import Build

        seg_plan = []
        cur = None
        for s in sched.steps:
            if isinstance(s, Kernel):
                if cur is None:
                    cur = (f"seg{len(seg_plan)}", [])
                    seg_plan.append(cur)
                cur[1].append(s)
            else:
                cur = None
        csrc = generate(sched, seg_plan)
        build = Build(csrc.text) if kernels else None
        cg = CompiledGraph(prog, sched, csrc if kernels else None, build)
        if not kernels:
            cg.csource = None
        text = csrc.text
    cg.compile_seconds = time.perf_counter() - t0
    if log.isEnabledFor(logging.DEBUG) or _logs_on():
        log.info("graph IR:\n%s\nschedule:\n%s\nsource:\n%s", prog.format(), sched.format(), text)
    stats.graphs.append(cg)
    return cg


def _logs_on():
    try:
        from ...diagnostics.logs import artifact_logger

        return artifact_logger("kernels") is not None
    except Exception:
        return False


_FORCE_TRITON = [False]


@contextlib.contextmanager
def force_triton():
    """Generate Triton kernels even for CPU tensors (for TRITON_INTERPRET=1 tests)."""
    old = _FORCE_TRITON[0]
    _FORCE_TRITON[0] = True
    try:
        yield
    finally:
        _FORCE_TRITON[0] = old


def _force_triton():
    return _FORCE_TRITON[0]


def _placeholder_vals(gm):
    return [n.meta.get("val", n.meta.get("example_value")) for n in gm.graph.nodes if n.op == "placeholder"]


def _is_decomposed_aten(gm):
    for n in gm.graph.nodes:
        if n.op in ("call_method", "call_module", "get_attr"):
            return False
        if n.op == "call_function":
            t = n.target
            if isinstance(t, torch._ops.OpOverload):
                if needs_decomposition(t) or t._schema.is_mutable:
                    return False
            elif not (getattr(t, "__module__", "") == "_operator"):
                return False
        if n.op in ("placeholder", "call_function") and "val" not in n.meta:
            return False
    return True


def to_aten(gm, example_inputs, vals=None):
    """Functional, decomposed aten graph of ``gm`` (traced with make_fx);
    ``vals``: the placeholders' values when they carry none."""
    from torch._guards import detect_fake_mode
    from torch.fx.experimental.proxy_tensor import make_fx

    if vals is None:
        vals = _placeholder_vals(gm)
        if any(v is None for v in vals):
            vals = list(example_inputs)
    symbolic = any(isinstance(v, torch.SymInt) or (isinstance(v, torch.Tensor) and any(
        isinstance(s, torch.SymInt) for s in list(v.shape) + list(v.stride()))) for v in vals)
    fake_mode = detect_fake_mode(vals)
    mode = "symbolic" if symbolic else ("fake" if fake_mode is not None else "fake")
    fn = torch.func.functionalize(gm, remove="mutations")
    ctx = fake_mode if fake_mode is not None else contextlib.nullcontext()
    with ctx:
        g = make_fx(fn, decomposition_table=decomposition_table(), tracing_mode=mode,
                    _allow_non_fake_inputs=True)(*vals)
    return g


def _needs_grad(example_inputs):
    return torch.is_grad_enabled() and any(
        isinstance(x, torch.Tensor) and x.requires_grad for x in example_inputs)


def _attr(gm, target):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def lift_tensor_attrs(gm):
    """``(lifted, targets)``: a copy of ``gm`` whose tensor attributes are
    leading placeholders, and their attribute paths (the extra inputs to pass,
    read from ``gm`` at call time).

    Dynamo leaves parameters, buffers and optimizer state as attributes of the
    graph module, and the optimizer step mutates them in place
    (``p.add_(g)``, ``torch._foreach_mul_(bufs, m)``).  Traced as attributes
    they are real tensors inside the trace: functionalization either refuses
    them (a functional value written into a real tensor) or, when the update
    reads only attributes, performs it on the real tensor at compile time and
    leaves it out of the graph.  As inputs, their updates are traced like any
    other input mutation: a ``copy_`` into the input at the end of the graph."""
    targets = []
    for n in gm.graph.nodes:
        if n.op == "get_attr" and isinstance(_attr(gm, n.target), torch.Tensor) \
                and n.target not in targets:
            targets.append(n.target)
    if not targets:
        return gm, []
    g = torch.fx.Graph()
    env = {}
    lifted = {t: g.placeholder(f"attr_{i}") for i, t in enumerate(targets)}
    for n in gm.graph.nodes:
        if n.op == "get_attr" and n.target in lifted:
            env[n] = lifted[n.target]
        else:
            env[n] = g.node_copy(n, lambda a: env[a])
    return torch.fx.GraphModule(gm, g), targets


def _fake_attrs(gm, targets, vals):
    from torch._guards import detect_fake_mode

    attrs = [_attr(gm, t).detach() for t in targets]
    fake_mode = detect_fake_mode([v for v in vals if v is not None])
    if fake_mode is None:
        return attrs  # make_fx fakes real inputs itself
    with fake_mode:
        return [fake_mode.from_tensor(a, static_shapes=True) for a in attrs]


def _check_no_aliasing(tensors):
    """Functionalization assumes inputs do not share memory: an update written
    back into one input would be missed by a kernel reading another view of
    it.  Such graphs run eagerly (rare: tied or viewed parameters)."""
    seen = {}
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor) or t.numel() == 0:
            continue
        key = t.untyped_storage().data_ptr()
        if key in seen:
            raise NotImplementedError(f"inputs {seen[key]} and {i} share storage")
        seen[key] = i


def _writes_back(g):
    return any(n.op == "call_function" and n.target is torch.ops.aten.copy_.default
               and n.args[0].op == "placeholder" for n in g.graph.nodes)


def _compile_inference(gm, example_inputs):
    if _is_decomposed_aten(gm):
        return compile_graph(gm, _device_of(gm, example_inputs))
    lifted, targets = lift_tensor_attrs(gm)
    if not targets:
        g = to_aten(gm, example_inputs)
        if _writes_back(g):
            _check_no_aliasing(example_inputs)
        return compile_graph(g, _device_of(gm, example_inputs))
    vals = _placeholder_vals(gm)
    if any(v is None for v in vals):
        vals = list(example_inputs)
    g = to_aten(lifted, None, _fake_attrs(gm, targets, vals) + vals)
    if _writes_back(g):
        _check_no_aliasing([_attr(gm, t) for t in targets] + list(example_inputs))
    cg = compile_graph(g, _device_of(gm, example_inputs))
    # the protocol: the graph's own positional inputs; attributes are read per
    # call (a module may rebind them; in-place updates are seen either way)
    getters = [_attr_getter(t) for t in targets]

    def call(*args):
        return cg(*[get(gm) for get in getters], *args)

    call.janus_graph = cg
    return call


def _attr_getter(target):
    import operator

    return operator.attrgetter(target)


def _compile_training(gm, example_inputs):
    from torch._functorch.aot_autograd import aot_module_simplified
    from torch._functorch.partitioners import min_cut_rematerialization_partition

    from .runtime.training import compile_lean

    graphs = []
    try:
        lean = compile_lean(gm, example_inputs, compile_graph, _device_of(gm, example_inputs), graphs)
    except Exception as e:  # noqa: BLE001 -- AOTAutograd's runtime below is the general path
        if _strict():
            raise
        warn_log.debug("lean training runtime failed (%r): AOTAutograd runtime", e)
        lean = None
        graphs.clear()
    if lean is not None:
        return lean

    def inner(g, ex):
        cg = compile_graph(g, _device_of(g, ex))
        graphs.append(cg)
        f = stand_aside(cg.boxed)
        f._boxed_call = True
        f.janus_graph = cg
        return f

    fn = aot_module_simplified(gm, example_inputs, fw_compiler=inner, bw_compiler=inner,
                               decompositions=decomposition_table(),
                               partition_fn=min_cut_rematerialization_partition,
                               keep_inference_input_mutations=True)
    fn.janus_graphs = graphs
    return fn


def janus_backend(gm: torch.fx.GraphModule, example_inputs):
    """The torch.compile backend protocol; never rejects a graph."""
    try:
        compile_ = _compile_training if _needs_grad(example_inputs) else _compile_inference
        nhwc = channels_last_convs(gm)
        if nhwc is not gm:
            try:
                return compile_(nhwc, example_inputs)
            except Exception as e:  # noqa: BLE001 -- stride-sensitive code: keep the captured layout
                if _strict():
                    raise
                warn_log.debug("channels-last convolutions refused (%r): captured layout", e)
        return compile_(gm, example_inputs)
    except Exception as e:  # noqa: BLE001 -- never break the user's program
        if _strict():
            raise
        stats.fallbacks.append(repr(e))
        warn_log.warning("janus backend: running graph eagerly after internal error: %r", e)
        return gm.forward
