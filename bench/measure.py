"""Measuring helpers: correctness comparison, timing samples, step memory.

In:  tensors / Python values produced by steps; callables to time.
Out: plain numbers and dicts (JSON-serialisable) for the worker's results.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch


def max_rel_error(got: Any, ref: Any, path: str = "") -> tuple[float, str]:
    """Largest relative error between two values of the same structure.

    Tensors: max |got - ref| / max(max |ref|, 1e-12) -- relative to the
    tensor's scale, so near-zero entries of a weight matrix do not turn
    rounding noise into a huge ratio. Ints/bools must be equal (inf if not),
    lists/dicts are compared item by item. Returns (error, where).
    """
    if isinstance(ref, dict):
        if not isinstance(got, dict) or set(got) != set(ref):
            return math.inf, f"{path}: keys differ"
        worst = (0.0, "")
        for k in ref:
            worst = max(worst, max_rel_error(got[k], ref[k], f"{path}.{k}" if path else str(k)))
        return worst
    if isinstance(ref, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(ref):
            return math.inf, f"{path}: length {len(got) if hasattr(got, '__len__') else '?'} != {len(ref)}"
        worst = (0.0, "")
        for i, (g, r) in enumerate(zip(got, ref)):
            worst = max(worst, max_rel_error(g, r, f"{path}[{i}]"))
        return worst
    if isinstance(ref, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return math.inf, f"{path}: not a tensor ({type(got).__name__})"
        if got.shape != ref.shape:
            return math.inf, f"{path}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
        if ref.dtype in (torch.bool,) or not ref.is_floating_point():
            return (0.0, path) if torch.equal(got, ref) else (math.inf, f"{path}: values differ")
        g, r = got.detach().double(), ref.detach().double()
        if not torch.isfinite(g).all() and not torch.equal(torch.isfinite(g), torch.isfinite(r)):
            return math.inf, f"{path}: non-finite values"
        scale = max(r.abs().max().item() if r.numel() else 0.0, 1e-12)
        err = (g - r).abs().max().item() / scale if r.numel() else 0.0
        return (err if math.isfinite(err) else math.inf), path
    if isinstance(ref, bool) or isinstance(ref, int):
        return (0.0, path) if got == ref else (math.inf, f"{path}: {got!r} != {ref!r}")
    if isinstance(ref, float):
        if not isinstance(got, (int, float)):
            return math.inf, f"{path}: not a number"
        return abs(got - ref) / max(abs(ref), 1e-12), path
    return (0.0, path) if got == ref else (math.inf, f"{path}: {got!r} != {ref!r}")


def snapshot(value: Any) -> Any:
    """A detached copy of a step's output, safe to keep while training goes on."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return [snapshot(v) for v in value]
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    return value


def time_calls(fn: Callable, args: tuple, inner: int) -> float:
    """Seconds per call, averaged over ``inner`` back-to-back calls."""
    t = time.perf_counter()
    for _ in range(inner):
        fn(*args)
    return (time.perf_counter() - t) / inner


def step_peak_memory(fn: Callable, args: tuple) -> float:
    """Peak tensor memory (MiB) allocated above the level at the start of one call.

    Uses the profiler's allocator events, which see every allocation made
    through torch's CPU allocator -- eager ops and compiled kernels' buffers
    alike. (tracemalloc cannot see tensor memory, and the process's maxrss
    only ever grows, so it cannot separate systems run in one process.)
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=False) as prof:
        fn(*args)
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak / 2**20


def maxrss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
