"""Workload 1: MLP 784-512-512-10, batch 64, training step.

Step: forward, cross-entropy, backward, SGD (lr 0.01). Variable-size run:
batch 16, 32, 48, 64, 80 (one recompile at most is the goal).
Quick: 784-64-64-10, batch 8.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Instance, Workload, seeded


class MLP(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MLPTrain(Workload):
    name = "mlp"
    title = "MLP 784-512-512-10, SGD"
    kind = "train"
    var_desc = "batch 16..80"

    def __init__(self, quick=False):
        super().__init__(quick)
        self.sizes = (784, 64, 64, 10) if quick else (784, 512, 512, 10)
        self.batch = 8 if quick else 64
        self.size = f"{'-'.join(map(str, self.sizes))}, batch {self.batch}"
        g = seeded(1)
        self.data = [(torch.randn(self.batch, self.sizes[0], generator=g),
                      torch.randint(0, self.sizes[-1], (self.batch,), generator=g)) for _ in range(8)]
        batches = (4, 8, 12) if quick else (16, 32, 48, 64, 80)
        self.var = [(torch.randn(b, self.sizes[0], generator=g),
                     torch.randint(0, self.sizes[-1], (b,), generator=g)) for b in batches]

    def instance(self) -> Instance:
        torch.manual_seed(0)
        model = MLP(self.sizes)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def train_step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return self.training_instance(train_step, model)


class MLPFunctionalTrain(MLPTrain):
    """The second spelling: weights as plain parameters applied with
    ``F.linear`` (no nn.Linear), batch 128, the optimizer step before
    ``zero_grad``, SGD with momentum (its buffers appear after the first step)."""

    name = "mlp-b"
    spelling_of = "mlp"
    title = "MLP 784-512-512-10, functional F.linear, step before zero_grad"
    var_desc = "batch 24..120"

    def __init__(self, quick=False):
        Workload.__init__(self, quick)
        self.sizes = (784, 64, 64, 10) if quick else (784, 512, 512, 10)
        self.batch = 8 if quick else 128
        self.size = f"{'-'.join(map(str, self.sizes))}, batch {self.batch}"
        g = seeded(11)
        self.data = [(torch.randn(self.batch, self.sizes[0], generator=g),
                      torch.randint(0, self.sizes[-1], (self.batch,), generator=g)) for _ in range(8)]
        batches = (4, 8, 12) if quick else (24, 48, 72, 96, 120)
        self.var = [(torch.randn(b, self.sizes[0], generator=g),
                     torch.randint(0, self.sizes[-1], (b,), generator=g)) for b in batches]

    def instance(self) -> Instance:
        torch.manual_seed(0)
        params = nn.ParameterList()
        for a, b in zip(self.sizes[:-1], self.sizes[1:]):
            params.append(nn.Parameter(torch.randn(b, a) / a ** 0.5))
            params.append(nn.Parameter(torch.zeros(b)))
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
        n = len(params) // 2

        def train_step(x, y):
            h = x
            for i in range(n):
                h = F.linear(h, params[2 * i], params[2 * i + 1])
                if i < n - 1:
                    h = torch.relu(h)
            loss = F.cross_entropy(h, y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss

        return self.training_instance(train_step, params)
