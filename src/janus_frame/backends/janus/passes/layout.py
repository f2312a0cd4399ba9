"""Memory layout of 2-D convolutions on CPU.

In: the graph handed to the backend (torch-level ops, or aten ops with the
backward traced in: ``aten.convolution`` and ``aten.convolution_backward``;
``example_value`` or ``val`` on its nodes) and its example inputs.  Out: the same module when
nothing applies, else a rewritten copy in which every 2-D convolution of a
floating-point CPU tensor reads its input and weight channels-last
(``.contiguous(memory_format=torch.channels_last)``, a no-op for tensors
already laid out so), and every graph output that depends on one is given
back in the layout it had when captured (row-major, or channels-last).

Why: oneDNN's CPU convolutions, forward and backward, run on NHWC data and
convert NCHW tensors on every call; on the benchmark's CNN (16x3x32x32,
16/32 channels, 2 threads) the eight convolutions of a training step take
17 ms contiguous and 7.5 ms channels-last, forward plus backward.  Done
above autograd, the layout reaches everything the tracer derives from it:
the convolution's output and what consumes it (batch norm, activations,
residual adds) inherit NHWC strides through their traced values, so the
loop IR lays those buffers out channels-last too, and the saved tensors
and gradients of the backward convolutions are channels-last as well.
A weight's gradient flows back through the conversion unchanged in value.
(Unpadded 1x1 convolutions of the converted inputs are then matrix products,
not oneDNN calls: ``decomp.conv1x1``.)

Stride-sensitive user code is what this can break: ``.view`` of an NHWC
tensor to a shape its strides cannot express raises while the graph is
traced.  A graph that views (or ``as_strided``-s) anything computed from a
convolution is left as captured, and the caller compiles the original
graph when the rewritten one fails for any other reason
(:func:`pipeline.janus_backend`).  Off with the ``channels_last`` option
(``JANUS_FRAME_CHANNELS_LAST=0``), which the pipeline reads.
"""
from __future__ import annotations

import torch
import torch.fx

from ....torch_compat import OpOverload

_aten = torch.ops.aten
# (aten.convolution takes torch.convolution's arguments: a graph with the
# backward traced into it, frontend/whole_step.py, is aten)
_CONV2D = (torch.conv2d, torch.convolution, _aten.convolution.default)
_CONV2D_BACKWARD = _aten.convolution_backward.default
_VIEWS = ("view", "view_as", "as_strided")
_VIEW_FUNCS = (torch.Tensor.view, torch.Tensor.view_as, torch.Tensor.as_strided, torch.as_strided,
               _aten.view.default, _aten._unsafe_view.default, _aten.as_strided.default,
               _aten.as_strided_.default, _aten._reshape_alias.default)
_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def _value(n):
    if not isinstance(n, torch.fx.Node):
        return None
    return n.meta.get("val", n.meta.get("example_value"))


def _conv_operands(n):
    """((position, keyword, node), ...) of the operands a 2-D convolution
    node (or its backward) reads channels-last, or None."""
    if n.op != "call_function":
        return None
    if n.target is _CONV2D_BACKWARD:
        if len(n.args) < 8 or n.args[7]:
            return None  # transposed convolutions keep their layout
        ops = ((0, "grad_output", n.args[0]), (1, "input", n.args[1]), (2, "weight", n.args[2]))
    elif n.target in _CONV2D:
        if n.target is not torch.conv2d and (len(n.args) < 7 or n.args[6]):
            return None
        ops = ((0, "input", n.args[0] if n.args else n.kwargs.get("input")),
               (1, "weight", n.args[1] if len(n.args) > 1 else n.kwargs.get("weight")))
    else:
        return None
    vals = [_value(node) for _, _, node in ops]
    if not all(isinstance(v, torch.Tensor) for v in vals):
        return None
    if any(v.dim() != 4 for v in vals) or vals[0].device.type != "cpu" or \
            vals[0].dtype not in _FLOATS:
        return None
    return ops


def channels_last_convs(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """See the module docstring; ``gm`` itself is never modified."""
    if not torch.backends.mkldnn.is_available() or not any(_conv_operands(n) for n in gm.graph.nodes):
        return gm
    g = torch.fx.Graph()
    env = {}
    downstream = set()  # nodes whose layout may now differ from the captured one
    for n in gm.graph.nodes:
        if n.op == "output":
            outs = torch.fx.node.map_arg(n.args[0], lambda a: _restore(g, a, env, downstream))
            g.output(outs)
            continue
        ops = _conv_operands(n)
        new = g.node_copy(n, lambda a: env[a])
        if ops is not None:
            args = list(new.args)
            kwargs = dict(new.kwargs)
            for pos, name, src in ops:
                # one conversion per use: the operand may be updated in place
                # between two convolutions (a no-op when it is NHWC already)
                with g.inserting_before(new):
                    c = g.call_method("contiguous", (env[src],), {"memory_format": torch.channels_last})
                c.meta = dict(src.meta)
                if pos < len(args):
                    args[pos] = c
                else:
                    kwargs[name] = c
            new.args, new.kwargs = tuple(args), kwargs
            downstream.add(n)
        elif any(a in downstream for a in n.all_input_nodes):
            if _is_view(n) and _strided(n.args[0] if n.args else None):
                if not _reshape_can_replace(n):
                    return gm
                # the view may not fit the new strides: a reshape copies then
                new.target = _aten.reshape.default
            downstream.add(n)
        env[n] = new
    out = torch.fx.GraphModule(gm, g)
    out.meta.update(getattr(gm, "meta", {}))
    return out


def _is_view(n):
    if n.op == "call_method":
        return n.target in _VIEWS
    return n.op == "call_function" and any(n.target is f for f in _VIEW_FUNCS)


def _reshape_can_replace(n) -> bool:
    """Can a reshape stand in for the aten view node ``n``, aliasing or not:
    nothing writes in place to it, to what it views or to their views, and
    it is no output (where the two could share memory, a copy would not see
    the writes)?"""
    if n.target not in (_aten.view.default, _aten._unsafe_view.default):
        return False
    base = n.args[0]
    return isinstance(base, torch.fx.Node) and _unwritten(base, skip=n, output_ok=True) \
        and _unwritten(n, skip=None, output_ok=False)


def _unwritten(m, skip, output_ok: bool) -> bool:
    for user in m.users:
        if user is skip:
            continue
        if user.op == "output":
            if not output_ok:
                return False
            continue
        if user.op != "call_function" or not isinstance(user.target, OpOverload) or \
                user.target._schema.is_mutable:
            return False
        if user.target.is_view and not _unwritten(user, None, output_ok):
            return False
    return True


def _strided(node) -> bool:
    """Could a view of ``node``'s value depend on its strides, which may
    change once convolutions read channels-last? Not when at most one of its
    dimensions has more than one element (a bias gradient, ``[1, 10]``)."""
    v = _value(node)
    if not isinstance(v, torch.Tensor):
        return True
    return sum(1 for size in v.shape if not (isinstance(size, int) and size == 1)) >= 2


def _restore(g, a, env, downstream):
    """A graph output in the layout it was captured with (the lowering
    stores an output whose buffer is laid out otherwise into one that is)."""
    v = _value(a)
    if a not in downstream or not isinstance(v, torch.Tensor):
        return env[a]
    fmt = _format_of(v)
    if fmt is None:
        return env[a]
    c = g.call_method("contiguous", (env[a],), {"memory_format": fmt})
    c.meta = dict(a.meta)
    return c


def _format_of(v):
    """The memory format of a captured value, decided without adding
    guards on symbolic sizes (the frontend has already rendered its guards):
    None when it is neither layout or that cannot be known statically."""
    from ....torch_compat import statically_known_true

    size, stride = v.shape, v.stride()
    orders = [(torch.contiguous_format, tuple(range(v.dim() - 1, -1, -1)))]
    if v.dim() == 4:
        orders.append((torch.channels_last, (1, 3, 2, 0)))
    for fmt, order in orders:
        expect, ok = 1, True
        for d in order:
            if not statically_known_true(size[d] == 1) and not statically_known_true(stride[d] == expect):
                ok = False
                break
            expect = expect * size[d]
        if ok:
            return fmt
    return None
