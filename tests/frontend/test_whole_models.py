"""Whole models captured as one graph each, equal to eager: an MLP, a small
CNN with BatchNorm, a hand-written LSTM cell loop over 16 steps, a GPT-style
decoder block from nn modules; plus in-place updates and aliasing."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import janus_frame as jf
from jfutil import Recorder, assert_same


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 512), nn.Linear(512, 512), nn.Linear(512, 10)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.relu(self.bn2(self.conv2(x))) + 0.0
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class LSTMLoop(nn.Module):
    def __init__(self, d=32, h=64):
        super().__init__()
        self.h = h
        self.wx = nn.Linear(d, 4 * h)
        self.wh = nn.Linear(h, 4 * h, bias=False)

    def cell(self, x, h, c):
        gates = self.wx(x) + self.wh(h)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def forward(self, xs):
        h = xs.new_zeros(xs.shape[1], self.h)
        c = torch.zeros_like(h)
        outs = []
        for t in range(xs.shape[0]):
            h, c = self.cell(xs[t], h, c)
            outs.append(h)
        return torch.stack(outs), (h, c)


class Block(nn.Module):
    def __init__(self, d=64, heads=4):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.drop = nn.Dropout(0.0)

    def attn(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
        att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.drop(self.proj(y))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


def _check_model(model, *inputs, train=False):
    rec = Recorder()
    ref = copy.deepcopy(model)
    model.train(train)
    ref.train(train)
    cm = jf.compile(model, backend=rec, fullgraph=True)
    for _ in range(2):
        with torch.set_grad_enabled(train):
            out = cm(*inputs)
            exp = ref(*inputs)
        assert_same(exp, out)
        if train:
            loss_c = sum(o.sum() for o in jf_flat(out))
            loss_e = sum(o.sum() for o in jf_flat(exp))
            loss_c.backward()
            loss_e.backward()
            for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=n)
    for (n, b), (_, r) in zip(model.named_buffers(), ref.named_buffers()):
        torch.testing.assert_close(b, r, msg=n)
    assert len(rec.graphs) == 1, f"{len(rec.graphs)} graphs"
    n_params = len(list(model.parameters())) + len(list(model.buffers()))
    placeholders = rec.placeholders(0)
    assert len(placeholders) <= len(inputs) + n_params
    assert not any(n.op == "get_attr" for n in rec.graphs[0].graph.nodes), "constants baked in"
    return rec


def jf_flat(x):
    if isinstance(x, torch.Tensor):
        return [x]
    return [t for y in x for t in jf_flat(y)]


def test_mlp_one_graph():
    rec = _check_model(MLP(), torch.randn(64, 784))
    assert len(rec.placeholders(0)) == 7


def test_cnn_batchnorm_one_graph_eval_and_train():
    _check_model(CNN(), torch.randn(4, 3, 16, 16))
    jf.reset()
    _check_model(CNN(), torch.randn(4, 3, 16, 16), train=True)


def test_lstm_cell_loop_16_steps_one_graph():
    rec = _check_model(LSTMLoop(), torch.randn(16, 4, 32))
    assert sum(1 for n in rec.graphs[0].graph.nodes if n.target is torch.tanh) == 32
    jf.reset()
    _check_model(LSTMLoop(), torch.randn(16, 4, 32), train=True)


def test_gpt_block_one_graph():
    _check_model(Block(), torch.randn(2, 16, 64))
    jf.reset()
    _check_model(Block(), torch.randn(2, 16, 64), train=True)


def test_inplace_updates_on_inputs_buffers_parameters():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(3))
            self.register_buffer("running", torch.zeros(3))

        def forward(self, x):
            self.running.mul_(0.9).add_(x.mean(0) * 0.1)
            with torch.no_grad():
                self.w.sub_(0.01 * self.w)
            x[:, 0] = 1.0
            y = x.view(-1)
            y.add_(1)  # aliases x
            return x * self.w, y
    m, ref = M(), None
    ref = copy.deepcopy(m)
    rec = Recorder()
    cm = jf.compile(m, backend=rec, fullgraph=True)
    for _ in range(3):
        x1 = torch.randn(4, 3)
        x2 = x1.clone()
        out = cm(x1)
        exp = ref(x2)
        assert_same(exp, out)
        torch.testing.assert_close(x1, x2)
        torch.testing.assert_close(m.running, ref.running)
        torch.testing.assert_close(m.w, ref.w)
        assert out[1].data_ptr() == x1.data_ptr()  # the view of the input, not a copy
    assert len(rec.graphs) == 1


class _Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lin, self.norm = nn.Linear(d, d), nn.LayerNorm(d)

    def forward(self, x):
        return self.norm(x + torch.tanh(self.lin(x)))


class _Deep(nn.Module):
    def __init__(self, d=8, n=3):
        super().__init__()
        self.body = nn.ModuleDict({"layers": nn.Sequential(*[_Block(d) for _ in range(n)])})
        self.head = nn.Linear(d, 2)

    def forward(self, x):
        return self.head(self.body["layers"](x))


def test_parameters_of_nested_modules_are_loaded_through_shared_reads():
    """The replacement reads each module on the way to a parameter once, not
    once per parameter below it, and still sees parameters rebound or
    updated in place between calls."""
    from janus_frame.frontend.replacement import load_inputs
    from janus_frame.frontend.sources import ArgSource, AttrSource, ItemSource

    torch.manual_seed(0)
    m, x = _Deep(), torch.randn(4, 8)
    cm = jf.compile(m, backend="eager")
    with torch.no_grad():
        assert_same(cm(x), m(x))
        m.body["layers"][1].lin.weight.mul_(0.5)         # updated in place
        assert_same(cm(x), m(x))
        m.body["layers"][2].norm.bias = nn.Parameter(torch.randn(8))  # rebound
        assert_same(cm(x), m(x))
    # the generated statements, against reading each source on its own
    layers = AttrSource(ItemSource(AttrSource(AttrSource(ArgSource("self", 0), "body"), "_modules"),
                                   "layers"), "_modules")
    srcs = [ItemSource(AttrSource(ItemSource(AttrSource(ItemSource(layers, str(i)), "_modules"), sub),
                                  "_parameters"), p)
            for i in range(3) for sub in ("lin", "norm") for p in ("weight", "bias")]
    lines = load_inputs(srcs)
    ns = {"__jf_a0": m}
    exec("\n".join(lines), ns)
    for i, s in enumerate(srcs):
        assert ns[f"__jf_i{i}"] is eval(s.expr(), {"__jf_a0": m})
    reads = sum(line.count("_modules") + line.count("_parameters") + line.count(".body")
                for line in lines)
    assert reads == 1 + 1 + 1 + 3 + 6  # body, its _modules, layers' _modules, 3 + 6 below
