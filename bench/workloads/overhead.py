"""Workload 10: per-call overhead of a 10-op elementwise function on a 4-element tensor.

The tensor is so small that the time is all dispatch: Python, guards, cache
lookup, kernel launch. One timing sample is 1000 calls; the figure is
microseconds per call. Quick: 100 calls per sample.
"""
from __future__ import annotations

import torch

from .base import Instance, Workload, fresh_function, seeded


def ten_ops(x):
    a = x + 1.0
    b = a * x
    c = torch.sin(b)
    d = c - 0.5
    e = d.abs()
    f = e * 2.0
    g = torch.exp(-f)
    h = g + x
    i = torch.tanh(h)
    return i * 3.0


class Overhead(Workload):
    name = "overhead"
    title = "10-op function on a 4-element tensor (per call)"
    kind = "overhead"
    unit = "us"
    rtol = 1e-5

    def __init__(self, quick=False):
        super().__init__(quick)
        self.inner = 100 if quick else 1000
        self.size = "4 elements, 10 ops"
        self.x = torch.randn(4, generator=seeded(10))

    def instance(self) -> Instance:
        return Instance(step=fresh_function(ten_ops), args=lambda i: (self.x,), state=lambda: {})
