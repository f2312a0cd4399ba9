"""Workload 1: MLP 784-512-512-10, batch 64, training step.

Step: forward, cross-entropy, backward, SGD (lr 0.01). Variable-size run:
batch 16, 32, 48, 64, 80 (one recompile at most is the goal).
Quick: 784-64-64-10, batch 8.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Instance, Workload, fresh_function, params_state, seeded


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

        return Instance(step=fresh_function(train_step),
                        args=lambda i: self.data[i % len(self.data)],
                        state=lambda: params_state(model),
                        var_args=self.var)
