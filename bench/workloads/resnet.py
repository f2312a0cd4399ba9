"""Workload 5: small ResNet-style CNN with BatchNorm, training step.

Stem conv 3->16, two residual blocks at 16 channels, one strided block to
32 channels, global average pool, linear 32->10; SGD with momentum 0.9 (its
momentum buffers appear after the first step). Input 16x3x32x32.
Quick: 2x3x8x8, 4/8 channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Instance, Workload, fresh_function, params_state, seeded


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.short is None else self.short(x)))


class SmallResNet(nn.Module):
    def __init__(self, c1, c2, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c1, 3, 1, 1, bias=False), nn.BatchNorm2d(c1), nn.ReLU())
        self.blocks = nn.Sequential(Block(c1, c1, 1), Block(c1, c1, 1), Block(c1, c2, 2))
        self.fc = nn.Linear(c2, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(x.mean(dim=(2, 3)))


class ResNetTrain(Workload):
    name = "resnet"
    title = "ResNet-style CNN + BatchNorm, SGD momentum"
    kind = "train"

    def __init__(self, quick=False):
        super().__init__(quick)
        self.shape = (2, 3, 8, 8) if quick else (16, 3, 32, 32)
        self.c1, self.c2 = (4, 8) if quick else (16, 32)
        self.size = "x".join(map(str, self.shape)) + f", channels {self.c1}/{self.c2}"
        g = seeded(5)
        self.data = [(torch.randn(*self.shape, generator=g), torch.randint(0, 10, (self.shape[0],), generator=g))
                     for _ in range(8)]

    def instance(self) -> Instance:
        torch.manual_seed(0)
        model = SmallResNet(self.c1, self.c2)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def train_step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return Instance(step=fresh_function(train_step),
                        args=lambda i: self.data[i % len(self.data)],
                        state=lambda: params_state(model))
