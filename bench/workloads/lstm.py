"""Workload 2: hand-written LSTM language model, training step.

The cell is written with torch ops and unrolled by a Python loop over time.
Size: vocab 1000, embedding 128, hidden 256, batch 16, 32 time steps, SGD.
Variable-size run: sequence lengths 8, 16, 24, 32, 40, 13, 57 (one compile per
new length is what an unrolling tracer does; the goal is at most one in total).
Quick: vocab 50, embedding 16, hidden 16, batch 2, 6 steps.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Instance, Workload, seeded


class LSTMCell(nn.Module):
    def __init__(self, inp, hidden):
        super().__init__()
        self.w_ih = nn.Parameter(torch.randn(inp, 4 * hidden) / inp ** 0.5)
        self.w_hh = nn.Parameter(torch.randn(hidden, 4 * hidden) / hidden ** 0.5)
        self.bias = nn.Parameter(torch.zeros(4 * hidden))

    def forward(self, x, h, c):
        gates = x @ self.w_ih + h @ self.w_hh + self.bias
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class LSTMLM(nn.Module):
    def __init__(self, vocab, emb, hidden):
        super().__init__()
        self.hidden = hidden
        self.embed = nn.Embedding(vocab, emb)
        self.cell = LSTMCell(emb, hidden)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, tokens):  # tokens: (T, B)
        T, B = tokens.shape
        h = tokens.new_zeros(B, self.hidden, dtype=torch.float32)
        c = tokens.new_zeros(B, self.hidden, dtype=torch.float32)
        emb = self.embed(tokens)
        outs = []
        for t in range(T):
            h, c = self.cell(emb[t], h, c)
            outs.append(h)
        return self.out(torch.stack(outs))


class LSTMTrain(Workload):
    name = "lstm"
    title = "hand-written LSTM LM, SGD"
    kind = "train"
    var_desc = "sequence length 8..57"

    def __init__(self, quick=False):
        super().__init__(quick)
        if quick:
            self.vocab, self.emb, self.hidden, self.batch, self.T = 50, 16, 16, 2, 6
            lengths = (3, 6, 9)
        else:
            self.vocab, self.emb, self.hidden, self.batch, self.T = 1000, 128, 256, 16, 32
            lengths = (8, 16, 24, 32, 40, 13, 57)
        self.size = f"hidden {self.hidden}, batch {self.batch}, {self.T} steps, vocab {self.vocab}"
        g = seeded(2)

        def batch(T):
            return (torch.randint(0, self.vocab, (T + 1, self.batch), generator=g),)

        self.data = [batch(self.T) for _ in range(8)]
        self.var = [batch(T) for T in lengths]

    def instance(self) -> Instance:
        torch.manual_seed(0)
        model = LSTMLM(self.vocab, self.emb, self.hidden)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)

        def train_step(tokens):
            opt.zero_grad()
            logits = model(tokens[:-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[1:].reshape(-1))
            loss.backward()
            opt.step()
            return loss

        return self.training_instance(train_step, model)


class LinearGatesLSTMLM(nn.Module):
    """The second spelling's model: ``nn.Linear`` gate projections (each
    with its bias), the cell inline in the loop, the output layer applied per
    step on 2-D states and stacked afterwards."""

    def __init__(self, vocab, emb, hidden):
        super().__init__()
        self.hidden = hidden
        self.embed = nn.Embedding(vocab, emb)
        self.ih = nn.Linear(emb, 4 * hidden)
        self.hh = nn.Linear(hidden, 4 * hidden)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, tokens):  # tokens: (T, B)
        B = tokens.shape[1]
        h = torch.zeros(B, self.hidden)
        c = torch.zeros(B, self.hidden)
        x = self.embed(tokens)
        logits = []
        for t in range(tokens.shape[0]):
            gates = self.ih(x[t]) + self.hh(h)
            i, f, g, o = gates.chunk(4, 1)
            i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
            c = f * c + i * torch.tanh(g)
            h = o * torch.tanh(c)
            logits.append(self.out(h))
        return torch.stack(logits)


class LSTMLinearTrain(LSTMTrain):
    """The second spelling: nn.Linear gates, other sizes (hidden 200, batch
    20, 35 steps: the classic small PTB model), the optimizer step before
    ``zero_grad``."""

    name = "lstm-b"
    spelling_of = "lstm"
    title = "hand-written LSTM LM with nn.Linear gates, step before zero_grad"
    var_desc = "sequence length 10..50"

    def __init__(self, quick=False):
        Workload.__init__(self, quick)
        if quick:
            self.vocab, self.emb, self.hidden, self.batch, self.T = 50, 16, 16, 2, 6
            lengths = (3, 6, 9)
        else:
            self.vocab, self.emb, self.hidden, self.batch, self.T = 1000, 200, 200, 20, 35
            lengths = (10, 20, 35, 27, 50)
        self.size = f"hidden {self.hidden}, batch {self.batch}, {self.T} steps, vocab {self.vocab}"
        g = seeded(12)

        def batch(T):
            return (torch.randint(0, self.vocab, (T + 1, self.batch), generator=g),)

        self.data = [batch(self.T) for _ in range(8)]
        self.var = [batch(T) for T in lengths]

    def instance(self) -> Instance:
        torch.manual_seed(0)
        model = LinearGatesLSTMLM(self.vocab, self.emb, self.hidden)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)

        def train_step(tokens):
            logits = model(tokens[:-1])
            loss = F.cross_entropy(logits.flatten(0, 1), tokens[1:].flatten())
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss

        return self.training_instance(train_step, model)
