"""Workload 9: two 20-op elementwise chains on 2048x2048 float32 (inference).

``f(x, y) -> out`` reads two inputs and writes one output: 48 MiB of
compulsory traffic per call, reported as GB/s next to the machine's measured
copy bandwidth (DRAM and in-cache, see bench/machine.py).
- ``pointwise_transcendental``: tanh, sigmoid, exp, sqrt, log1p, erf mixed
  with cheap ops (compute-bound unless transcendentals are vectorised);
- ``pointwise_cheap``: add/mul/sub/abs/min/max/where only (bandwidth-bound).
Quick: 256x256.
"""
from __future__ import annotations

import torch

from .base import Instance, Workload, fresh_function, seeded


def chain_transcendental(x, y):
    a = torch.tanh(x)                  # 1
    b = torch.sigmoid(y)               # 2
    c = a * b                          # 3
    d = torch.exp(-c.abs())            # 4, 5, 6
    e = torch.sqrt(d + 1.0)            # 7, 8
    f = e * x - y                      # 9, 10
    g = torch.tanh(f * 0.5)            # 11, 12
    h = torch.sigmoid(g + a)           # 13, 14
    i = torch.log1p(h * h)             # 15, 16
    j = torch.erf(i - b)               # 17, 18
    return j * 2.0 + e                 # 19, 20


def chain_cheap(x, y):
    a = x + y                          # 1
    b = a * 0.5                        # 2
    c = b - x                          # 3
    d = c.abs()                        # 4
    e = torch.maximum(d, y)            # 5
    f = e * e                          # 6
    g = f + 1.0                        # 7
    h = torch.minimum(g, a)            # 8
    i = h - 0.25                       # 9
    j = i * x                          # 10
    k = j + b                          # 11
    m = torch.where(k > 0, k, -k)      # 12, 13
    n = m * 0.125                      # 14
    o = n + c                          # 15
    p = o.neg()                        # 16
    q = p * y                          # 17
    r = q.clamp(-4.0, 4.0)             # 18
    s = r + a                          # 19
    return s * 0.5                     # 20


class _Chain(Workload):
    kind = "infer"
    rtol = 1e-5  # pointwise: DESIGN.md asks for 1e-5 relative
    chain = None

    def __init__(self, quick=False):
        super().__init__(quick)
        self.n = 256 if quick else 2048
        self.size = f"{self.n}x{self.n} fp32, 2 inputs, 20 ops"
        g = seeded(9)
        self.x = torch.randn(self.n, self.n, generator=g)
        self.y = torch.randn(self.n, self.n, generator=g)

    def instance(self) -> Instance:
        fn = fresh_function(type(self).chain)
        return Instance(step=fn, args=lambda i: (self.x, self.y), state=lambda: {})

    def extra_metrics(self, seconds_per_call):
        traffic = 3 * self.x.numel() * self.x.element_size()  # read x, y; write out
        return {"GB/s": traffic / seconds_per_call / 1e9}


class PointwiseTranscendental(_Chain):
    name = "pointwise_transcendental"
    title = "20-op chain with tanh/sigmoid/exp/sqrt (inference)"
    chain = staticmethod(chain_transcendental)


class PointwiseCheap(_Chain):
    name = "pointwise_cheap"
    title = "20-op chain of cheap ops (inference)"
    chain = staticmethod(chain_cheap)
