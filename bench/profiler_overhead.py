"""Cost of the graph-break profiler on the bench workloads: profile on vs off.

In: workload names (bench/workloads), a backend, steps per sample, samples.
Out: per workload the median step time with janus_frame compiled and no
profiler, the same with ``janus_frame.profile()`` running, the ratio, and how
many probe events a step sends (graph segments + breaks); printed as a table
and, with ``--out``, written as JSON. Numbers are recorded, never asserted.
Because a shared machine's noise can exceed the profiler's cost, the cost of
one probe event is also measured directly and the overhead estimated from it
(``estimated`` = 1 + events per step x event cost / step time).

Samples alternate off/on in the same process, after warm-up steps that do
every compile, so both sides see the same caches and machine state.

    python bench/profiler_overhead.py                      # mlp,lstm,rnn_control,side_effects,rl_a2c
    python bench/profiler_overhead.py --only mlp --backend eager --samples 15
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import janus_frame as jf  # noqa: E402
from bench.workloads import get  # noqa: E402

DEFAULT = "mlp,lstm,rnn_control,side_effects,rl_a2c"


def _steps(step, args, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        step(*args(i))
    return (time.perf_counter() - t0) / n


def event_cost(n: int = 200_000) -> float:
    """Seconds one probe event costs with a profiler attached: the probe's
    clock read and the sink call (graph + native pair, halved), measured
    directly, so the figure does not drown in a busy machine's noise."""
    from janus_frame.diagnostics.probe import PROBE, Site

    site = Site("f", "f.py", 1, 1, break_id="JF002")
    best = float("inf")
    for _ in range(5):
        with jf.profile():
            t0 = time.perf_counter()
            for _ in range(n):
                t = PROBE.clock()
                t = PROBE.graph_done(site, t)
                PROBE.native_done(site, t)
            with_sink = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(n):  # no profiler: what replacements pay (attribute read + branch)
            _ = PROBE.active
        best = min(best, (with_sink - (time.perf_counter() - t0)) / (2 * n))
    return best


def measure(name: str, backend: str, steps: int, samples: int, warmup: int) -> dict:
    wl = get(name, quick=False)
    inst = wl.instance()
    step = jf.compile(inst.step, backend=backend)
    for i in range(warmup):  # every compile happens here
        step(*inst.args(i))
    off, on = [], []
    events = 0
    for _ in range(samples):
        off.append(_steps(step, inst.args, steps))
        with jf.profile() as prof:
            on.append(_steps(step, inst.args, steps))
        rep = prof.report()
        events = sum(s.runs + s.native_count for f in rep.frames for s in f.segments) / steps
    m_off, m_on = statistics.median(off), statistics.median(on)
    return {"workload": name, "backend": backend, "step_ms_off": m_off * 1e3,
            "step_ms_on": m_on * 1e3, "ratio": m_on / m_off, "events_per_step": events,
            "break_sites": len(rep.sites), "samples": samples, "steps_per_sample": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=DEFAULT)
    ap.add_argument("--backend", default="default")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--samples", type=int, default=11)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    cost = event_cost()
    print(f"one probe event with a profiler attached: {cost * 1e6:.2f} us")
    print(f"{'workload':<14} {'off ms':>9} {'on ms':>9} {'ratio':>7} {'events/step':>12} "
          f"{'estimated':>9}")
    for name in a.only.split(","):
        try:
            r = measure(name, a.backend, a.steps, a.samples, a.warmup)
        except Exception as e:  # noqa: BLE001 - a failing workload is a row, not an abort
            print(f"{name:<14} failed: {type(e).__name__}: {e}")
            continue
        r["estimated_ratio"] = 1 + r["events_per_step"] * cost / (r["step_ms_off"] * 1e-3)
        rows.append(r)
        print(f"{name:<14} {r['step_ms_off']:>9.3f} {r['step_ms_on']:>9.3f} {r['ratio']:>7.3f} "
              f"{r['events_per_step']:>12.1f} {r['estimated_ratio']:>9.4f}", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"machine": {"cpu": platform.processor() or platform.machine(),
                                   "cores": os.cpu_count(), "python": platform.python_version(),
                                   "torch": torch.__version__},
                       "command": " ".join(sys.argv), "event_seconds": cost, "rows": rows},
                      f, indent=1)


if __name__ == "__main__":
    main()
