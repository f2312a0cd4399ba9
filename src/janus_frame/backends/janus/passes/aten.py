"""From the captured graph to a functional, decomposed aten graph.

In: the ``fx.GraphModule`` handed to the backend (torch-level ops, or aten
ops already), its example inputs.  Out: ``to_aten(gm, inputs)`` -- the graph
traced with ``make_fx`` through functionalization and our decomposition
table (:mod:`passes.decomp`), with ``meta['val']`` on every node (a graph
with symbolic sizes is decomposed by a plain trace first, so that its sizes
stay symbolic);
``is_decomposed_aten(gm)`` says when that is already the case;
``lift_tensor_attrs`` turns tensor attributes into leading inputs;
``check_no_aliasing`` refuses inputs sharing memory when the graph writes an
input back.
"""
from __future__ import annotations

import contextlib
import logging
import operator

import torch
import torch.fx

from ....torch_compat import OpOverload
from .decomp import decomposition_table, needs_decomposition

log = logging.getLogger("janus_frame.backend")


def placeholder_vals(gm):
    return [n.meta.get("val", n.meta.get("example_value")) for n in gm.graph.nodes if n.op == "placeholder"]


def is_decomposed_aten(gm):
    for n in gm.graph.nodes:
        if n.op in ("call_method", "call_module", "get_attr"):
            return False
        if n.op == "call_function":
            t = n.target
            if isinstance(t, OpOverload):
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
    from ....torch_compat import detect_fake_mode, make_fx

    if vals is None:
        vals = placeholder_vals(gm)
        if any(v is None for v in vals):
            vals = list(example_inputs)
    symbolic = any(isinstance(v, torch.SymInt) or (isinstance(v, torch.Tensor) and any(
        isinstance(s, torch.SymInt) for s in list(v.shape) + list(v.stride()))) for v in vals)
    fake_mode = detect_fake_mode(vals)
    env = getattr(fake_mode, "shape_env", None)
    if env is not None and env.pending_fresh_unbacked_symbols:
        # sizes made up by the trace that captured the graph and left
        # without a recorded home: the retrace makes (and binds) its own,
        # and refuses to start while those are pending
        env.pending_fresh_unbacked_symbols.clear()
    ctx = fake_mode if fake_mode is not None else contextlib.nullcontext()
    mode = "symbolic" if symbolic else "fake"
    # the aliases come from each input's own fake mode (which need not be
    # the one detected: Dynamo's graphs carry values of an earlier mode)
    aliases = _aliases(vals) if symbolic else None
    def functionalized(g):
        fn = torch.func.functionalize(g, remove="mutations")
        return make_fx(fn, decomposition_table=decomposition_table(), tracing_mode=mode,
                       _allow_non_fake_inputs=True)(*vals)

    with ctx:
        if symbolic:
            first = _decompose_first(gm, aliases, make_fx)
            if is_decomposed_aten(first):
                return first
            try:
                return functionalized(first)
            except RuntimeError as e:
                # the decomposed graph holds an op functionalization cannot
                # take (a prims view with an alias annotation, as batch norm's
                # decomposition leaves): functionalize the captured graph
                # itself, as for fixed sizes (a size it reads is then a guard)
                log.debug("functionalizing the decomposed graph failed (%s); "
                          "functionalizing the captured graph", e)
        return functionalized(gm)


def _aliases(vals):
    """Fake tensors among ``vals`` replaced by aliases (new tensors over the
    same storage, sizes and strides)."""
    from ....torch_compat import FakeTensor

    return [torch.ops.aten.alias.default(v) if isinstance(v, FakeTensor) else v for v in vals]


def _decompose_first(gm, args, make_fx):
    """``gm`` traced to decomposed aten ops without functionalization.

    ``torch.func.functionalize`` wraps every tensor in a C++ functional
    wrapper, and some composite kernels (``linear`` with a bias on a 3-d
    input) read that wrapper's concrete ``sizes()``: on a symbolic size that
    specialises it to the example's value, a guard that recompiles the frame
    on every new length although nothing in the graph needs it.  Traced
    plainly, the same kernels see symbolic sizes; functionalizing the
    resulting graph of primitive aten ops then keeps them symbolic.
    ``args``: aliases of the inputs (:func:`_aliases`), so that an in-place
    metadata change in the graph leaves the example values as they were."""
    return make_fx(gm, decomposition_table=decomposition_table(), tracing_mode="symbolic",
                   _allow_non_fake_inputs=True)(*args)


def attr(gm, target):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def attr_getter(target):
    return operator.attrgetter(target)


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
        if n.op == "get_attr" and isinstance(attr(gm, n.target), torch.Tensor) \
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


def fake_attrs(gm, targets, vals):
    """The attributes ``targets`` of ``gm`` as values to trace with: fake
    tensors of the inputs' fake mode, if they have one."""
    from ....torch_compat import detect_fake_mode

    attrs = [attr(gm, t).detach() for t in targets]
    fake_mode = detect_fake_mode([v for v in vals if v is not None])
    if fake_mode is None:
        return attrs  # make_fx fakes real inputs itself
    with fake_mode:
        return [fake_mode.from_tensor(a, static_shapes=True) for a in attrs]


def check_no_aliasing(tensors):
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


def writes_back(g):
    """Does the aten graph ``g`` copy a result into one of its inputs?"""
    return any(n.op == "call_function" and n.target is torch.ops.aten.copy_.default
               and n.args[0].op == "placeholder" for n in g.graph.nodes)
