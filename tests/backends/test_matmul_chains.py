"""Matmul sums folded into accumulating library calls, many-input cats, and
loop-invariant values computed before the innermost loop; each against eager
(forward and gradients), with the rewrite itself asserted."""
import torch
import torch.nn.functional as F

from conftest import assert_close, graphs, jcompile

aten = torch.ops.aten


def _externs(cg):
    return [str(n.op) for n in cg.prog.nodes if hasattr(n, "op")]


def test_sum_of_products_becomes_accumulating_addmm():
    def f(x, w, h, u, b):
        return torch.tanh(x @ w + h @ u + b)

    x, h = torch.randn(16, 32), torch.randn(16, 24)
    w, u, b = torch.randn(32, 48), torch.randn(24, 48), torch.randn(48)
    cf = jcompile(f)
    assert_close(cf(x, w, h, u, b), f(x, w, h, u, b), rtol=1e-5, atol=1e-5)
    cg = graphs()[-1]
    ops = _externs(cg)
    assert ops.count("aten.mm.default") == 1 and ops.count("aten.addmm.default") == 1
    # the product x @ w is read only by the addmm: it is accumulated into in place
    assert len(cg.sched.accumulate) == 1 and "_addmm_(" in cg._wrapper_src


def _cell_grads(T, hidden, batch):
    torch.manual_seed(T)
    w = torch.randn(hidden, hidden, requires_grad=True)
    u = torch.randn(hidden, hidden, requires_grad=True)

    def f(xs):
        h = torch.zeros(batch, hidden)
        for t in range(xs.shape[0]):
            h = torch.tanh(xs[t] @ w + h @ u)
        return h.sum()

    xs = torch.randn(T, batch, hidden)
    cf = jcompile(f)
    cf(xs).backward()
    got = w.grad.clone(), u.grad.clone()
    w.grad = u.grad = None
    f(xs).backward()
    for g, ref in zip(got, (w.grad, u.grad)):
        # sums of T products in another order: an absolute tolerance at the
        # scale of the largest entries
        assert_close(g, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    return graphs()[-2], graphs()[-1]


def test_weight_gradients_of_a_short_chain_accumulate_in_place():
    _, bw = _cell_grads(T=2, hidden=20, batch=4)
    ops = _externs(bw)
    assert "aten.add.Tensor" not in ops and ops.count("aten.addmm.default") >= 2
    assert len(bw.sched.accumulate) >= 1


def test_weight_gradients_summed_over_steps_become_one_product():
    fw, bw = _cell_grads(T=6, hidden=20, batch=4)
    # forward: xs[t] @ w for every t is one product over all rows
    assert _externs(fw).count("aten.mm.default") == 1
    ops = _externs(bw)
    assert "aten.add.Tensor" not in ops
    # per step only the recurrence's product remains; the weight gradients
    # are one product each of the stacked per-step operands (stacked once)
    assert ops.count("aten.addmm.default") + ops.count("aten.mm.default") <= 6 + 2 + 1
    assert len(_sliced(bw)) == 3  # the stacked operands, each written in slices


def test_fold_keeps_products_read_elsewhere_and_broadcast_sums():
    def f(x, w, v, u, c, r):
        p = x @ w
        return p + c, p * 2, (x @ v) + r, (x @ u) + x[:, :1]

    x, w, v, u = (torch.randn(8, 8) for _ in range(4))
    c, r = torch.randn(8), torch.randn(1, 8)
    cf = jcompile(f)
    assert_close(cf(x, w, v, u, c, r), f(x, w, v, u, c, r), rtol=1e-5, atol=1e-5)
    ops = _externs(graphs()[-1])
    # p has two readers: it stays an mm; the broadcast biases fold
    assert ops.count("aten.mm.default") == 1 and ops.count("aten.addmm.default") == 2


def test_a_product_added_to_itself_is_not_folded_into_itself():
    def f(x, w):
        return x @ w + x @ w  # one product after common-subexpression elimination

    x, w = torch.randn(6, 5), torch.randn(5, 4)
    assert_close(jcompile(f)(x, w), f(x, w))


def test_fold_leaves_other_dtypes_and_alpha_alone():
    def f(x, w, c, d):
        return torch.add(x @ w, c, alpha=2), (x @ w) + d

    x, w = torch.randn(5, 6), torch.randn(6, 7)
    c, d = torch.randn(5, 7), torch.randn(5, 7, dtype=torch.float64)
    cf = jcompile(f)
    assert_close(cf(x, w, c, d), f(x, w, c, d), rtol=1e-5, atol=1e-5)
    assert "aten.addmm.default" not in _externs(graphs()[-1])


def test_accumulating_addmm_under_dynamic_sizes():
    def f(x, w, h, u):
        return x @ w + h @ u

    cf = jcompile(f, dynamic=True)
    w, u = torch.randn(12, 9), torch.randn(7, 9)
    for n in (3, 10, 17):
        x, h = torch.randn(n, 12), torch.randn(n, 7)
        assert_close(cf(x, w, h, u), f(x, w, h, u), rtol=1e-5, atol=1e-5)


def _sliced(cg):
    """Buffers written in slices by several pointwise nodes (cats)."""
    writers = {}
    for n in cg.prog.nodes:
        if not hasattr(n, "op"):
            writers[n.out.name] = writers.get(n.out.name, 0) + 1
    return {b: k for b, k in writers.items() if k > 1}


def test_stacks_by_number_of_inputs():
    def stack(xs):
        return torch.stack([torch.sigmoid(xs[i]) * 2 for i in range(xs.shape[0])]).sum(-1)

    def few(a, b):
        return torch.cat([a * 2, b + 1], 1).exp()

    # several inputs: each computed straight into its slice of the stack
    xs = torch.randn(6, 5, 33)
    assert_close(jcompile(stack)(xs), stack(xs), rtol=1e-5, atol=1e-5)
    cg = graphs()[-1]
    assert "aten.cat.default" not in _externs(cg) and list(_sliced(cg).values()) == [6]
    # many (an RNN's states): the library's cat
    xs = torch.randn(12, 5, 33)
    assert_close(jcompile(stack)(xs), stack(xs), rtol=1e-5, atol=1e-5)
    assert "aten.cat.default" in _externs(graphs()[-1])
    # few: one fused kernel
    a, b = torch.randn(4, 3), torch.randn(4, 5)
    assert_close(jcompile(few)(a, b), few(a, b))
    assert "aten.cat.default" not in _externs(graphs()[-1])
    assert graphs()[-1].num_kernels == 1


def test_loop_invariant_values_are_computed_before_the_inner_loop():
    # a per-row scale from a scalar tensor and a per-row target: the
    # cross-entropy backward pattern that was left scalar by gcc
    def f(x, scale, tgt):
        onehot = (tgt[:, None] == torch.arange(x.shape[1])).float()
        return (torch.exp(x) * (scale / 3.0) - onehot * torch.where(tgt[:, None] >= 0, scale, 0.0)).sum(1)

    x = torch.randn(64, 300)
    scale = torch.tensor(1.5)
    tgt = torch.randint(-1, 300, (64,))
    cf = jcompile(f)
    assert_close(cf(x, scale, tgt), f(x, scale, tgt), rtol=1e-5, atol=1e-5)
    src = graphs()[-1].csource.text
    assert "const float hr0_" in src or "const float hp_" in src
    # tiny divisors still divide (their reciprocal overflows)
    tiny = torch.tensor(1e-39)
    assert_close(cf(x, tiny, tgt), f(x, tiny, tgt), rtol=1e-5, atol=1e-5)


def test_products_sharing_a_weight_outside_the_recurrence_are_batched():
    def f(x, u, w):
        h, outs = x, []
        for t in range(6):
            h = torch.tanh(h @ u)
            outs.append(h @ w)   # read by nothing in the recurrence
        return torch.stack(outs).sum(0) * 2, h

    x, u, w = torch.randn(5, 8), torch.randn(8, 8) * 0.5, torch.randn(8, 3)
    cf = jcompile(f)
    assert_close(cf(x, u, w), f(x, u, w), rtol=1e-5, atol=1e-5)
    ops = _externs(graphs()[-1])
    assert ops.count("aten.mm.default") == 6 + 1


def test_products_feeding_their_own_operands_are_not_batched():
    def f(x, w):
        h = x
        for t in range(6):
            h = torch.tanh(h @ w) + h * 0.5
        return h

    x, w = torch.randn(5, 8), torch.randn(8, 8) * 0.5
    cf = jcompile(f)
    assert_close(cf(x, w), f(x, w), rtol=1e-5, atol=1e-5)
    ops = _externs(graphs()[-1])
    assert ops.count("aten.mm.default") + ops.count("aten.addmm.default") == 6
    assert "aten.cat.default" not in ops


def test_products_returned_as_outputs_stay_separate_tensors():
    def f(xs, w):
        return [xs[t] @ w for t in range(xs.shape[0])]

    xs, w = torch.randn(5, 3, 4), torch.randn(4, 6)
    outs = jcompile(f)(xs, w)
    assert_close(outs, f(xs, w))
    assert len({o.untyped_storage().data_ptr() for o in outs}) == 5
    outs[0].add_(1)  # in place on one output leaves the others alone
    assert_close(outs[1], xs[1] @ w)


def test_two_weights_shared_outside_the_recurrence_are_batched_one_after_the_other():
    def f(x, u, w, v):
        h, a, b = x, [], []
        for t in range(5):
            h = torch.tanh(h @ u)
            p = h @ w              # batched over t (reads no product of v)
            a.append(p)
            b.append((p * 2) @ v)  # batched over t too, after the first group
        return torch.stack(a).sum(0), torch.stack(b).sum(0), h

    x, u = torch.randn(4, 6), torch.randn(6, 6) * 0.5
    w, v = torch.randn(6, 6), torch.randn(6, 3)
    cf = jcompile(f)
    assert_close(cf(x, u, w, v), f(x, u, w, v), rtol=1e-5, atol=1e-5)
    ops = _externs(graphs()[-1])
    assert ops.count("aten.mm.default") == 5 + 2


def test_products_sharing_a_weight_with_every_operand_ready_before_the_first():
    def f(x, w):
        a, b, c, d = x + 1, x * 2, x - 3, x.sin()
        return (a @ w).relu() + (b @ w).relu() + (c @ w).relu() + (d @ w).relu()

    x, w = torch.randn(8, 5), torch.randn(5, 6)
    assert_close(jcompile(f)(x, w), f(x, w), rtol=1e-5, atol=1e-5)
    assert _externs(graphs()[-1]).count("aten.mm.default") == 1


def test_batched_input_gradients_in_a_backward_graph():
    # cat's backward emits every slice before the products reading them
    def f(a, b, c, d, w):
        return torch.cat([(t * 2) @ w for t in (a, b, c, d)], 0).tanh().sum()

    xs = [torch.randn(8, 5, requires_grad=True) for _ in range(4)]
    w = torch.randn(5, 6, requires_grad=True)
    jcompile(f)(*xs, w).backward()
    got = [t.grad.clone() for t in xs + [w]]
    for t in xs + [w]:
        t.grad = None
    f(*xs, w).backward()
    for g, t in zip(got, xs + [w]):
        assert_close(g, t.grad, rtol=1e-5, atol=1e-5)


def test_a_running_sum_that_is_also_an_operand_is_not_merged_away():
    def f(a, b, w, c, d, e, g):
        p = a @ b
        return p + p @ w + c @ d + e @ g

    a, c, e = torch.randn(64, 2), torch.randn(64, 2), torch.randn(64, 2)
    b, d, g = torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 4)
    w = torch.randn(4, 4)
    assert_close(jcompile(f)(a, b, w, c, d, e, g), f(a, b, w, c, d, e, g), rtol=1e-5, atol=1e-5)


def test_two_weights_sharing_the_same_operands_are_each_one_product():
    def f(x, w1, w2):
        s = 0
        for i in range(4):
            l = x[i] * 2
            s = s + (l @ w1).tanh().sum() + (l @ w2).sin().sum()
        return s

    x, w1, w2 = torch.randn(4, 8, 5), torch.randn(5, 6), torch.randn(5, 3)
    assert_close(jcompile(f)(x, w1, w2), f(x, w1, w2), rtol=1e-5, atol=1e-4)
    # one product per weight (the stack of 4 operands is a fused kernel)
    assert _externs(graphs()[-1]).count("aten.mm.default") == 2


def test_batching_keeps_random_draws_in_eager_order():
    import torch.nn.functional as F

    def f(x, w):
        outs = []
        for i in range(4):
            l = F.dropout(x[i], 0.5, training=True)
            outs.append(torch.normal(l @ w, 1.0).sum())
        return torch.stack(outs)

    x, w = torch.randn(4, 8, 5), torch.randn(5, 6)
    cf = jcompile(f)
    cf(x, w)
    for seed in range(2):
        torch.manual_seed(seed)
        ref = f(x, w)
        torch.manual_seed(seed)
        assert_close(cf(x, w), ref, rtol=1e-4, atol=1e-4)


def test_product_with_a_transposed_row_major_weight_is_a_linear_call():
    """``x @ w.t()`` (+ bias) over a row-major ``w`` -- every nn.Linear -- is
    called as ``linear(x, w, b)``: the transposed view is made in C++, not by
    an ``as_strided`` per call in the wrapper; results stay bit-identical to
    eager's. A weight that is not row-major, and addmm with beta/alpha, keep
    the plain call."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 16)
    w, b, w2 = torch.randn(24, 16), torch.randn(24), torch.randn(24, 16)
    b2 = torch.randn(16, 24)
    wc = torch.randn(16, 24)  # (x @ wc: no transpose of a row-major weight)

    def f(x, w, b, w2, b2, wc):
        y = F.linear(x, w, b)              # addmm(b, x2d, w.t())
        z = F.linear(x, w2)                # mm(x2d, w2.t())
        v = torch.addmm(b2, x.reshape(16, 16), w.t())  # a 2-D bias
        u = torch.addmm(b2, x.reshape(16, 16), w.t(), beta=0.5)
        return torch.relu(y) + z, v, u, x @ wc

    args = (x, w, b, w2, b2, wc)
    got = jcompile(f)(*args)
    ref = f(*args)
    for g, r in zip(got, ref):
        assert torch.equal(g, r)
    cg = graphs()[-1]
    ops = _externs(cg)
    # five products, three of them over a transposed row-major weight
    assert ops.count("aten.mm.default") + ops.count("aten.addmm.default") == 5
    assert cg._wrapper_src.count("_linear(") == 3
    # the inputs are not changed by the call
    assert torch.equal(args[0], x) and torch.equal(args[1], w)
