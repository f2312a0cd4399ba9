"""Eager, janus_frame and torch.compile on one workload, alternated every
step in one process, over many steps: a check of the main run's timing
(``python -m bench``: rounds of 5 steps per system, 5 rounds). With one
step per turn each system runs on caches the other two just used, which a
program running one system never does; with few rounds, this host's
drifting speed (up to a third between minutes) weighs more. Where the two
disagree, both are worth reporting.

In:  workload names (default: the TreeLSTM and GPT workloads, both
     spellings), the number of timed steps, torch threads.
Out: a table printed to stdout and written, with the machine, the load and
     the command, to bench/results/<date>-<machine>-interleaved.md. Nothing
     is asserted.

Three instances are built from the workload's seed; after warm-up steps
(every entry compiled, the optimizer state created) each timed step runs the
three systems once, in an order that rotates every step, and each row
reports the medians.

    python -m bench.interleaved [--only treelstm,gpt] [--steps 100] [--threads 2] [--quick]
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

DEFAULT = ("treelstm", "treelstm-b", "gpt", "gpt-b")
SYSTEMS = ("eager", "janus", "torch.compile")


def measure(name: str, steps: int, quick: bool = False) -> dict[str, float]:
    """Median step time (ms) per system (``quick``: the workload's tiny sizes)."""
    import torch

    import janus_frame as jf
    from bench.workloads import WORKLOADS

    wl = WORKLOADS[name](quick)
    insts = {k: wl.instance() for k in SYSTEMS}
    run = {"eager": insts["eager"].step, "janus": jf.compile(insts["janus"].step),
           "torch.compile": torch.compile(insts["torch.compile"].step)}
    for i in range(8):
        for k in SYSTEMS:
            run[k](*insts[k].args(i))
    times: dict[str, list[float]] = {k: [] for k in SYSTEMS}
    for i in range(steps):
        order = SYSTEMS[i % 3:] + SYSTEMS[:i % 3]
        for k in order:
            t0 = time.perf_counter()
            run[k](*insts[k].args(i))
            times[k].append(time.perf_counter() - t0)
    return {k: sorted(v)[steps // 2] * 1e3 for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(DEFAULT))
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args(argv)

    import torch

    from bench.machine import load_average, machine_info, machine_slug

    torch.set_num_threads(args.threads)
    info = machine_info()
    rows = []
    for name in args.only.split(","):
        load = load_average()
        ms = measure(name, args.steps, args.quick)
        rows.append((name, ms, load[0] if load else None))
        print(f"{name}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items()) +
              f"; janus vs torch.compile {ms['torch.compile'] / ms['janus']:.2f}x", flush=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H%M")
    lines = [
        "# Eager, janus_frame and torch.compile interleaved in one process",
        "",
        f"- command: `{' '.join(['python -m bench.interleaved', *(argv or sys.argv[1:])])}`",
        f"- machine: {info['cpu_model']}, {info['cores']} cores, {args.threads} threads, "
        f"torch {torch.__version__}, Python {sys.version.split()[0]}",
        f"- {args.steps} timed steps each after 8 warm-up steps; medians",
        "",
        "| workload | eager | janus | torch.compile | janus vs eager | janus vs torch.compile "
        "| load at start |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, ms, load in rows:
        lines.append(f"| {name} | {ms['eager']:.2f} ms | {ms['janus']:.2f} ms | "
                     f"{ms['torch.compile']:.2f} ms | {ms['eager'] / ms['janus']:.2f}× | "
                     f"{ms['torch.compile'] / ms['janus']:.2f}× | "
                     f"{'–' if load is None else f'{load:.2f}'} |")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{stamp}-{machine_slug(info)}-interleaved.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
