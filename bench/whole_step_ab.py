"""What the whole-step graph gains, workload by workload: the same training
step compiled with ``whole_step`` on and off, timed alternately in one process.

In:  workload names (default: the training workloads and their second
     spellings), the number of timed steps, torch threads.
Out: a table printed to stdout and written, with the machine, the load and
     the command, to bench/results/<date>-whole-step-ab.md. Nothing is
     asserted.

Both instances are built from the workload's seed and compiled with the
default backend; after warm-up steps (every entry compiled, the optimizer
state created), the two steps alternate (the order flips every step, so
neither always runs on a cache warmed by the other) and each row reports the
medians. A step where the whole-step graph does not apply (a graph break
before ``backward()``) compiles the same with both settings: the row shows
the noise between two identical programs.

    python -m bench.whole_step_ab [--only mlp,gpt] [--steps 60] [--threads 2]
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

DEFAULT = ("mlp", "mlp-b", "lstm", "lstm-b", "gpt", "gpt-b", "resnet", "resnet-b",
           "treelstm", "treelstm-b", "side_effects")


def measure(name: str, steps: int) -> tuple[float, float, bool]:
    """Median step times (ms) with the whole-step graph and without it, and
    whether a backward was traced into a graph at all."""
    import janus_frame as jf
    from bench.workloads import WORKLOADS
    from janus_frame.frontend import whole_step

    wl = WORKLOADS[name](False)
    on, off = wl.instance(), wl.instance()
    step_on = jf.compile(on.step, whole_step=True)
    step_off = jf.compile(off.step, whole_step=False)
    before = whole_step.counts["traced"]
    for i in range(8):
        step_on(*on.args(i))
    applied = whole_step.counts["traced"] > before
    for i in range(8):
        step_off(*off.args(i))
    times: dict[str, list[float]] = {"on": [], "off": []}
    pairs = [("on", step_on, on), ("off", step_off, off)]
    for i in range(steps):
        for key, step, inst in (pairs if i % 2 else pairs[::-1]):
            t0 = time.perf_counter()
            step(*inst.args(i))
            times[key].append(time.perf_counter() - t0)
    on_ms, off_ms = (sorted(times[k])[steps // 2] * 1e3 for k in ("on", "off"))
    return on_ms, off_ms, applied


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(DEFAULT))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args(argv)

    import torch

    from bench.machine import load_average, machine_info, machine_slug

    torch.set_num_threads(args.threads)
    info = machine_info()
    rows = []
    for name in args.only.split(","):
        load = load_average()
        on, off, applied = measure(name, args.steps)
        rows.append((name, applied, on, off, load[0] if load else None))
        print(f"{name}: {'applies' if applied else 'does not apply'}: whole step {on:.2f} ms, "
              f"without {off:.2f} ms ({off / on:.2f}x)", flush=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H%M")
    lines = [
        "# Whole-step graph on and off, interleaved in one process",
        "",
        f"- command: `{' '.join(['python -m bench.whole_step_ab', *(argv or sys.argv[1:])])}`",
        f"- machine: {info['cpu_model']}, {info['cores']} cores, {args.threads} threads, "
        f"torch {torch.__version__}, "
        f"Python {sys.version.split()[0]}",
        f"- {args.steps} timed steps each after 8 warm-up steps; medians",
        "",
        "| workload | backward in the graph | whole step | without | gain | load at start |",
        "|---|---|---|---|---|---|",
    ]
    for name, applied, on, off, load in rows:
        lines.append(f"| {name} | {'yes' if applied else 'no'} | {on:.2f} ms | {off:.2f} ms | "
                     f"{off / on:.2f}× | "
                     f"{'–' if load is None else f'{load:.2f}'} |")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{stamp}-{machine_slug(info)}-whole-step-ab.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
