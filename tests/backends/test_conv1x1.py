"""1x1 convolutions of channels-last data as matrix products
(``decomp.conv1x1`` / ``conv1x1_backward``).

The decompositions are compared with the aten ops they replace (values and
strides, every output mask, strides that crop the input), the cases they
must leave to the library are listed, and whole training steps of a
residual block with a strided 1x1 projection are compared with eager
(loss, every gradient and its strides, running statistics) while asserting
that no 1x1 convolution is left in the compiled programs.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_close, graphs, jcompile
from janus_frame.backends.janus.decomp import conv1x1, conv1x1_backward

aten = torch.ops.aten
CL = torch.channels_last


def _args(stride):
    return (list(stride), [0, 0], [1, 1], False, [0, 0], 1)


CASES = [  # (H, W, stride, bias, dtype)
    (8, 8, (1, 1), True, torch.float32),
    (8, 8, (2, 2), False, torch.float32),
    (7, 9, (2, 2), True, torch.float32),  # strides that do not divide: cropped
    (7, 9, (2, 3), False, torch.float64),
    (5, 6, (3, 1), True, torch.float64),
]


@pytest.mark.parametrize("h,w,stride,bias,dtype", CASES)
def test_forward_matches_convolution(h, w, stride, bias, dtype):
    torch.manual_seed(0)
    x = torch.randn(3, 5, h, w, dtype=dtype).contiguous(memory_format=CL)
    wt = torch.randn(6, 5, 1, 1, dtype=dtype)
    b = torch.randn(6, dtype=dtype) if bias else None
    want = aten.convolution(x, wt, b, *_args(stride))
    got = conv1x1(x, wt, b, *_args(stride))
    assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert got.stride() == want.stride()


@pytest.mark.parametrize("h,w,stride,bias,dtype", CASES)
@pytest.mark.parametrize("mask", [[True, True, True], [True, False, False],
                                  [False, True, False], [False, True, True]])
def test_backward_matches_convolution_backward(h, w, stride, bias, dtype, mask):
    torch.manual_seed(0)
    x = torch.randn(3, 5, h, w, dtype=dtype).contiguous(memory_format=CL)
    wt = torch.randn(6, 5, 1, 1, dtype=dtype)
    y = aten.convolution(x, wt, None, *_args(stride))
    g = torch.randn_like(y)
    bias_sizes = [6] if bias else None
    want = aten.convolution_backward(g, x, wt, bias_sizes, *_args(stride), mask)
    got = conv1x1_backward(g, x, wt, bias_sizes, *_args(stride), mask)
    for a, e, on in zip(got, want, mask):
        if not on:
            assert a is None and e is None
            continue
        assert_close(a, e, rtol=1e-4, atol=1e-4)
        assert _strides(a) == _strides(e)


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
    for _ in range(3):
        losses = []
        for m, f, inp in ((ref, step, xr), (net, cstep, x)):
            m.zero_grad()
            inp.grad = None
            losses.append(f(m, inp, y))
            losses[-1].backward()
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
    assert torch.autograd.gradcheck(cf, (x, wt, b))
    assert _one_by_one_convolutions() == 0
