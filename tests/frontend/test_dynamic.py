"""Dynamic shapes: automatic dynamic (one recompile when a size changes),
``mark_dynamic``, ``dynamic=True/False``; guards on relations, ranges and
specialisations; sizes used as Python values; every backend compiles
size-generic code. Each test compares with eager on every size."""
from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import janus_frame as jf
from janus_frame import hook
from jfutil import Recorder, assert_same


def entries(fn):
    return len(hook.code_state(fn.__code__).entries)


def recompiles(fn):
    return len(hook.code_state(fn.__code__).recompiles)


def guard_lines(fn):
    st = hook.code_state(fn.__code__)
    return st.entries[-1][1].guard_lines


def run_sizes(fn, cf, make, sizes):
    for n in sizes:
        args = make(n)
        assert_same(cf(*args), fn(*args), f"size {n}")


def test_automatic_dynamic_batch_one_recompile():
    lin = nn.Linear(8, 4)

    def f(x):
        return torch.relu(lin(x)).sum(0) * x.shape[0]

    rec = Recorder()
    cf = jf.compile(f, backend=rec)
    run_sizes(f, cf, lambda n: (torch.randn(n, 8),), [3, 5, 7, 9, 12, 5])
    assert recompiles(f) == 1 and entries(f) == 2
    # the second graph has a symbolic batch: its input's fake tensor says so
    ph = [n for n in rec.graphs[-1].graph.nodes if n.op == "placeholder"][0]
    assert isinstance(ph.meta["example_value"].shape[0], torch.SymInt)
    lines = guard_lines(f)
    assert any("('*', 8)" in g for g in lines), lines
    assert any("2 <= L['x'].size(0)" in g for g in lines), lines
    # the first failure names the size that changed
    assert "now sizes (5, 8)" in hook.code_state(f.__code__).recompiles[0]


@pytest.mark.parametrize("backend", ["eager", "default"])
def test_dynamic_batch_training_step_gradients(backend):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    ref = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    ref.load_state_dict(model.state_dict())

    def step(m, x, y):
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        return loss.detach()

    cstep = jf.compile(step, backend=backend)
    for n in [4, 6, 9, 13, 6]:
        x, y = torch.randn(n, 6), torch.randint(0, 3, (n,))
        for m in (model, ref):
            m.zero_grad()
        assert_same(cstep(model, x, y), step(ref, x, y))
        for (name, p), q in zip(model.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)
    assert recompiles(step) == 1


def test_default_backend_kernels_take_sizes_as_arguments():
    from janus_frame.backends.janus import stats

    def f(x):
        return torch.softmax(x * 2 + 1, -1)

    stats.clear()
    cf = jf.compile(f)
    run_sizes(f, cf, lambda n: (torch.randn(n, 2 * n + 1),), [3, 4, 6, 9])
    assert recompiles(f) == 1
    assert stats.graphs[-1].prog.symbols, "expected sizes as kernel arguments"


def test_mark_dynamic_compiles_once():
    def f(x, y):
        return (x @ y).sum(-1) + x.size(1)

    rec = Recorder()
    cf = jf.compile(f, backend=rec)
    for t, k in [(3, 4), (5, 7), (11, 2)]:
        x, y = torch.randn(t, k), torch.randn(k, 6)
        jf.mark_dynamic(x, [0, 1])
        jf.mark_dynamic(y, 0)
        assert_same(cf(x, y), f(x, y))
    assert len(rec.graphs) == 1 and recompiles(f) == 0
    lines = " ".join(guard_lines(f))
    assert "L['x'].size(1) == L['y'].size(0)" in lines or "L['y'].size(0) == L['x'].size(1)" in lines, lines


def test_mark_dynamic_rejects_bad_arguments():
    with pytest.raises(TypeError):
        jf.mark_dynamic([1, 2], 0)
    with pytest.raises(IndexError):
        jf.mark_dynamic(torch.randn(2, 3), 2)
    with pytest.raises(TypeError):
        jf.mark_dynamic(torch.randn(2, 3), "0")
    t = torch.randn(2, 3)
    jf.mark_dynamic(t, -1)
    assert t._jf_dynamic_dims == {1}


def test_dynamic_false_compiles_every_size_and_true_none():
    def f(x):
        return x * 2

    cf = jf.compile(f, backend=Recorder(), dynamic=False)
    run_sizes(f, cf, lambda n: (torch.randn(n),), [2, 3, 4, 5])
    assert entries(f) == 4

    def g(x, k):
        return x * k + x.shape[0]

    rec = Recorder()
    cg = jf.compile(g, backend=rec, dynamic=True)
    run_sizes(g, cg, lambda n: (torch.randn(n, 3), n + 1), [2, 3, 4, 5])
    assert len(rec.graphs) == 1 and recompiles(g) == 0


def test_sizes_zero_and_one_stay_specialised():
    def f(x):
        return x.sum(0) + 1

    cf = jf.compile(f, backend=Recorder())
    run_sizes(f, cf, lambda n: (torch.randn(n, 3),), [1, 2, 3, 4, 1, 0, 5])
    # size 1 (static), the dynamic entry (>= 2), size 0
    assert entries(f) == 3


def test_size_used_as_python_int_is_specialised_and_guarded():
    weights = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]

    def f(x):
        return x * weights[x.shape[0]]  # a list index needs the value itself

    cf = jf.compile(f, backend=Recorder())
    run_sizes(f, cf, lambda n: (torch.randn(n, 2),), [2, 3, 4, 3, 5, 2])
    # every size needs its own entry, never another size's
    assert entries(f) == 4
    assert "L['x'].size(0) == 3" in " ".join(hook.code_state(f.__code__).entries[1][1].guard_lines)


def test_condition_on_a_size_is_a_guard_not_a_specialisation():
    def f(x):
        if x.shape[0] % 2 == 0:
            return x * 2
        return x - 1

    cf = jf.compile(f, backend=Recorder())
    run_sizes(f, cf, lambda n: (torch.randn(n),), [2, 4, 6, 8, 3, 5, 7])
    assert entries(f) == 3  # static 2, even sizes, odd sizes


_TAG = "a"


def _expand(mask, tgt_len=None):
    _, n = mask.shape
    # transformers' mask helpers: a size passed on, tested against None
    tgt_len = tgt_len if tgt_len is not None else n
    return mask[:, None, None, :].expand(mask.shape[0], 1, tgt_len, n).float()


def test_size_compared_to_none_by_identity_stays_symbolic():
    def f(x, mask):
        b, t = x.shape
        return _expand(mask, tgt_len=t) + x.sum(), (t is None), (t is not _TAG)

    cf = jf.compile(f, backend=Recorder())
    run_sizes(f, cf, lambda n: (torch.randn(2, n), torch.ones(2, n)), [8, 9, 10, 11, 12])
    assert recompiles(f) == 1 and entries(f) == 2


def test_loop_over_a_dynamic_size_compiles_its_body_once():
    def f(x):
        acc = x.new_zeros(x.shape[1])
        rows = []
        for i in range(x.shape[0]):
            acc = acc + x[i] * i
            rows.append(acc)
        return torch.stack(rows).sum(0)

    cf = jf.compile(f, backend=Recorder())
    run_sizes(f, cf, lambda n: (torch.randn(n, 3),), [2, 3, 4, 7, 5, 9])
    assert hook.stats.recompiles == 1  # the size change; the loop body is shared
    report = jf.explain(f)(torch.randn(6, 3))
    assert "JF019" in [b.id for b in report.breaks]


def test_sizes_returned_and_formatted_without_recompiling():
    seen = []

    def f(x):
        b, d = x.shape
        seen.append(f"batch {b}")
        return x.view(b * d) * 2, b * 2 + 1, x.numel(), len(x), torch.Size([b, d])

    cf = jf.compile(f, backend=Recorder())
    expected = []
    for n in [2, 3, 6, 9]:
        x = torch.randn(n, 4)
        assert_same(cf(x), f(x))
        expected += [f"batch {n}"] * 2
    assert seen == expected
    assert recompiles(f) == 1 and entries(f) == 2


def test_relation_between_dynamic_sizes_is_guarded():
    def f(x, y):
        return x + y

    cf = jf.compile(f, backend=Recorder())
    run_sizes(f, cf, lambda n: (torch.randn(n, 3), torch.randn(n, 3)), [2, 4, 6])
    assert recompiles(f) == 1
    lines = " ".join(guard_lines(f))
    assert "L['x'].size(0)" in lines and "L['y'].size(0)" in lines
    # sizes that do not broadcast fail as in eager
    with pytest.raises(RuntimeError, match="size of tensor"):
        cf(torch.randn(4, 3), torch.randn(5, 3))


def test_non_contiguous_inputs_stay_static():
    def f(x):
        return x * 3

    cf = jf.compile(f, backend=Recorder())
    run_sizes(f, cf, lambda n: (torch.randn(3, n).t(),), [2, 3, 4])
    assert entries(f) == 3


def test_causal_attention_over_sequence_lengths_fusing_backend():
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(16, 2, batch_first=True)
    ln = nn.LayerNorm(16)

    def f(x):
        t = x.shape[1]
        mask = torch.triu(torch.full((t, t), float("-inf")), diagonal=1)
        h = ln(x)
        a, _ = attn(h, h, h, attn_mask=mask, need_weights=False)
        return x + a

    cf = jf.compile(f)
    params = list(attn.parameters()) + list(ln.parameters())
    for t in [5, 9, 13, 7]:
        x = torch.randn(2, t, 16)
        got, want = cf(x), f(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        g1 = torch.autograd.grad(got.square().sum(), params)
        g2 = torch.autograd.grad(want.square().sum(), params)
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert recompiles(f) == 1


def test_module_call_with_changing_batch():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    ref = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    ref.load_state_dict(net.state_dict())
    cnet = jf.compile(net, backend="eager")
    for n in [2, 3, 5, 8]:
        x = torch.randn(n, 3, 6, 6)
        assert_same(cnet(x), ref(x))
    # batch-norm running statistics updated the same way
    assert_same(net.state_dict(), ref.state_dict())
    assert recompiles(net.forward) == 1


def test_float_constant_infinity_is_guarded():
    def f(x, c):
        return x + c

    cf = jf.compile(f, backend=Recorder())
    for c in [float("inf"), float("-inf"), 1.5, float("inf")]:
        x = torch.randn(3)
        assert_same(cf(x, c), f(x, c))


class _Cell(nn.Module):
    def __init__(self, inp, hidden):
        super().__init__()
        self.w_ih = nn.Parameter(torch.randn(inp, 4 * hidden) / inp ** 0.5)
        self.w_hh = nn.Parameter(torch.randn(hidden, 4 * hidden) / hidden ** 0.5)
        self.bias = nn.Parameter(torch.zeros(4 * hidden))

    def forward(self, x, h, c):
        i, f, g, o = (x @ self.w_ih + h @ self.w_hh + self.bias).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class _LSTMLM(nn.Module):
    def __init__(self, vocab=40, emb=8, hidden=12):
        super().__init__()
        self.hidden = hidden
        self.embed = nn.Embedding(vocab, emb)
        self.cell = _Cell(emb, hidden)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, tokens):  # (T, B)
        T, B = tokens.shape
        h = tokens.new_zeros(B, self.hidden, dtype=torch.float32)
        c = tokens.new_zeros(B, self.hidden, dtype=torch.float32)
        emb = self.embed(tokens)
        outs = []
        for t in range(T):
            h, c = self.cell(emb[t], h, c)
            outs.append(h)
        return self.out(torch.stack(outs))


# (the step index over a dynamic length is a varying int: x[t] is traced as
# a narrow at a graph-input offset, a view as eager's; the fusing backend
# lowers the offset read from that input, no fallback)
@pytest.mark.parametrize("backend", ["eager", "default"])
def test_lstm_lm_over_sequence_lengths_recompiles_at_most_once(backend):
    torch.manual_seed(0)
    model = _LSTMLM()
    ref = copy.deepcopy(model)

    def make_step(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)

        def step(tokens):
            opt.zero_grad()
            logits = m(tokens[:-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                   tokens[1:].reshape(-1))
            loss.backward()
            opt.step()
            return loss.detach()
        return step

    cstep = jf.compile(make_step(model), backend=backend)
    rstep = make_step(ref)
    before = hook.stats.recompiles
    gen = torch.Generator().manual_seed(1)
    for T in [8, 16, 24, 32, 40, 13, 57]:
        tokens = torch.randint(0, 40, (T + 1, 2), generator=gen)
        torch.testing.assert_close(cstep(tokens), rstep(tokens), rtol=1e-4, atol=1e-5)
    assert hook.stats.recompiles - before <= 1
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)


def test_list_of_varying_length_is_one_stacked_input():
    def f(xs):
        return torch.stack(xs).sum(0) + torch.cat(xs, 0).mean() + xs[-1] + len(xs)

    rec = Recorder()
    cf = jf.compile(f, backend=rec)
    for n in [2, 3, 5, 8]:
        xs = [torch.randn(3) for _ in range(n)]
        assert_same(cf(xs), f(xs))
    assert recompiles(f) == 1 and entries(f) == 2
    lines = " ".join(guard_lines(f))
    assert "list of >= 2 tensors" in lines, lines
    # other lengths of the same kind of list reuse the entry; a list of
    # other tensors does not match it
    xs = [torch.randn(4) for _ in range(3)]
    assert_same(cf(xs), f(xs))


def test_compiled_loop_runs_without_a_cache_lookup_per_iteration(monkeypatch):
    from janus_frame.frontend.resume import TailCall

    def f(x):
        acc = x.new_zeros(x.shape[1])
        for i in range(x.shape[0]):
            acc = torch.tanh(acc + x[i])
        return acc

    runs = []

    def backend(gm, example_inputs):  # counts graph runs
        def run(*args):
            runs.append(gm)
            return gm.forward(*args)
        return run

    cf = jf.compile(f, backend=backend)
    for n in (3, 5):  # the second size makes the length dynamic
        cf(torch.randn(n, 4))
    # every hand-over to another segment goes through a TailCall (and the
    # cache); a loop body iterating in place makes none
    handed = []
    init = TailCall.__init__

    def counting(self, fn, args):
        handed.append(fn.__code__.co_varnames[:fn.__code__.co_argcount])
        init(self, fn, args)
    # the counter itself runs natively (it is called from compiled code)
    jf._C.set_code_strategy(counting.__code__, hook.SKIP, hook.SKIP)
    monkeypatch.setattr(TailCall, "__init__", counting)
    x = torch.randn(40, 4)
    runs.clear()
    torch.testing.assert_close(cf(x), f(x))
    # into the loop, the first iteration, the loop body (once), out of it
    assert len(handed) <= 4, handed
    # and every iteration ran compiled (none fell back to the original code)
    assert len(runs) >= 40, len(runs)


def test_loop_in_place_over_a_module_call_keeps_its_guard_out_of_the_hook():
    # The loop body calls a submodule: its entry's guard checks how the
    # classes resolve __call__ and forward (constants the guard's code holds).
    # The replacement calls that guard from Python on every iteration; the
    # hook must leave it alone as it does the replacement itself.
    class Cell(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x, h):
            return torch.tanh(self.lin(x) + h)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = Cell()

        def forward(self, xs):
            h = xs.new_zeros(xs.shape[1:])
            outs = []
            for t in range(xs.shape[0]):
                h = self.cell(xs[t], h)
                outs.append(h)
            return torch.stack(outs).sum()

    torch.manual_seed(0)
    m = Net()
    runs = []

    def backend(gm, example_inputs):
        def run(*args):
            runs.append(gm)
            return gm.forward(*args)
        return run

    cf = jf.compile(m, backend=backend)
    for n in (3, 5, 9, 4):  # the second length makes the loop dynamic
        xs = torch.randn(n, 2, 4)
        runs.clear()
        torch.testing.assert_close(cf(xs), m(xs))
    assert len(runs) >= 4, len(runs)  # every iteration ran compiled


def test_size_that_depends_on_data_breaks_instead_of_guessing():
    def f(x):
        y = x[x > 0]  # its length is known only when the graph runs
        return y * len(y), y.shape[0]

    cf = jf.compile(f, backend=Recorder())
    for seed in range(3):
        x = torch.randn(8, generator=torch.Generator().manual_seed(seed))
        assert_same(cf(x), f(x))
    assert "JF006" in [b.id for b in jf.explain(f)(torch.randn(8)).breaks]


def test_batchnorm_with_a_dynamic_batch_compiles_in_the_fusing_backend():
    # BatchNorm's 1/N is a symbolic float: the backend evaluates it in the
    # kernel from the size arguments instead of falling back to eager
    from janus_frame.backends.janus import stats

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    ref = copy.deepcopy(net)
    stats.clear()
    cnet = jf.compile(net, dynamic=True)
    for n in [2, 3, 5]:
        x = torch.randn(n, 3, 6, 6)
        got, want = cnet(x), ref(x)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        g1 = torch.autograd.grad(got.square().sum(), list(net.parameters()))
        g2 = torch.autograd.grad(want.square().sum(), list(ref.parameters()))
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert not stats.fallbacks, stats.fallbacks
    assert any(g.prog.symbols for g in stats.graphs)
    assert_same(net.state_dict(), ref.state_dict())


class _MaskedProjection(nn.Module):
    """What Qwen2's and GPT-NeoX's attention blocks do to a padded batch: a
    3-d input scaled by its attention mask, through linears with a bias (the
    composite kernel that flattens the leading dimensions)."""

    def __init__(self):
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.o = nn.Linear(8, 4)

    def forward(self, x, mask):
        h = x * mask[:, :, None]
        return self.o(torch.tanh(self.q(h)))


@pytest.mark.parametrize("write", [False, True], ids=["read", "write"])
@pytest.mark.parametrize("backend", ["eager", "default"])
def test_linear_with_bias_over_sequence_lengths_recompiles_once(backend, write):
    torch.manual_seed(0)
    model = _MaskedProjection()

    def f(x, mask):
        if write:  # an input written back: mutations to functionalize
            mask.mul_(2)
        return model(x, mask)

    cf = jf.compile(f, backend=backend)
    with torch.no_grad():
        for n in [16, 20, 24, 28]:
            x = torch.randn(2, n, 8)
            mask = torch.ones(2, n)
            mask[1, n - n // 4:] = 0
            x2, mask2 = x.clone(), mask.clone()
            torch.testing.assert_close(cf(x, mask), f(x2, mask2), rtol=1e-5, atol=1e-6)
            assert torch.equal(x, x2) and torch.equal(mask, mask2), f"inputs after the call, size {n}"
    assert entries(f) == 2 and recompiles(f) == 1
    # the dynamic entry keeps the length symbolic: no clause pins it to a value
    assert not [g for g in guard_lines(f) if re.search(r"size\(1\) (==|<=) \d", g)], guard_lines(f)


def test_size_pinned_by_the_backend_is_an_explained_guard():
    """A backend may need a dynamic size as a constant: the entry is then
    guarded on it (correct at every size), and the guard and the recompile
    reason it causes say that the backend, not the frame, pinned it."""
    def pinning(gm, example_inputs):
        for n in gm.graph.nodes:
            v = n.meta.get("example_value")
            if n.op == "placeholder" and isinstance(v, torch.Tensor) and v.dim() == 2:
                int(v.shape[1])  # the backend reads the size as a Python int
        return gm.forward

    def f(x):
        return torch.tanh(x) * 2

    cf = jf.compile(f, backend=pinning)
    run_sizes(f, cf, lambda n: (torch.randn(3, n),), [4, 5, 6])
    pinned = [g for g in guard_lines(f) if "specialised by the backend" in g]
    assert pinned and "size(1) == 6" in pinned[0], guard_lines(f)
    assert "specialised by the backend" in hook.code_state(f.__code__).recompiles[-1]


@pytest.mark.parametrize("backend", ["eager", "default"])
def test_padded_labels_over_sequence_lengths_recompile_once(backend):
    # transformers' causal-LM loss pads its labels by one and shifts them:
    # constant_pad_nd on fake tensors specialises the length unless it is
    # decomposed (the Python dispatcher)
    torch.manual_seed(0)
    head = nn.Linear(8, 11)

    def f(h, labels):
        labels = nn.functional.pad(labels, (0, 1), value=-100)
        shift = labels[..., 1:].contiguous()
        logits = head(h).float()
        return nn.functional.cross_entropy(logits.view(-1, 11), shift.view(-1),
                                           ignore_index=-100)

    cf = jf.compile(f, backend=backend)
    for n in [16, 20, 24, 28]:
        h = torch.randn(2, n, 8, requires_grad=True)
        labels = torch.randint(0, 11, (2, n))
        got, want = cf(h, labels), f(h, labels)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(torch.autograd.grad(got, h)[0], torch.autograd.grad(want, h)[0])
    assert entries(f) == 2 and recompiles(f) == 1
    assert not [g for g in guard_lines(f) if re.search(r"size\(1\) (==|<=) \d", g)], guard_lines(f)
