"""Where one inference call of a zoo model goes: eager against janus_frame's
default backend (issue 19).

In:  ``python -m bench.zoo.breakdown MODEL [quick|medium]`` (quick: hidden
     64, 2 heads, seq 16, batch 2; medium: hidden 256, 4 heads, seq 128,
     batch 8; 2 layers, random weights, attention mask), ``THREADS`` (1),
     ``ROUNDS`` and ``REPS`` in the environment.
Out: on stdout, medians of interleaved rounds: eager and janus per call and
     their ratio; the janus call split into the guard (its checks, and those
     that run while the module trees are unchanged), the replacement
     without the graph, the compiled graph(s) and the rest (module wrapper,
     hook); then the graph's own time split into C kernel segments, each
     library call (by aten op), allocations and the Python glue between them
     (each piece timed by wrapping it: the glue share is an upper bound).
The machine is shared: read the percentages and ratios, not the absolute
times.
"""
from __future__ import annotations

import collections
import os
import statistics
import sys
import time
import warnings

import torch

import janus_frame as jf
import janus_frame.hook as hook
from janus_frame.backends.janus import janus_backend
from janus_frame.cache import code_state

from . import models as Z


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    warnings.filterwarnings("ignore")
    name, size = argv[0], (argv[1] if len(argv) > 1 else "quick")
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    s = (Z.Sizes(hidden=64, heads=2, layers=2, seq=16) if size == "quick"
         else Z.Sizes(hidden=256, heads=4, layers=2, seq=128, batch=8))
    Z.sizes = lambda quick: s
    m = Z.build(name, True).eval()
    kw = Z.inputs(name, True, "infer", True)
    graphs, captured = [], {}

    def backend(gm, ex):
        fn = janus_backend(gm, ex)
        graphs.append(getattr(fn, "janus_graph", fn))
        return fn

    # the cache entry's guard and replacement, as the hook hands them to C
    orig_call = hook.FrameCompiler.__call__

    def capture(self, func, args):
        r = orig_call(self, func, args)
        if isinstance(r, tuple) and func.__code__ is type(m).forward.__code__:
            captured["entry"] = (r, list(args))
        return r

    hook.FrameCompiler.__call__ = capture
    try:
        cm = jf.compile(m, backend=backend)
        with torch.no_grad():
            ref, out = m(**kw), cm(**kw)
            cm(**kw)
    finally:
        hook.FrameCompiler.__call__ = orig_call
    (guard, replacement), slots = captured["entry"]
    lines = code_state(type(m).forward.__code__).entries[0][1].guard_lines
    skipped = int(lines[-1].split()[0].strip("(")) if "module trees" in lines[-1] else 0
    nchecks = len(lines) - (1 if skipped else 0)
    print(f"{name} {size}: graphs {len(graphs)}, kernels {[g.num_kernels for g in graphs]}, "
          f"library calls {[len(g.externs) for g in graphs]}, "
          f"max diff {(ref.logits - out.logits).abs().max().item():.2e}")
    inputs = {}
    for g in graphs:  # each graph's inputs, taken from one call
        plain = g._fn
        g._fn = lambda *a, g=g, plain=plain: (inputs.__setitem__(id(g), a), plain(*a))[1]
    with torch.no_grad():
        cm(**kw)
    for g in graphs:
        g._fn = None
        g._prepare()

    def graph_calls():
        for g in graphs:
            g._fn(*inputs[id(g)])

    def timed(f, n):
        t = time.perf_counter()
        for _ in range(n):
            f()
        return (time.perf_counter() - t) / n * 1e6

    reps = int(os.environ.get("REPS", "200" if size == "quick" else "10"))
    pieces = {"eager": lambda: m(**kw), "janus": lambda: cm(**kw),
              "guard": lambda: guard(*slots), "replacement": lambda: replacement(*slots),
              "graphs": graph_calls}
    res = collections.defaultdict(list)
    with torch.no_grad():
        assert guard(*slots)
        for r in range(int(os.environ.get("ROUNDS", "9"))):
            for k, f in (pieces.items() if r % 2 == 0 else reversed(pieces.items())):
                res[k].append(timed(f, reps))
    med = {k: statistics.median(v) for k, v in res.items()}
    j = med["janus"]

    def row(label, us):
        print(f"  {label:34s} {us:9.1f} us {us / j * 100:5.1f}%")

    print(f"  eager {med['eager']:.1f} us, janus {j:.1f} us: janus/eager {j / med['eager']:.2f}")
    row(f"guard ({nchecks} checks, {nchecks - skipped} run)", med["guard"])
    row("replacement without the graph", med["replacement"] - med["graphs"])
    row("compiled graph(s)", med["graphs"])
    row("module wrapper, hook", j - med["guard"] - med["replacement"])

    acc = collections.defaultdict(float)
    clock = time.perf_counter

    def wrap(key, f):
        def w(*a, **k):
            t = clock()
            r = f(*a, **k)
            acc[key] += clock() - t
            return r
        return w

    ops = {}
    for g in graphs:
        for st in g.sched.steps:
            if hasattr(st, "op"):
                ops[f"_op_{st.name}"] = str(st.op).replace("aten.", "").replace(".default", "")
    for g in graphs:
        ns = g._fn.__globals__
        for k in list(ns):
            if k.startswith("_op_") or k in ("_linear", "_addmm_"):
                ns[k] = wrap("library " + ops.get(k, k.strip("_")), ns[k])
            elif k in ("_empty_strided", "_empty", "_restride"):
                ns[k] = wrap("allocation, layout copy", ns[k])
        if g.csource is not None:
            for seg, _, _ in g.csource.segments:
                ns["_" + seg] = wrap("C kernels", ns["_" + seg])
    n = reps * 3
    with torch.no_grad():
        t = clock()
        for _ in range(n):
            graph_calls()
        total = clock() - t
    print(f"  inside the graph(s), instrumented ({total / n * 1e6:.1f} us):")
    for k, v in sorted(acc.items(), key=lambda x: -x[1]):
        print(f"    {k:32s} {v / n * 1e6:9.1f} us {v / total * 100:5.1f}%")
    glue = total - sum(acc.values())
    print(f"    {'Python glue':32s} {glue / n * 1e6:9.1f} us {glue / total * 100:5.1f}%")


if __name__ == "__main__":
    main()
