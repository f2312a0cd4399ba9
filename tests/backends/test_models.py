"""Whole models through the fusing backend, against eager: forward, and full
training steps (loss and every parameter after 5 SGD steps) via
AOTAutograd; fp64 gradcheck per lowering family."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import assert_close, graphs, jcompile


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(64, 128), nn.Linear(128, 128), nn.Linear(128, 10)

    def forward(self, x):
        return self.l3(F.relu(self.l2(F.gelu(self.l1(x)))))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.b1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.b2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)
        x = F.relu(self.b2(self.c2(x)) + x)
        x = F.adaptive_avg_pool2d(x, 4)
        return self.fc(x.flatten(1))


class LSTMLoop(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = nn.LSTMCell(16, 32)
        self.out = nn.Linear(32, 5)

    def forward(self, xs):
        h = xs.new_zeros(xs.shape[1], 32)
        c = xs.new_zeros(xs.shape[1], 32)
        for t in range(xs.shape[0]):
            h, c = self.cell(xs[t], (h, c))
        return self.out(h)


class Block(nn.Module):
    def __init__(self, d=32, heads=4):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.heads = heads

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (C // self.heads) ** -0.5
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 32)
        self.pos = nn.Parameter(torch.randn(16, 32) * 0.02)
        self.blocks = nn.Sequential(Block(), Block())
        self.ln = nn.LayerNorm(32)
        self.head = nn.Linear(32, 50)

    def forward(self, idx):
        x = self.emb(idx) + self.pos[: idx.shape[1]]
        return self.head(self.ln(self.blocks(x)))


def _data(name):
    g = torch.Generator().manual_seed(0)
    if name == "mlp":
        return MLP(), torch.randn(32, 64, generator=g), torch.randint(0, 10, (32,), generator=g)
    if name == "cnn":
        return CNN(), torch.randn(4, 3, 16, 16, generator=g), torch.randint(0, 10, (4,), generator=g)
    if name == "lstm":
        return LSTMLoop(), torch.randn(5, 8, 16, generator=g), torch.randint(0, 5, (8,), generator=g)
    m = GPT()
    idx = torch.randint(0, 50, (2, 16), generator=g)
    return m, idx, torch.randint(0, 50, (2 * 16,), generator=g)


def _loss(m, x, t):
    out = m(x)
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), t)


@pytest.mark.parametrize("name", ["mlp", "cnn", "lstm", "gpt"])
def test_model_forward_matches_eager(name):
    torch.manual_seed(0)
    m, x, _ = _data(name)
    m.eval()
    cm = jcompile(m)
    with torch.no_grad():
        assert_close(cm(x), m(x), rtol=1e-4, atol=1e-5)
    assert sum(g.num_kernels for g in graphs()) >= 1


@pytest.mark.parametrize("name", ["mlp", "cnn", "lstm", "gpt"])
def test_model_training_steps_match_eager(name):
    torch.manual_seed(0)
    m, x, t = _data(name)
    m.train()
    ref = copy.deepcopy(m)
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    ropt = torch.optim.SGD(ref.parameters(), lr=0.05)
    step = jcompile(lambda x, t: _loss(m, x, t))
    for _ in range(5):
        opt.zero_grad()
        loss = step(x, t)
        loss.backward()
        opt.step()
        ropt.zero_grad()
        rloss = _loss(ref, x, t)
        rloss.backward()
        ropt.step()
        assert_close(loss, rloss, rtol=1e-4, atol=1e-5)
    for (n, p), (_, rp) in zip(m.named_parameters(), ref.named_parameters()):
        assert_close(p, rp, rtol=1e-4, atol=1e-5)
    for (n, b), (_, rb) in zip(m.named_buffers(), ref.named_buffers()):
        assert_close(b, rb, rtol=1e-4, atol=1e-5)
    # forward and backward both compiled, with fused kernels
    assert len(graphs()) >= 2 and sum(g.num_kernels for g in graphs()) >= 2


FAMILIES = {
    "pointwise": lambda x, y: torch.tanh(x) * torch.sigmoid(y) + torch.exp(-x * x) / (1 + y * y),
    "transcendental": lambda x, y: torch.erf(x) + torch.log1p(y * y) + torch.sqrt(x * x + 1) ** 1.5,
    "views": lambda x, y: (x.t() * y.t()).reshape(-1)[::2] + torch.cat([x, y], 1).sum(1).repeat(4)[:8],
    "reductions": lambda x, y: x.sum(0) * y.mean(1).sum() + x.amax(1).sum() + y.var(0),
    "softmax": lambda x, y: torch.softmax(x, -1) * torch.log_softmax(y, 0),
    "layernorm": lambda x, y: F.layer_norm(x, (5,), y[0], y[1]),
    "matmul": lambda x, y: F.gelu(x @ y.t() + 1),
}


@pytest.mark.parametrize("fam", sorted(FAMILIES))
def test_gradcheck_fp64_per_family(fam):
    f = FAMILIES[fam]
    torch.manual_seed(1)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    cf = jcompile(f)
    assert torch.autograd.gradcheck(cf, (x, y), eps=1e-6, atol=1e-5)
    assert graphs() and all(g.num_kernels >= 0 for g in graphs())
    assert any(g.num_kernels >= 1 for g in graphs())


def test_backward_inside_a_torch_compile_frame_matches_eager():
    # the compiled backward runs from inside the user's frame while
    # torch.compile's hook is live: the runtime wrappers must stand aside,
    # and never be traced themselves
    from janus_frame.backends.janus.runtime.untraced import not_traced, stand_aside

    torch.manual_seed(0)
    m, x, t = _data("mlp")
    ref = copy.deepcopy(m)

    def step(model, x, t):
        loss = _loss(model, x, t)
        loss.backward()
        return loss

    cstep = jcompile(step)
    for _ in range(3):
        for p in list(m.parameters()) + list(ref.parameters()):
            p.grad = None
        assert_close(cstep(m, x, t), step(ref, x, t), rtol=1e-4, atol=1e-5)
        for p, rp in zip(m.parameters(), ref.parameters()):
            assert_close(p.grad, rp.grad, rtol=1e-4, atol=1e-5)
    assert len(graphs()) >= 2
    entries = torch._C._dynamo.eval_frame._debug_get_cache_entry_list
    for wrap in (stand_aside, not_traced):
        assert entries(wrap(lambda: None).__code__) == []
