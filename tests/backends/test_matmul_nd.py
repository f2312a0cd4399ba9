"""Matrix products on 2-D, 3-D and 4-D inputs, in every spelling, through the
fusing backend: results and gradients of the shape and value eager gives.

A pointwise result of a library call's result may be stored over that result
(``Scheduler._find_reuse``); the shapes may differ ([B*T, C] from the
product, [B, T, C] after), and the result must come back with its own shape.
"""
import pytest
import torch
import torch.nn.functional as F

from conftest import assert_close, graphs, jcompile

SHAPES = {1: (24,), 2: (16, 24), 3: (2, 8, 24), 4: (2, 3, 4, 24)}


def _lin():
    torch.manual_seed(0)
    return torch.nn.Linear(24, 24)


def _spellings(lin):
    w, b = lin.weight, lin.bias
    return {
        "module": lambda x: lin(x),
        "F.linear": lambda x: F.linear(x, w, b),
        "matmul_t": lambda x: x @ w.t() + b,
        "matmul": lambda x: torch.matmul(x, w.T) + b,
        "einsum": lambda x: torch.einsum("...k,nk->...n", x, w) + b,
    }


def _train_check(f, x, params, rtol=1e-5, atol=1e-5, compiler=None):
    """f compiled (by ``compiler``, dynamo with the fusing backend unless
    given) against eager: the output, and the gradients of x and of every
    parameter."""
    xe = x.clone().requires_grad_(True)
    xc = x.clone().requires_grad_(True)
    ref = f(xe)
    ref.square().sum().backward()
    ref_grads = [xe.grad] + [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    got = (compiler or jcompile)(f)(xc)
    assert got.shape == ref.shape
    assert_close(got, ref.detach(), rtol=rtol, atol=atol)
    got.square().sum().backward()
    got_grads = [xc.grad] + [p.grad for p in params]
    for g, r in zip(got_grads, ref_grads):
        assert_close(g, r, rtol=1e-4, atol=1e-4)
    for p in params:
        p.grad = None


@pytest.mark.parametrize("nd", [1, 2, 3, 4])
@pytest.mark.parametrize("spelling", ["module", "F.linear", "matmul_t", "matmul", "einsum"])
def test_residual_linear_keeps_its_shape(nd, spelling):
    lin = _lin()
    f0 = _spellings(lin)[spelling]

    def f(x):
        return x + f0(x)

    x = torch.randn(*SHAPES[nd])
    with torch.no_grad():
        got = jcompile(f)(x)
        ref = f(x)
    assert got.shape == ref.shape
    assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()
    _train_check(f, x, [lin.weight, lin.bias])


@pytest.mark.parametrize("nd", [1, 2, 3, 4])
def test_pointwise_after_a_product_stored_over_it_keeps_its_shape(nd):
    # relu(linear(x)) * 2: one kernel stores over the product's memory
    lin = _lin()

    def f(x):
        return torch.relu(lin(x)) * 2 + 1

    x = torch.randn(*SHAPES[nd])
    with torch.no_grad():
        got = jcompile(f)(x)
        ref = f(x)
    assert got.shape == ref.shape
    assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()
    _train_check(f, x, [lin.weight, lin.bias])


@pytest.mark.parametrize("nd", [3, 4])
def test_batched_matmul_and_broadcast_batch(nd):
    torch.manual_seed(1)
    shape = SHAPES[nd]
    a = torch.randn(*shape[:-1], 5)
    bb = torch.randn(*shape[:-2], 5, 7)   # batched right operand
    bc = torch.randn(5, 7)                # broadcast right operand

    def f(a, b1, b2):
        return a + 0 * a.sum(), (a @ b1) + 1, torch.matmul(a, b2).relu() + a.sum(-1, keepdim=True)

    with torch.no_grad():
        got = jcompile(f)(a, bb, bc)
    assert_close(got, f(a, bb, bc), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("nd", [3, 4])
def test_attention_scores_keep_their_shape_forward_and_backward(nd):
    torch.manual_seed(2)
    shape = (2, 8, 16) if nd == 3 else (2, 4, 8, 16)
    q = torch.randn(*shape)
    k = torch.randn(*shape, requires_grad=True)

    def f(q):
        s = q @ k.transpose(-1, -2) / 4.0
        return q + torch.softmax(s, -1) @ k

    _train_check(f, q, [k])


@pytest.mark.parametrize("spelling", ["module", "F.linear", "matmul_t", "matmul", "einsum", "addmv"])
def test_linear_on_a_vector_returns_a_vector_through_the_frontend(spelling):
    # nn.Linear(24, 10) on a 1-d input is [10], not [1, 10]: through
    # janus_frame's own frontend and the fusing backend, forward and backward
    import janus_frame as jf
    from janus_frame.backends.janus import stats

    torch.manual_seed(3)
    lin = torch.nn.Linear(24, 10)
    f0 = dict(_spellings(lin), addmv=lambda x: torch.addmv(lin.bias, lin.weight, x))[spelling]

    def f(x):
        return torch.tanh(f0(x)) * 2

    _train_check(f, torch.randn(24), [lin.weight, lin.bias], compiler=jf.compile)
    assert stats.graphs  # (compiled by the fusing backend, not run natively)
