"""The systems of the zoo: ways to turn an ``nn.Module`` into a callable.

- eager: the model itself (the reference, and the baseline in every worker);
- janus: ``jf.compile(model)`` -- frontend + the default fusing backend;
- janus-eager: ``jf.compile(model, backend="eager")`` -- the frontend alone;
- torch.compile: ``torch.compile(model)`` -- Dynamo + Inductor.

``frontend_counts(frontend)`` reads the cumulative counters the worker takes
deltas of: janus_frame's ``cache.stats`` (frames compiled, guard-failure
recompiles, frames that failed) or Dynamo's counters (graphs, breaks, frames
compiled = cache entries).
"""
from __future__ import annotations

import dataclasses
from typing import Callable


@dataclasses.dataclass(frozen=True)
class System:
    name: str
    frontend: str | None
    compile: Callable
    doc: str

    def probe(self) -> None:
        """Compile and run a trivial module once: pays the system's start-up
        (imports, toolchain checks, Inductor's set-up) outside the first call."""
        import torch

        class Probe(torch.nn.Module):
            def forward(self, x):
                return torch.sin(x * 2.0) + 1.0

        m = Probe()
        x = torch.arange(8, dtype=torch.float32)
        out = self.compile(m)(x)
        if not torch.allclose(out, m(x), rtol=1e-5, atol=1e-6):
            raise RuntimeError("start-up probe returned a wrong result")
        reset_frontend(self.frontend)


def _eager(m):
    return m


def _janus(m):
    import janus_frame as jf

    return jf.compile(m)


def _janus_eager(m):
    import janus_frame as jf

    return jf.compile(m, backend="eager")


def _torch_compile(m):
    import torch

    return torch.compile(m)


SYSTEMS: dict[str, System] = {s.name: s for s in (
    System("eager", None, _eager, "the model itself"),
    System("janus", "janus", _janus, "jf.compile(model): frontend + default fusing backend"),
    System("janus-eager", "janus", _janus_eager, 'jf.compile(model, backend="eager"): the frontend alone'),
    System("torch.compile", "dynamo", _torch_compile, "torch.compile(model): Dynamo + Inductor"),
)}

# The systems a worker process is started for (eager runs inside each of them).
COMPILED = ["janus-eager", "janus", "torch.compile"]


def reset_frontend(frontend: str | None) -> None:
    if frontend == "janus":
        import janus_frame as jf

        jf.reset()
    elif frontend == "dynamo":
        import torch._dynamo

        torch._dynamo.reset()


def frontend_counts(frontend: str | None) -> dict[str, float]:
    out: dict[str, float] = {}
    if frontend == "janus":
        from janus_frame.cache import stats

        for f in ("frames_compiled", "recompiles", "frames_failed", "internal_errors", "reruns"):
            out[f] = getattr(stats, f, 0)
    elif frontend == "dynamo":
        from bench.systems import counters

        out.update(counters("dynamo"))
        from torch._dynamo.utils import counters as c

        out["recompiles"] = float(sum(c["recompiles"].values())) if "recompiles" in c else 0.0
        out["break_reasons"] = dict(c["graph_break"])
    return out
