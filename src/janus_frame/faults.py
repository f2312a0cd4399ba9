"""Fault injection, for testing that no internal error reaches the user.

In: ``config.fault_injection`` (environment ``JANUS_FAULT_INJECTION``): the
probability with which each injection point raises, optionally with a seed
(``"0.05"`` or ``"0.05:7"``); empty (the default) turns injection off.
Out: :func:`point` -- called at the compiler's and the backend's stage
boundaries (and per traced instruction, at a tenth of the rate); it raises
:class:`InjectedFault` at random when injection is on. Every such fault must
end as a native run of the frame (or as eager execution of the graph), never
as an exception the user did not write: the test suite's fault-injection run
checks exactly that.

A leaf module: it imports only ``config``.
"""
from __future__ import annotations

import random

from .config import config


class InjectedFault(RuntimeError):
    """An internal error raised on purpose (JANUS_FAULT_INJECTION)."""


class _State:
    spec: str | None = None
    rate = 0.0
    rng = random.Random(0)


_state = _State()


def _configure(spec: str) -> None:
    rate, _, seed = spec.partition(":")
    _state.spec = spec
    _state.rate = float(rate) if rate else 0.0
    _state.rng = random.Random(int(seed) if seed else 0)


def point(name: str, scale: float = 1.0) -> None:
    """An injection point: raises InjectedFault with the configured
    probability (times ``scale``). Costs one attribute read when off."""
    spec = config.fault_injection
    if not spec:
        return
    if spec != _state.spec:
        _configure(spec)
    if _state.rng.random() < _state.rate * scale:
        raise InjectedFault(f"injected fault at {name}")
