"""Micro-benchmark of the fusing backend against eager and Inductor.

Runs each workload side by side in one process through torch.compile with the
same frontend (dynamo) and prints a table: median time per call, speedup over
eager, GB/s for the bandwidth-bound chain, and first-call compile times (cold
kernel cache vs warm); the last row is an MLP training step (forward,
backward through AOTAutograd, SGD update).  Numbers are recorded, never
asserted.

    .venv/bin/python bench/backend_micro.py [--quick] [--no-inductor]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import torch  # noqa: E402


def chain_transcendental(x):
    a = torch.tanh(x) * 0.5 + 0.1
    a = torch.sigmoid(a) * x - 0.2
    a = torch.exp(a * 0.3) + torch.sqrt(x * x + 1.0)
    a = torch.tanh(a * 0.25) + torch.sigmoid(x * 0.5)
    a = a * 1.5 - torch.exp(-x * x)
    return a * 0.5 + 0.25


def chain_cheap(x):
    a = x * 1.5 + 0.5
    a = a * a - x
    a = torch.abs(a) + 1.0
    a = torch.maximum(a, x) - 0.25
    a = a * 0.5 + x * 0.25
    a = torch.clamp(a, -3.0, 3.0) * 2.0
    a = a - x * 0.125 + 1.0
    a = torch.relu(a) * 0.75
    return a + 0.5


def softmax(x):
    return torch.softmax(x, -1)


def layernorm(x, w, b):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b)


def tiny_chain(x):
    for _ in range(10):
        x = x * 1.01 + 0.5
    return x


def mlp_training_step():
    """A fresh MLP 784-512-512-10 with SGD and a training step on it (the
    same seed for every backend, so all start from the same weights)."""
    nn, F = torch.nn, torch.nn.functional
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                      nn.Linear(512, 10))
    opt = torch.optim.SGD(m.parameters(), lr=0.01)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def bench_training(backends, janus_backend, quick):
    """One row: a training step (forward, backward, SGD update) per backend,
    each on its own model; the loss after the same number of steps is compared."""
    x, y = torch.randn(64, 784), torch.randint(0, 10, (64,))
    steps = {"eager": mlp_training_step()}
    ctimes = {}
    for bname, be in backends:
        torch._dynamo.reset()
        cf = torch.compile(mlp_training_step(), backend=be)
        t0 = time.perf_counter()
        cf(x, y)
        ctimes[bname] = time.perf_counter() - t0
        steps[bname] = cf
    steps["eager"](x, y)
    for f in steps.values():
        for _ in range(10):
            f(x, y)
    reps, inner = (7, 50) if not quick else (5, 20)
    res = {}
    for _ in range(2):  # interleave
        for bname, f in steps.items():
            res.setdefault(bname, []).append(bench(f, (x, y), reps, inner))
    losses = {b: f(x, y).item() for b, f in steps.items()}
    te = min(res["eager"])
    cols = [f"{min(res[b]) * 1e3:8.2f}ms {te / min(res[b]):7.2f}x" for b, _ in backends]
    name = "MLP 784-512-512-10 train step, b64"
    err = abs(losses["janus"] - losses["eager"])
    print(f"{name:38s} {te * 1e3:8.2f}ms " + " ".join(cols)
          + f"          -        {ctimes['janus']:6.2f} / {'-':>5s}          "
          + f"{ctimes.get('inductor', float('nan')):8.2f}   (loss diff {err:.1e})")
    sys.stdout.flush()


def bench(fn, args, reps, inner):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn(*args)
        ts.append((time.perf_counter() - t0) / inner)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-inductor", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    cold_dir = tempfile.mkdtemp(prefix="janus_bench_cache_")
    os.environ["JANUS_FRAME_CACHE_DIR"] = cold_dir
    from janus_frame.backends.janus import janus_backend, stats

    n = 1024 if a.quick else 2048
    x = torch.randn(n, n)
    rows = torch.randn(512, 4096)
    w, b = torch.randn(4096), torch.randn(4096)
    work = [
        ("chain20 transcendental %dx%d" % (n, n), chain_transcendental, (x,), 2 * x.numel() * 4),
        ("chain20 cheap %dx%d" % (n, n), chain_cheap, (x,), 2 * x.numel() * 4),
        ("softmax 512x4096", softmax, (rows,), 2 * rows.numel() * 4),
        ("layernorm 512x4096", layernorm, (rows, w, b), 2 * rows.numel() * 4),
        ("10-op chain, 4 elements (per call)", tiny_chain, (torch.randn(4),), None),
    ]
    backends = [("janus", janus_backend)] + ([] if a.no_inductor else [("inductor", "inductor")])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    hdr = f"{'workload':38s} {'eager':>10s} " + " ".join(f"{b:>10s} {'x eager':>8s}" for b, _ in backends)
    print(hdr + "   janus GB/s   compile janus cold/warm s   inductor s")
    for name, fn, args, nbytes in work:
        compiled = {}
        ctimes = {}
        with torch.no_grad():
            for bname, be in backends:
                torch._dynamo.reset()
                cf = torch.compile(fn, backend=be)
                t0 = time.perf_counter()
                cf(*args)
                ctimes[bname] = time.perf_counter() - t0
                compiled[bname] = cf
            # warm: a new dynamo compile of the same graph hits the kernel cache
            torch._dynamo.reset()
            cf = torch.compile(fn, backend=janus_backend)
            t0 = time.perf_counter()
            cf(*args)
            warm = time.perf_counter() - t0
            compiled["janus"] = cf
            tiny = nbytes is None
            reps, inner = (7, 2000 if tiny else 5) if not a.quick else (3, 500 if tiny else 2)
            res = {}
            for _ in range(2):  # interleave
                res.setdefault("eager", []).append(bench(fn, args, reps, inner))
                for bname in compiled:
                    res.setdefault(bname, []).append(bench(compiled[bname], args, reps, inner))
            ref = fn(*args)
            err = (compiled["janus"](*args) - ref).abs().max().item()
        te = min(res["eager"])
        cols = []
        for bname, _ in backends:
            t = min(res[bname])
            cols.append(f"{t * (1e6 if tiny else 1e3):9.2f}{'us' if tiny else 'ms'} {te / t:7.2f}x")
        gbs = f"{nbytes / min(res['janus']) / 1e9:8.1f}" if nbytes else "       -"
        ind = f"{ctimes.get('inductor', float('nan')):8.2f}"
        print(f"{name:38s} {te * (1e6 if tiny else 1e3):8.2f}{'us' if tiny else 'ms'} " + " ".join(cols)
              + f"   {gbs}        {ctimes['janus']:6.2f} / {warm:5.2f}          {ind}   (max err {err:.1e})")
        sys.stdout.flush()
    bench_training(backends, janus_backend, a.quick)
    print("kernels per janus graph:", stats.kernel_counts[-6:])


if __name__ == "__main__":
    main()
