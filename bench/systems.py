"""The systems compared, each a way to turn a step function into a callable.

In:  a plain Python function (a workload's step).
Out: ``SYSTEMS[name].compile(fn)`` -> the callable to run; ``frontend`` names
     whose caches the system uses ("janus", "dynamo" or None) so the harness
     can reset them and read their counters.

- eager: the function itself (the reference for speed and correctness);
- janus: ``jf.compile(fn)`` (janus_frame frontend, default fusing backend);
- torch.compile: ``torch.compile(fn)`` (Dynamo + Inductor);
- janus+inductor: ``jf.compile(fn, backend="inductor")`` (our frontend, their backend);
- dynamo+janus: ``torch.compile(fn, backend=jf.backend)`` (their frontend, our backend).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable


@dataclasses.dataclass(frozen=True)
class System:
    name: str
    frontend: str | None
    compile: Callable[[Callable], Callable]
    doc: str


def _eager(fn):
    return fn


def _janus(fn):
    import janus_frame as jf

    return jf.compile(fn)


def _torch_compile(fn):
    import torch

    return torch.compile(fn)


def _janus_inductor(fn):
    import janus_frame as jf

    return jf.compile(fn, backend="inductor")


def _dynamo_janus(fn):
    import janus_frame as jf
    import torch

    return torch.compile(fn, backend=jf.backend)


def _selftest_wrong(fn):
    # A deliberately wrong "compiler" (outputs scaled by 1.01) that lets the
    # test suite check the harness reports WRONG instead of a speedup.
    # Never part of the default system list.
    import torch

    def wrong(*args):
        out = fn(*args)
        return out * 1.01 if isinstance(out, torch.Tensor) else out

    return wrong


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System("eager", None, _eager, "plain PyTorch"),
        System("janus", "janus", _janus, "jf.compile (default backend)"),
        System("torch.compile", "dynamo", _torch_compile, "Dynamo + Inductor"),
        System("janus+inductor", "janus", _janus_inductor, 'jf.compile(backend="inductor")'),
        System("dynamo+janus", "dynamo", _dynamo_janus, "torch.compile(backend=jf.backend)"),
        System("selftest-wrong", None, _selftest_wrong, "harness self-test: eager with outputs x1.01"),
    )
}

# What `python -m bench` compares unless --systems says otherwise.
DEFAULT_SYSTEMS = ["eager", "janus", "torch.compile", "janus+inductor", "dynamo+janus"]


def reset_frontend(frontend: str | None) -> None:
    """Drop every in-memory cache entry of a frontend (on-disk caches stay)."""
    if frontend == "janus":
        import janus_frame as jf

        jf.reset()
    elif frontend == "dynamo":
        import torch._dynamo

        torch._dynamo.reset()


def counters(frontend: str | None) -> dict[str, float]:
    """Cumulative compile counters of a frontend (the harness takes deltas).

    janus: ``janus_frame.hook.stats`` (frames compiled, frames that fell back,
    guard-failure recompiles, compile seconds). dynamo:
    ``torch._dynamo.utils.counters`` (graphs, breaks) and its cache entries
    (frames compiled).
    Missing counters are simply absent, never invented.
    """
    out: dict[str, float] = {}
    if frontend == "janus":
        try:
            from janus_frame import hook
        except Exception:  # noqa: BLE001 - the API may be incomplete
            return out
        st = getattr(hook, "stats", None)
        for field in ("frames_compiled", "frames_failed", "recompiles", "compile_seconds"):
            if st is not None and hasattr(st, field):
                out[field] = float(getattr(st, field))
    elif frontend == "dynamo":
        from torch._dynamo.utils import counters as c

        out["frames_attempted"] = float(c["frames"].get("total", 0))
        out["graphs"] = float(c["stats"].get("unique_graphs", 0))
        out["breaks"] = float(sum(c["graph_break"].values()))
        # Frames compiled = cache entries that exist, the same meaning as
        # janus_frame's frames_compiled. ("frames total" also counts frames
        # Dynamo looked at once and then skipped.)
        try:
            from torch._dynamo import convert_frame
            from torch._dynamo.eval_frame import _debug_get_cache_entry_list

            n = 0
            for ref in list(convert_frame.input_codes.seen):
                code = ref()
                if code is not None:
                    n += len(_debug_get_cache_entry_list(code))
            out["frames_compiled"] = float(n)
        except Exception:  # noqa: BLE001 - private API; better absent than wrong
            pass
    return out


def probe(system: System) -> float:
    """Compile and run a trivial function once: pays the system's start-up
    (imports, Inductor's worker set-up, toolchain checks) so the workload's
    first-call time measures compiling the workload, not starting up.
    Returns the seconds it took; raises if the system cannot run at all."""
    import torch

    def start_up_probe(x):
        return torch.sin(x * 2.0) + 1.0

    from .workloads.base import fresh_function

    t = time.perf_counter()
    fn = system.compile(fresh_function(start_up_probe))
    x = torch.arange(8, dtype=torch.float32)
    out = fn(x)
    if not torch.allclose(out, start_up_probe(x), rtol=1e-5, atol=1e-6):
        raise RuntimeError("start-up probe returned a wrong result")
    return time.perf_counter() - t
