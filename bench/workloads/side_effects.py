"""Workload 7: a training step full of Python side effects.

Same MLP step as workload 1 (784-512-512-10, batch 64, SGD), plus what real
training loops do around it: the loss is appended to a Python list, an
integer counter attribute on the trainer is incremented, and a registered
buffer keeps a running mean of the input features (updated in place inside
forward). All three are part of the state compared against eager.
Quick: 784-64-64-10, batch 8.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Instance, Workload, fresh_function, params_state, seeded
from .mlp import MLP


class TrackedMLP(MLP):
    def __init__(self, sizes):
        super().__init__(sizes)
        self.register_buffer("feature_mean", torch.zeros(sizes[0]))

    def forward(self, x):
        with torch.no_grad():
            self.feature_mean.mul_(0.9).add_(x.mean(dim=0), alpha=0.1)
        return super().forward(x)


class Trainer:
    def __init__(self, model, opt):
        self.model = model
        self.opt = opt
        self.steps = 0
        self.losses = []


class SideEffectsTrain(Workload):
    name = "side_effects"
    title = "MLP step with Python side effects"
    kind = "train"

    def __init__(self, quick=False):
        super().__init__(quick)
        self.sizes = (784, 64, 64, 10) if quick else (784, 512, 512, 10)
        self.batch = 8 if quick else 64
        self.size = f"{'-'.join(map(str, self.sizes))}, batch {self.batch}; list + counter + buffer"
        g = seeded(7)
        self.data = [(torch.randn(self.batch, self.sizes[0], generator=g),
                      torch.randint(0, self.sizes[-1], (self.batch,), generator=g)) for _ in range(8)]

    def instance(self) -> Instance:
        torch.manual_seed(0)
        model = TrackedMLP(self.sizes)
        trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.01))

        def train_step(x, y):
            trainer.opt.zero_grad()
            loss = F.cross_entropy(trainer.model(x), y)
            loss.backward()
            trainer.opt.step()
            trainer.steps += 1
            trainer.losses.append(loss.detach())
            return loss

        def state():
            s = params_state(model)
            s["trainer.steps"] = trainer.steps
            s["trainer.losses"] = [l.clone() for l in trainer.losses]
            return s

        return Instance(step=fresh_function(train_step),
                        args=lambda i: self.data[i % len(self.data)],
                        state=state)
