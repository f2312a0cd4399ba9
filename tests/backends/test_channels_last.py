"""Channels-last convolutions on CPU (``layout.channels_last_convs``) and the
code generation they lean on: loops ordered by the strides of a kernel's
accesses, realized values stored in their traced layout, and reductions
over few kept columns split over fixed row chunks.

Each model test compares against eager (outputs, gradients, batch-norm
running statistics) and asserts the path taken: the convolutions of the
compiled program return NHWC results, and the pointwise work between them
runs as one contiguous loop.
"""
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_close, graphs, jcompile


def _nhwc(shape, strides):
    n, c, h, w = shape
    return tuple(strides) == (h * w * c, 1, w * c, c)


def _conv_layouts():
    out = []
    for g in graphs():
        for node in g.prog.nodes:
            if getattr(node, "op", None) is torch.ops.aten.convolution.default:
                out.append(_nhwc(node.out.shape, node.out.strides))
    return out


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.b2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = F.relu(self.b2(self.c2(y)) + y)
        return self.fc(y.mean((2, 3)))


def _pair(seed=0):
    torch.manual_seed(seed)
    a = Net()
    b = Net()
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("in_format", [torch.contiguous_format, torch.channels_last])
def test_training_step_matches_eager(in_format):
    ref, net = _pair()
    x = torch.randn(4, 3, 20, 20).contiguous(memory_format=in_format)
    y = torch.randint(0, 5, (4,))

    def step(m, x, y):
        return F.cross_entropy(m(x), y)

    cstep = jcompile(step)
    for _ in range(2):
        for m, f in ((ref, step), (net, cstep)):
            m.zero_grad()
            f(m, x, y).backward()
    assert _conv_layouts() and all(_conv_layouts())
    assert_close(cstep(net, x, y), step(ref, x, y), rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(net.named_parameters(), ref.parameters()):
        assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)
        assert p.grad.stride() == q.grad.stride(), name
    for b, rb in zip(net.buffers(), ref.buffers()):
        assert_close(b, rb, rtol=1e-4, atol=1e-5)


def test_inference_keeps_the_captured_output_layout():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, padding=1)

    def f(x):
        return torch.sigmoid(conv(x)) * 2

    for fmt in (torch.contiguous_format, torch.channels_last):
        torch._dynamo.reset()
        x = torch.randn(2, 4, 9, 9).contiguous(memory_format=fmt)
        with torch.no_grad():
            want = f(x)
            got = jcompile(f)(x)
        assert_close(got, want)
        assert got.stride() == want.stride()
    assert all(_conv_layouts())


def test_pointwise_between_convolutions_is_one_contiguous_loop():
    torch.manual_seed(0)
    # (3x3: unpadded 1x1 convolutions of NHWC data are matrix products)
    c1, c2 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)

    def f(x):
        return c2(torch.tanh(c1(x)) * 3 + 1)

    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        want = f(x)
        got = jcompile(f)(x)
    # (eager's own convolutions here differ by up to 1.2e-4 between calls
    # in one process: oneDNN picks its kernel at run time)
    assert_close(got, want, rtol=1e-4, atol=2e-4)
    assert _conv_layouts() and all(_conv_layouts())
    src = graphs()[-1].source
    # 2*8*16*16 elements in one loop: the NHWC buffers are walked in memory order
    assert "< 4096; ++" in src


def test_stride_sensitive_code_keeps_the_captured_layout():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3)

    def f(x):
        return conv(x).view(2, -1).sum(1)  # a view NHWC strides cannot express

    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    want = f(x)
    want.sum().backward()
    gx = x.grad
    x.grad = None
    got = jcompile(f)(x)
    got.sum().backward()
    assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert_close(x.grad, gx, rtol=1e-5, atol=1e-5)
    assert _conv_layouts() and not any(_conv_layouts())


def test_operand_updated_in_place_between_convolutions():
    torch.manual_seed(0)
    w1, w2 = torch.randn(4, 3, 3, 3), torch.randn(5, 3, 3, 3)

    def f(x, w):
        h = x * 2
        y1 = F.conv2d(h, w1)
        h.add_(1)  # the second convolution must see the update
        y2 = F.conv2d(h, w2)
        w.mul_(3)
        y3 = F.conv2d(h, w)
        return y1, y2, y3

    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    with torch.no_grad():
        want = f(x, w.clone())
        got = jcompile(f)(x, w.clone())
    assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert all(_conv_layouts())


def test_outputs_in_eager_layout():
    torch.manual_seed(0)
    c1, c2 = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1)

    def f(x, w):
        a = c1(x)                       # a library result returned as is
        y = F.relu(c2(a))               # stored, and read by the next 1x1 convolution (a matmul)
        z = c2(y)
        t = x[0, 0].t() * 2             # transposed, realized for the matmul
        return a, y, z, a.flatten(2), t @ w, t.contiguous()

    x, w = torch.randn(2, 3, 8, 8), torch.randn(8, 5)
    for grad in (False, True):
        torch._dynamo.reset()
        with torch.set_grad_enabled(grad):
            want = f(x, w)
            got = jcompile(f)(x, w)
        for g, e in zip(got, want):
            assert_close(g, e, rtol=1e-5, atol=1e-5)
            assert g.stride() == e.stride()
        got[-1].view(-1)  # row-major, as eager's


def test_as_strided_function_keeps_the_captured_layout():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)

    def f(x):
        return torch.as_strided(conv(x), (2, 4, 3), (144, 36, 1)) * 1

    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert_close(jcompile(f)(x), f(x))
    assert not any(_conv_layouts())


def test_switch_off(monkeypatch):
    from janus_frame.config import config

    monkeypatch.setattr(config, "channels_last", False)  # JANUS_FRAME_CHANNELS_LAST=0
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert_close(jcompile(lambda x: F.relu(conv(x)))(x), F.relu(conv(x)))
    assert _conv_layouts() == [False]


def _split_source():
    return [g.source for g in graphs() if "omp barrier" in g.source]


@pytest.mark.parametrize("threads", [1, 2])
def test_split_reduction_is_bitwise_independent_of_threads(threads):
    # batch-norm statistics of NHWC data: 16 kept columns, 2*40*40 rows; the
    # rows are split over fixed chunks, so one thread and two give the same bits
    x = torch.randn(2, 16, 40, 40).contiguous(memory_format=torch.channels_last) * 3 + 1

    def f(x):
        var, mean = torch.var_mean(x, (0, 2, 3), correction=0, keepdim=True)
        return (x - mean) * torch.rsqrt(var + 1e-5), x.sum((0, 2, 3)), x.amax((0, 2, 3))

    want = f(x)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        got = jcompile(f)(x)
        torch.set_num_threads(3 - threads)
        again = jcompile(f)(x)
    finally:
        torch.set_num_threads(old)
    assert _split_source()
    assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(got, again):
        assert torch.equal(a, b)


def test_split_reduction_over_dynamic_rows():
    # rows are a kernel argument: few rows leave chunks empty (the Welford
    # merge skips them), many rows run in parallel
    def f(x):
        return x.var(0), x.sum(0), x - x.mean(0)

    cf = jcompile(f)
    for rows in (3, 7, 5000):
        x = torch.randn(rows, 24) * 2 - 1
        torch._dynamo.mark_dynamic(x, 0)
        assert_close(cf(x), f(x), rtol=1e-5, atol=1e-5)
    assert len(graphs()) == 1
    assert _split_source()


if __name__ == "__main__":
    raise SystemExit(pytest.main([os.path.abspath(__file__), "-q"]))


def _conv_backward_layouts():
    """Per convolution_backward node of the compiled graphs: are the
    gradient of its output and its input read channels-last?"""
    out = []
    for g in graphs():
        for node in g.prog.nodes:
            if getattr(node, "op", None) is torch.ops.aten.convolution_backward.default:
                out.append(all(_nhwc(a.shape, a.strides) for a in node.args[:2]))
    return out


class FlatNet(Net):
    """The same network pooled through a flatten (a view of the NHWC data)."""

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = F.relu(self.b2(self.c2(y)) + y)
        return self.fc(y.flatten(2).mean(-1))


@pytest.mark.parametrize("model_cls", [Net, FlatNet])
def test_whole_training_step_graph_reads_channels_last(model_cls):
    # the step's backward and update traced into the graph (aten ops): its
    # convolutions, forward and backward, read NHWC as the forward graph's do
    import janus_frame as jf
    from janus_frame.frontend import whole_step

    torch.manual_seed(0)
    ref, net = model_cls(), model_cls()
    net.load_state_dict(ref.state_dict())

    def make(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            opt.step()
            return loss
        return step

    ref_step = make(ref)
    before = whole_step.counts["traced"]
    cstep = jf.compile(make(net), strict=False)  # (the first step breaks at opt.step)
    for i in range(4):
        x, y = torch.randn(4, 3, 12, 12), torch.randint(0, 5, (4,))
        assert_close(cstep(x, y), ref_step(x, y), rtol=1e-4, atol=1e-5)
    assert whole_step.counts["traced"] > before
    for (name, p), q in zip(net.named_parameters(), ref.parameters()):
        assert_close(p, q, rtol=1e-4, atol=1e-5)
        assert p.grad.stride() == q.grad.stride(), name
    for b, rb in zip(net.buffers(), ref.buffers()):
        assert_close(b, rb, rtol=1e-4, atol=1e-5)
    assert _conv_layouts() and all(_conv_layouts())
    assert _conv_backward_layouts() and all(_conv_backward_layouts())


def test_a_view_written_through_keeps_the_captured_layout():
    # a view of conv output that is written in place: a reshape (a copy)
    # would lose the write, so the graph keeps its layout
    from janus_frame.backends.janus.passes.layout import channels_last_convs

    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)

    def f(x):
        y = torch.ops.aten.convolution.default(x, w, None, [1, 1], [0, 0], [1, 1], False,
                                                [0, 0], 1)
        v = torch.ops.aten.view.default(y, [2, 4, 36])
        v.mul_(2)
        return y.sum(), v

    from torch.fx.experimental.proxy_tensor import make_fx

    gm = make_fx(f)(torch.randn(2, 3, 8, 8))
    assert channels_last_convs(gm) is gm
