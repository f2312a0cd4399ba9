"""1x1 convolutions of channels-last data as matrix products
(``decomp.conv1x1`` / ``conv1x1_backward``).

The decompositions are compared with the aten ops they replace, on real
tensors and traced with fake ones (values, and strides over every dimension
of size > 1: a [O, C, 1, 1] weight gradient's size-1 strides follow the
input's layout in eager), for every output mask, strides that crop the
input, one-element stride lists and dilation; the cases they must leave to
the library are listed; and whole training steps (SGD with momentum) of a
residual block with a strided 1x1 projection are compared with eager (loss,
every gradient, running statistics) while asserting that no 1x1 convolution
is left in the compiled programs.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_close, graphs, jcompile
from janus_frame.backends.janus.passes.decomp import conv1x1, conv1x1_backward

aten = torch.ops.aten
CL = torch.channels_last


def _args(stride):
    return (list(stride), [0, 0], [1, 1], False, [0, 0], 1)


CASES = [  # (N, C, H, W, stride, bias, dtype)
    (3, 5, 8, 8, (1, 1), True, torch.float32),
    (3, 5, 8, 8, (2, 2), False, torch.float32),
    (3, 5, 7, 9, (2, 2), True, torch.float32),  # strides that do not divide: cropped
    (3, 5, 7, 9, (2, 3), False, torch.float64),
    (3, 5, 5, 6, (3, 1), True, torch.float64),
    (3, 5, 6, 6, (2,), True, torch.float32),  # a one-element stride list
    (4, 5, 1, 1, (1, 1), True, torch.float32),  # a squeeze-excite style 1x1 map
]
DILATION = [[1, 1], [2, 2]]


def _conv_args(stride, dilation):
    return (list(stride), [0, 0], dilation, False, [0, 0], 1)


def _fake(fn, *args):
    """``fn`` traced with fake tensors: the decompositions' results as the
    compiler sees them (shapes and strides of the traced graph)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fake = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
        return fn(*fake)


@pytest.mark.parametrize("n,c,h,w,stride,bias,dtype", CASES)
@pytest.mark.parametrize("dilation", DILATION)
def test_forward_matches_convolution(n, c, h, w, stride, bias, dtype, dilation):
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, dtype=dtype).contiguous(memory_format=CL)
    wt = torch.randn(6, c, 1, 1, dtype=dtype)
    b = torch.randn(6, dtype=dtype) if bias else None
    args = _conv_args(stride, dilation)
    want = aten.convolution(x, wt, b, *args)
    got = conv1x1(x, wt, b, *args)
    assert got is not NotImplemented
    assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert _strides(got) == _strides(want)
    traced = _fake(conv1x1, x, wt, b, *args)
    assert traced.shape == want.shape and _strides(traced) == _strides(want)


@pytest.mark.parametrize("n,c,h,w,stride,bias,dtype", CASES)
@pytest.mark.parametrize("mask", [[True, True, True], [True, False, False], [False, True, False],
                                  [False, True, True], [True, False, True], [False, False, True]])
@pytest.mark.parametrize("grad_format", [CL, torch.contiguous_format])
def test_backward_matches_convolution_backward(n, c, h, w, stride, bias, dtype, mask, grad_format):
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, dtype=dtype).contiguous(memory_format=CL)
    wt = torch.randn(6, c, 1, 1, dtype=dtype)
    args = _conv_args(stride, [1, 1])
    y = aten.convolution(x, wt, None, *args)
    g = torch.randn(y.shape, dtype=dtype).contiguous(memory_format=grad_format)
    bias_sizes = [6] if bias else None
    want = aten.convolution_backward(g, x, wt, bias_sizes, *args, mask)
    got = conv1x1_backward(g, x, wt, bias_sizes, *args, mask)
    assert got is not NotImplemented
    traced = _fake(conv1x1_backward, g, x, wt, bias_sizes, *args, mask)
    for a, t, e, on in zip(got, traced, want, mask):
        if not on:  # (eager's oneDNN path computes the weight's gradient with the bias's anyway)
            assert a is None and t is None
            continue
        assert_close(a, e, rtol=1e-4, atol=1e-4)
        assert _strides(a) == _strides(e)
        assert t.shape == e.shape and _strides(t) == _strides(e)


def _strides(t):
    """Strides over the dimensions of size > 1 (the layout; a weight
    gradient [O, C, 1, 1] is the same memory whatever the size-1 strides)."""
    return tuple(s for s, n in zip(t.stride(), t.shape) if n > 1)


def _operands(**kw):
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=kw.pop("fmt", CL))
    x = x.to(kw.pop("dtype", torch.float32))
    wt = torch.randn(*kw.pop("wshape", (8, 4, 1, 1)), dtype=x.dtype)
    return x, wt


@pytest.mark.parametrize("why,operands,args", [
    ("NCHW input", _operands(fmt=torch.contiguous_format), _args((1, 1))),
    ("one channel, row-major", (torch.randn(2, 1, 6, 6), torch.randn(8, 1, 1, 1)), _args((1, 1))),
    ("no rows", (torch.randn(2, 4, 0, 6).contiguous(memory_format=CL), torch.randn(8, 4, 1, 1)),
     _args((1, 1))),
    ("3x3 kernel", _operands(wshape=(8, 4, 3, 3)), _args((1, 1))),
    ("padding", _operands(), ([1, 1], [1, 1], [1, 1], False, [0, 0], 1)),
    ("groups", _operands(wshape=(8, 2, 1, 1)), ([1, 1], [0, 0], [1, 1], False, [0, 0], 2)),
    ("transposed", _operands(wshape=(4, 8, 1, 1)), ([1, 1], [0, 0], [1, 1], True, [0, 0], 1)),
    ("bfloat16", _operands(dtype=torch.bfloat16), _args((1, 1))),
])
def test_other_convolutions_stay_library_calls(why, operands, args):
    x, wt = operands
    assert conv1x1(x, wt, None, *args) is NotImplemented, why
    g = torch.zeros(1)
    assert conv1x1_backward(g, x, wt, None, *args, [True, True, False]) is NotImplemented, why


class Block(nn.Module):
    """A residual block whose shortcut is a strided 1x1 projection, and a
    1x1 (stride 1) head: the two forms the decomposition takes."""

    def __init__(self, cin=4, cout=8, stride=2):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.head = nn.Conv2d(cout, 3, 1)

    def forward(self, x):
        y = F.relu(self.bn(self.conv(x)) + self.short(x))
        return self.head(y).mean((2, 3))


def _one_by_one_convolutions():
    n = 0
    for g in graphs():
        for node in g.prog.nodes:
            if getattr(node, "op", None) in (aten.convolution.default,
                                            aten.convolution_backward.default):
                weight = node.args[1] if node.op is aten.convolution.default else node.args[2]
                n += tuple(weight.shape[2:]) == (1, 1)
    return n


@pytest.mark.parametrize("hw", [16, 15])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, CL])
def test_training_step_matches_eager(hw, fmt):
    torch.manual_seed(0)
    ref, net = Block(), Block()
    net.load_state_dict(ref.state_dict())
    x = torch.randn(4, 4, hw, hw).contiguous(memory_format=fmt).requires_grad_()
    xr = x.detach().clone().requires_grad_()
    y = torch.randint(0, 3, (4,))

    def step(m, x, y):
        return F.cross_entropy(m(x), y)

    cstep = jcompile(step)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (ref, net)]
    for i in range(3):
        losses = []
        for m, f, inp, opt in ((ref, step, xr, opts[0]), (net, cstep, x, opts[1])):
            m.zero_grad()
            inp.grad = None
            losses.append(f(m, inp, y))
            losses[-1].backward()
            if i < 2:  # (the last step's gradients are compared below)
                opt.step()
        assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)
    assert _one_by_one_convolutions() == 0
    assert any("mm" in str(e) for g in graphs() for e in g.externs)
    assert_close(x.grad, xr.grad, rtol=1e-4, atol=1e-5)
    assert x.grad.stride() == xr.grad.stride()
    for (name, p), q in zip(net.named_parameters(), ref.parameters()):
        assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5)
        if fmt == torch.contiguous_format:
            assert p.grad.stride() == q.grad.stride(), name
        assert _strides(p.grad) == _strides(q.grad), name
    for b, rb in zip(net.buffers(), ref.buffers()):
        assert_close(b, rb, rtol=1e-4, atol=1e-5)


def test_inference_matches_eager():
    torch.manual_seed(0)
    net = Block().eval()
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        want = net(x)
        got = jcompile(net)(x)
    assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert _one_by_one_convolutions() == 0


def test_gradcheck_float64():
    torch.manual_seed(0)
    wt = torch.randn(3, 2, 1, 1, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def f(x, wt, b):
        return torch.tanh(F.conv2d(x, wt, b, stride=2))

    # (float64 convolutions keep their layout: a channels-last input is the user's)
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64).contiguous(memory_format=CL)
    x.requires_grad_()
    cf = jcompile(f)
    assert_close(cf(x, wt, b), f(x, wt, b), rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(cf, (x, wt, b))
    assert _one_by_one_convolutions() == 0


def test_channels_last_off_keeps_library_convolutions(monkeypatch):
    from janus_frame.config import config

    monkeypatch.setattr(config, "channels_last", False)  # JANUS_FRAME_CHANNELS_LAST=0
    torch.manual_seed(0)
    net = Block()
    x = torch.randn(2, 4, 8, 8)
    want = net(x)
    got = jcompile(net)(x)
    assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert _one_by_one_convolutions() > 0  # row-major inputs: oneDNN's


def test_view_of_a_one_channel_result_keeps_eager_layout():
    # a row-major one-channel input is no channels-last data: the product
    # would return NHWC where eager returns NCHW, and the .view would fail
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 1)

    def f(x):
        return conv(x).view(2, -1).sum(1)

    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        assert_close(jcompile(f)(x), f(x), rtol=1e-5, atol=1e-5)


def test_dynamic_batch_keeps_library_convolutions():
    # symbolic sizes are left to oneDNN (the products need static sizes)
    import janus_frame as jf

    torch.manual_seed(0)
    net = Block().eval()
    cf = jf.compile(net, dynamic=True)
    with torch.no_grad():
        for n in (2, 3):
            x = torch.randn(n, 4, 8, 8)
            assert_close(cf(x), net(x), rtol=1e-4, atol=1e-5)
    assert _one_by_one_convolutions() > 0
