"""Memory layout of 2-D convolutions on CPU.

In: the graph handed to the backend (torch-level ops, ``example_value`` or
``val`` on its nodes) and its example inputs.  Out: the same module when
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

_CONV2D = (torch.conv2d, torch.convolution)
_VIEWS = ("view", "view_as", "as_strided")
_VIEW_FUNCS = (torch.Tensor.view, torch.Tensor.view_as, torch.Tensor.as_strided, torch.as_strided)
_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def _value(n):
    if not isinstance(n, torch.fx.Node):
        return None
    return n.meta.get("val", n.meta.get("example_value"))


def _conv_operands(n):
    """(input, weight) nodes of a 2-D convolution node, or None."""
    if n.op != "call_function" or n.target not in _CONV2D:
        return None
    if n.target is torch.convolution and (len(n.args) < 7 or n.args[6]):
        return None  # transposed convolutions keep their layout
    x = n.args[0] if n.args else n.kwargs.get("input")
    w = n.args[1] if len(n.args) > 1 else n.kwargs.get("weight")
    xv, wv = _value(x), _value(w)
    if not all(isinstance(v, torch.Tensor) for v in (xv, wv)):
        return None
    if xv.dim() != 4 or wv.dim() != 4 or xv.device.type != "cpu" or xv.dtype not in _FLOATS:
        return None
    return x, w


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
            for pos, name, src in ((0, "input", ops[0]), (1, "weight", ops[1])):
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
            if _is_view(n):
                return gm
            downstream.add(n)
        env[n] = new
    out = torch.fx.GraphModule(gm, g)
    out.meta.update(getattr(gm, "meta", {}))
    return out


def _is_view(n):
    if n.op == "call_method":
        return n.target in _VIEWS
    return n.op == "call_function" and any(n.target is f for f in _VIEW_FUNCS)


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
