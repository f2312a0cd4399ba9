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

from .base import Instance, Workload, seeded


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

        return self.training_instance(train_step, model)


class FunctionalResNet(nn.Module):
    """The second spelling's model: plain parameters and buffers used through
    ``F.conv2d`` / ``F.batch_norm``, the classifier as ``x @ W.t() + b``, the
    pooling as a flatten and a mean."""

    def __init__(self, c1, c2, classes=10):
        super().__init__()
        self.convs = nn.ParameterDict()
        self._bn_params = nn.ParameterDict()

        def conv(name, cin, cout, k):
            w = torch.empty(cout, cin, k, k)
            nn.init.kaiming_uniform_(w, a=5 ** 0.5)
            self.convs[name] = nn.Parameter(w)
            self._bn_params[name + "_w"] = nn.Parameter(torch.ones(cout))
            self._bn_params[name + "_b"] = nn.Parameter(torch.zeros(cout))
            self.register_buffer(name + "_mean", torch.zeros(cout))
            self.register_buffer(name + "_var", torch.ones(cout))

        conv("stem", 3, c1, 3)
        self.plan = []
        for i, (cin, cout, stride) in enumerate(((c1, c1, 1), (c1, c1, 1), (c1, c2, 2))):
            conv(f"b{i}a", cin, cout, 3)
            conv(f"b{i}b", cout, cout, 3)
            short = stride != 1 or cin != cout
            if short:
                conv(f"b{i}s", cin, cout, 1)
            self.plan.append((f"b{i}", stride, short))
        self.fc_w = nn.Parameter(torch.randn(classes, c2) / c2 ** 0.5)
        self.fc_b = nn.Parameter(torch.zeros(classes))

    def cbn(self, x, name, stride=1, pad=1):
        x = F.conv2d(x, self.convs[name], None, stride, pad)
        return F.batch_norm(x, getattr(self, name + "_mean"), getattr(self, name + "_var"),
                            self._bn_params[name + "_w"], self._bn_params[name + "_b"],
                            training=True, momentum=0.1)

    def forward(self, x):
        x = torch.relu(self.cbn(x, "stem"))
        for name, stride, short in self.plan:
            out = torch.relu(self.cbn(x, name + "a", stride))
            out = self.cbn(out, name + "b")
            x = torch.relu(out + (self.cbn(x, name + "s", stride, 0) if short else x))
        x = x.flatten(2).mean(-1)
        return x @ self.fc_w.t() + self.fc_b


class ResNetFunctionalTrain(ResNetTrain):
    """The second spelling: the same architecture written functionally, batch
    32, the optimizer step before ``zero_grad``."""

    name = "resnet-b"
    spelling_of = "resnet"
    title = "ResNet-style CNN, functional F.conv2d/F.batch_norm, step before zero_grad"

    def __init__(self, quick=False):
        Workload.__init__(self, quick)
        self.shape = (2, 3, 8, 8) if quick else (32, 3, 32, 32)
        self.c1, self.c2 = (4, 8) if quick else (16, 32)
        self.size = "x".join(map(str, self.shape)) + f", channels {self.c1}/{self.c2}"
        g = seeded(15)
        self.data = [(torch.randn(*self.shape, generator=g), torch.randint(0, 10, (self.shape[0],), generator=g))
                     for _ in range(8)]

    def instance(self) -> Instance:
        torch.manual_seed(0)
        model = FunctionalResNet(self.c1, self.c2)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def train_step(x, y):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss

        return self.training_instance(train_step, model)
