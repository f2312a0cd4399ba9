"""Workload 4: RNN with tensor-dependent control flow, training step.

Every time step branches on ``if h.sum() > 0`` and then rescales the state
with ``while h.norm() > limit`` (a data-dependent trip count), the pattern
JANUS speculates on and an unspeculating tracer cannot capture.
Size: batch 16, input 32, hidden 64, 16 time steps, SGD.
Variable-size run: sequence lengths 8, 12, 20, 24, 32 (the branch sites'
outcomes shift with the length: they must settle, not recompile per length).
Quick: batch 2, input 4, hidden 8, 3 time steps; lengths 2, 4, 5.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Instance, Workload, seeded


class ControlRNN(nn.Module):
    def __init__(self, inp, hidden, classes, limit):
        super().__init__()
        self.hidden = hidden
        self.limit = limit
        self.w_in = nn.Linear(inp, hidden)
        self.w_h = nn.Linear(hidden, hidden, bias=False)
        self.head = nn.Linear(hidden, classes)

    def forward(self, xs):  # xs: (T, B, inp)
        h = xs.new_zeros(xs.shape[1], self.hidden)
        for t in range(xs.shape[0]):
            h = torch.tanh(self.w_in(xs[t]) + self.w_h(h))
            if h.sum() > 0:
                h = h * 0.9
            else:
                h = h + 0.1
            while h.norm() > self.limit:
                h = h * 0.5
        return self.head(h)


class ControlRNNTrain(Workload):
    name = "rnn_control"
    title = "RNN with tensor-dependent if/while"
    kind = "train"
    var_desc = "sequence length 8..32"

    def __init__(self, quick=False):
        super().__init__(quick)
        self.batch, self.inp, self.hidden, self.T = (2, 4, 8, 3) if quick else (16, 32, 64, 16)
        lengths = (2, 4, 5) if quick else (8, 12, 20, 24, 32)
        self.classes = 10
        self.size = f"batch {self.batch}, hidden {self.hidden}, {self.T} steps"
        g = seeded(4)
        # Input scale 2 makes both branches and 0-3 halvings occur.
        self.data = [(2 * torch.randn(self.T, self.batch, self.inp, generator=g),
                      torch.randint(0, self.classes, (self.batch,), generator=g)) for _ in range(8)]
        self.var = [(2 * torch.randn(T, self.batch, self.inp, generator=g),
                     torch.randint(0, self.classes, (self.batch,), generator=g)) for T in lengths]

    def instance(self) -> Instance:
        torch.manual_seed(0)
        model = ControlRNN(self.inp, self.hidden, self.classes, limit=1.0 if self.quick else 2.0)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def train_step(xs, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(xs), y)
            loss.backward()
            opt.step()
            return loss

        return self.training_instance(train_step, model)
