"""Measuring helpers: correctness comparison, timing samples, step memory.

In:  tensors / Python values produced by steps; callables to time.
Out: plain numbers and dicts (JSON-serialisable) for the worker's results.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch


def leaf_errors(got: Any, ref: Any, path: str = "", out: dict | None = None) -> dict[str, float]:
    """Relative error of every leaf of two values of the same structure.

    Tensors: max |got - ref| / max(max |ref|, 1e-12) -- relative to the
    tensor's scale, so near-zero entries of a weight matrix do not turn
    rounding noise into a huge ratio. Ints/bools/strings must be equal (inf
    if not), lists/dicts are compared item by item; a structural mismatch is
    an inf error at that path.
    """
    out = {} if out is None else out
    if isinstance(ref, dict):
        if not isinstance(got, dict) or set(got) != set(ref):
            out[f"{path} (keys differ)"] = math.inf
            return out
        for k in ref:
            leaf_errors(got[k], ref[k], f"{path}.{k}" if path else str(k), out)
        return out
    if isinstance(ref, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(ref):
            out[f"{path} (length differs)"] = math.inf
            return out
        for i, (g, r) in enumerate(zip(got, ref)):
            leaf_errors(g, r, f"{path}[{i}]", out)
        return out
    if isinstance(ref, torch.Tensor):
        if not isinstance(got, torch.Tensor) or got.shape != ref.shape:
            out[f"{path} (not a tensor of the same shape)"] = math.inf
        elif not ref.is_floating_point():
            out[path] = 0.0 if torch.equal(got, ref) else math.inf
        elif ref.numel() == 0:
            out[path] = 0.0
        else:
            g, r = got.detach().double(), ref.detach().double()
            if not torch.equal(torch.isfinite(g), torch.isfinite(r)):
                out[path] = math.inf
            else:
                fin = torch.isfinite(r)
                scale = max(r[fin].abs().max().item() if fin.any() else 0.0, 1e-12)
                err = (g[fin] - r[fin]).abs().max().item() / scale if fin.any() else 0.0
                out[path] = err if math.isfinite(err) else math.inf
        return out
    if isinstance(ref, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        out[path] = abs(got - ref) / max(abs(ref), 1e-12)
        return out
    out[path] = 0.0 if got == ref else math.inf
    return out


def max_rel_error(got: Any, ref: Any, path: str = "") -> tuple[float, str]:
    """The largest of :func:`leaf_errors` and where it is."""
    errs = leaf_errors(got, ref, path)
    if not errs:
        return 0.0, ""
    where = max(errs, key=errs.get)
    return errs[where], where


def judge(errs: dict[str, float], rtol: float, noise: dict[str, float] | None, margin: float = 10.0) -> dict:
    """Correctness verdict from per-leaf errors against eager.

    A leaf is allowed ``max(rtol, margin * noise)``, where ``noise`` is how
    much eager itself moves at that leaf when only its reduction order changes
    (a second eager run with another thread count). Without it, parameters
    whose gradient is zero in exact arithmetic (an attention key bias) are
    driven by rounding noise that Adam normalises up to the learning rate,
    and eager disagrees with itself by percent there. Returns ok, the worst
    leaf by error/allowed and its figures.
    """
    noise = noise or {}
    worst, worst_ratio = "", -1.0
    for k, e in errs.items():
        allowed = max(rtol, margin * noise.get(k, 0.0))
        ratio = e / allowed if math.isfinite(e) else math.inf
        if ratio > worst_ratio:
            worst, worst_ratio = k, ratio
    if not errs:
        return {"ok": True, "max_rel_err": 0.0, "where": "", "allowed": rtol}
    allowed = max(rtol, margin * noise.get(worst, 0.0))
    return {"ok": worst_ratio <= 1.0, "max_rel_err": errs[worst], "where": worst, "allowed": allowed,
            "eager_noise": noise.get(worst, 0.0)}


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
