"""The matmul-shaped graph passes on many spellings of the same model.

Every pass acts on the canonical form (passes/canonical.py): a product is an
``mm`` of 2-D operands, a bias an explicit add.  Each test writes one model
in several ways -- ``nn.Linear`` modules, ``F.linear``, ``x @ W.t() + b``,
``torch.addmm``, ``torch.matmul`` on N-D inputs, ``einsum`` -- and asserts
that the pass fired on every one (its count in ``CompiledGraph.passes``, and
the library calls left) and that results and gradients equal eager's.
"""
import collections

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_close, graphs, jcompile

LINEAR_SPELLINGS = ["module", "F.linear", "t", "addmm", "matmul", "einsum"]


def linear(spelling, lin):
    """``lin`` (an nn.Linear) applied in one of several spellings."""
    w, b = lin.weight, lin.bias
    if spelling == "module":
        return lin
    if spelling == "F.linear":
        return lambda x: F.linear(x, w, b)
    if spelling == "t":
        return lambda x: x @ w.t() + b
    if spelling == "addmm":  # 2-D inputs only, as torch.addmm takes
        return lambda x: torch.addmm(b, x.reshape(-1, x.shape[-1]), w.t()).view(
            *x.shape[:-1], w.shape[0])
    if spelling == "matmul":
        return lambda x: torch.matmul(x, w.transpose(0, 1)) + b
    if spelling == "einsum":
        return lambda x: torch.einsum("...k,nk->...n", x, w) + b
    raise ValueError(spelling)


def _externs(cg):
    return collections.Counter(cg.externs)


def _grads_equal(f, args, params, rtol=1e-4, atol=1e-5):
    """f compiled against eager: outputs and the gradients of every input
    requiring grad and of ``params``."""
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad] + list(params)
    ref = f(*args)
    ref.sum().backward()
    expect = [t.grad.clone() for t in leaves]
    for t in leaves:
        t.grad = None
    got = jcompile(f)(*args)
    assert_close(got, ref.detach(), rtol=rtol, atol=atol)
    got.sum().backward()
    for t, e in zip(leaves, expect):
        assert_close(t.grad, e, rtol=rtol, atol=atol * max(1.0, float(e.abs().max())))
        t.grad = None


# -- a linear layer is one library call in every spelling ----------------------

@pytest.mark.parametrize("nd", [2, 3, 4])
@pytest.mark.parametrize("spelling", LINEAR_SPELLINGS)
def test_every_spelling_of_a_linear_layer_is_one_addmm(spelling, nd):
    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 10)
    f = linear(spelling, lin)
    x = torch.randn(*[3, 2, 4][:nd - 1], 12)
    with torch.no_grad():
        got = jcompile(f)(x)
        assert_close(got, f(x), rtol=1e-5, atol=1e-5)
    assert _externs(graphs()[-1]) == {"aten.addmm.default": 1}


@pytest.mark.parametrize("spelling", LINEAR_SPELLINGS)
def test_epilogue_after_a_linear_layer_is_stored_over_the_product(spelling):
    # relu(linear(x)) * 2 on a 3-D input: the pointwise kernel writes over the
    # library call's result (and the result keeps its own shape)
    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 10)
    f0 = linear(spelling, lin)

    def f(x):
        return torch.relu(f0(x)) * 2

    x = torch.randn(3, 4, 12)
    with torch.no_grad():
        got = jcompile(f)(x)
        assert_close(got, f(x), rtol=1e-5, atol=1e-5)
    cg = graphs()[-1]
    assert cg.passes["epilogue"] == 1 and _externs(cg) == {"aten.addmm.default": 1}
    torch._dynamo.reset()
    _grads_equal(f, [x.clone().requires_grad_(True)], [lin.weight, lin.bias])


# -- recurrent models: batched input projections, folded and merged sums -------

class Cell(torch.nn.Module):
    """An LSTM-like cell over T steps in one of several spellings; every
    spelling computes the same function from the same parameters."""

    def __init__(self, spelling, inp=5, hidden=6):
        super().__init__()
        torch.manual_seed(0)
        self.spelling = spelling
        self.ih = torch.nn.Linear(inp, 4 * hidden)
        self.hh = torch.nn.Linear(hidden, 4 * hidden)
        self.out = torch.nn.Linear(hidden, 3)
        self.hidden = hidden

    def gates(self, x, h):
        s, ih, hh = self.spelling, self.ih, self.hh
        if s == "module":
            return ih(x) + hh(h)
        if s == "F.linear":
            return F.linear(x, ih.weight, ih.bias) + F.linear(h, hh.weight, hh.bias)
        if s == "t":
            return x @ ih.weight.t() + h @ hh.weight.t() + (ih.bias + hh.bias)
        if s == "addmm":
            return torch.addmm(torch.addmm(ih.bias + hh.bias, x, ih.weight.t()), h, hh.weight.t())
        if s == "einsum":
            return (torch.einsum("bi,gi->bg", x, ih.weight) + ih.bias
                    + torch.einsum("bh,gh->bg", h, hh.weight) + hh.bias)
        raise ValueError(s)

    def project(self, h):
        return linear(self.spelling, self.out)(h)

    def forward(self, xs):
        h = xs.new_zeros(xs.shape[1], self.hidden)
        c = xs.new_zeros(xs.shape[1], self.hidden)
        outs = []
        for t in range(xs.shape[0]):
            i, f, g, o = self.gates(xs[t], h).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(self.project(h))
        return torch.stack(outs)


CELL_SPELLINGS = ["module", "F.linear", "t", "addmm", "einsum"]


def _train(spelling, T, batch):
    model = Cell(spelling)
    xs = torch.randn(T, batch, 5, generator=torch.Generator().manual_seed(1))
    _grads_equal(model, [xs], list(model.parameters()))
    fw, bw = graphs()[-2], graphs()[-1]
    return fw, bw


@pytest.mark.parametrize("spelling", CELL_SPELLINGS)
def test_recurrent_forward_batches_input_and_output_projections(spelling):
    fw, _ = _train(spelling, T=5, batch=4)
    # x_t @ W_ih for every t: one product over all rows; h_t @ W_out for
    # every t (read by nothing in the recurrence): one product of the
    # stacked states; h @ W_hh accumulates into each step's input rows
    assert fw.passes["row_products"] == 1 and fw.passes["shared_operand"] == 1
    assert fw.passes["fold"] >= 5
    assert _externs(fw) == {"aten.mm.default": 2, "aten.addmm.default": 5, "aten.cat.default": 1} \
        or _externs(fw) == {"aten.mm.default": 2, "aten.addmm.default": 5}


@pytest.mark.parametrize("spelling", CELL_SPELLINGS)
def test_recurrent_backward_sums_weight_gradients_in_one_product(spelling):
    # batch 4 over 6 steps: the summed gradients of W_ih and W_hh are thin
    # products, merged into one product each (W_out's, 3 x 6, is too small
    # to gain from it: a chain of accumulating calls)
    _, bw = _train(spelling, T=6, batch=4)
    assert bw.passes["merge"] == 2
    ops = _externs(bw)
    assert "aten.add.Tensor" not in ops
    # per step one product for the recurrence and one for W_out's gradient
    assert ops["aten.mm.default"] + ops["aten.addmm.default"] <= 2 * 6 + 2


@pytest.mark.parametrize("spelling", CELL_SPELLINGS)
def test_recurrent_backward_folds_wide_weight_gradients_into_accumulating_calls(spelling):
    # batch 64 over 3 steps: too wide to merge, each weight's gradient is a
    # chain of addmm calls accumulating in place
    _, bw = _train(spelling, T=3, batch=64)
    assert bw.passes["fold"] >= 4 and bw.passes["accumulate"] >= 4
    assert "aten.add.Tensor" not in _externs(bw)


def test_all_cell_spellings_compile_to_the_same_library_calls():
    shapes = {}
    for s in CELL_SPELLINGS:
        torch._dynamo.reset()
        fw, bw = _train(s, T=4, batch=4)
        shapes[s] = (_externs(fw), _externs(bw), fw.num_kernels)
    first = shapes[CELL_SPELLINGS[0]]
    for s, got in shapes.items():
        assert got[:2] == first[:2], (s, got, first)


# -- attention: N-D products in several spellings ------------------------------

@pytest.mark.parametrize("spelling", ["matmul", "einsum", "bmm"])
def test_attention_spellings(spelling):
    torch.manual_seed(0)
    B, H, T, D = 2, 3, 5, 4
    qkv = torch.nn.Linear(H * D, 3 * H * D)

    def f(x):
        q, k, v = qkv(x).view(B, T, 3, H, D).permute(2, 0, 3, 1, 4)
        if spelling == "matmul":
            s = q @ k.transpose(-1, -2)
        elif spelling == "einsum":
            s = torch.einsum("bhqd,bhkd->bhqk", q, k)
        else:
            s = torch.bmm(q.reshape(B * H, T, D), k.reshape(B * H, T, D).transpose(1, 2)).view(B, H, T, T)
        p = torch.softmax(s / D ** 0.5, -1)
        return (p @ v).transpose(1, 2).reshape(B, T, H * D)

    x = torch.randn(B, T, H * D, requires_grad=True)
    _grads_equal(f, [x], list(qkv.parameters()))


@pytest.mark.parametrize("spelling", ["module", "matmul", "einsum"])
def test_linear_spellings_through_triton_kernels(spelling):
    # the passes act before code generation: the Triton path sees the same
    # canonical graph (its kernels run in Triton's interpreter here)
    pytest.importorskip("triton")
    from janus_frame.backends.janus import force_triton

    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 10)
    f0 = linear(spelling, lin)

    def f(x):
        return torch.tanh(f0(x)) + x[..., :10]

    x = torch.randn(2, 3, 12)
    with force_triton(), torch.no_grad():
        got = jcompile(f)(x)
        assert_close(got, f(x), rtol=1e-5, atol=1e-5)
    cg = graphs()[-1]
    assert cg.backend == "triton" and _externs(cg) == {"aten.addmm.default": 1}


def test_passes_add_no_shape_guards_under_dynamic_sizes(monkeypatch):
    # the frontend rendered its guards before the backend runs: computing the
    # new nodes' fake values must not constrain the symbolic sizes
    from janus_frame.backends.janus import pipeline

    seen = []
    orig = pipeline.optimize

    def watched(gm):
        env = next(n.meta["val"].fake_mode.shape_env for n in gm.graph.nodes
                   if isinstance(n.meta.get("val"), torch.Tensor))
        before = (len(env.guards), dict(env.replacements), len(env.deferred_runtime_asserts))
        out = orig(gm)
        seen.append((before, (len(env.guards), dict(env.replacements),
                              len(env.deferred_runtime_asserts)), out.meta.get("janus_passes")))
        return out

    monkeypatch.setattr(pipeline, "optimize", watched)
    torch.manual_seed(0)
    lin, lin2 = torch.nn.Linear(8, 6), torch.nn.Linear(6, 6)

    def f(x, h):
        y = torch.einsum("btk,nk->btn", x, lin.weight)
        return torch.relu(lin(x) + lin2(h)) + y.sum(1)[:, None, :]

    cf = jcompile(f, dynamic=True)
    for B, T in ((2, 3), (4, 5), (3, 7)):
        x, h = torch.randn(B, T, 8, requires_grad=True), torch.randn(B, T, 6)
        ref = f(x, h)
        got = cf(x, h)
        assert_close(got, ref.detach(), rtol=1e-5, atol=1e-5)
    assert seen and all(p for _, _, p in seen)
    for before, after, _ in seen:
        assert before == after


# -- weight gradients land where the library call writes them ------------------

@pytest.mark.parametrize("spelling", LINEAR_SPELLINGS)
def test_weight_gradients_are_the_library_results_not_transposed_copies(spelling):
    # A linear layer's weight gradient is returned as t(t(mm(t(g), x))):
    # already the [out, in] product the .grad wants.  Turning the inner
    # transpose of a product into the product of transposed operands would
    # compute [in, out] and copy it, transposed, into a second weight-sized
    # buffer (a step's memory doubled by the parameters' size).
    torch.manual_seed(0)
    l1, l2 = torch.nn.Linear(24, 20), torch.nn.Linear(20, 6)
    f1, f2 = linear(spelling, l1), linear(spelling, l2)

    def f(x):
        return f2(torch.relu(f1(x)))

    x = torch.randn(32, 24)
    _grads_equal(f, [x], [l1.weight, l1.bias, l2.weight, l2.bias])
    bw = graphs()[-1]
    weight_shapes = {(20, 24), (6, 20)}
    alias = getattr(bw.sched, "alias", {})
    copied = [b.name for b in bw.prog.buffers.values()
              if b.kind == "output" and b.name not in alias
              and tuple(b.shape) in weight_shapes]
    assert not copied, (spelling, copied)
    assert _externs(bw)["aten.mm.default"] >= 2
