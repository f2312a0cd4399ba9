"""Frontend benchmark: first-call compile time and per-call overhead.

What it measures (CPU, float32, fixed seed), janus_frame's frontend against
TorchDynamo's with the same ``"eager"`` backend on both sides, so only the
frontends differ:

- first-call compile time (forward, inference) of four models, each in a
  fresh process: an MLP 784-512-512-10 (batch 64), a small CNN with
  BatchNorm (16x3x32x32), a hand-written LSTM cell loop over 16 steps
  (hidden 256, batch 16), a GPT-style decoder block from nn modules
  (d 128, 4 heads, seq 64, batch 8);
- per-call time of a 10-op elementwise function on a 4-element tensor:
  eager, the captured graph called directly, janus_frame, torch.compile.
  janus_frame's overhead = its time minus the graph's own;
- a training step with graph breaks (forward, a print of the loss, a Python
  list of losses, backward, SGD) on the MLP: graphs, first-call time and
  median step time, janus_frame vs torch.compile, both with the eager backend.

Run: ``python bench/frontend_overhead.py [--out bench/results]``; writes
``frontend-<date>-<host>.json`` and prints a markdown table. Numbers are
recorded, never asserted.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time

MODELS = ("mlp", "cnn", "lstm", "gpt_block")


def build(name):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(0)
    if name == "mlp":
        m = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 10))
        return m, (torch.randn(64, 784),)
    if name == "cnn":
        class CNN(nn.Module):
            def __init__(self):
                super().__init__()
                self.c1, self.b1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
                self.c2, self.b2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)
                self.fc = nn.Linear(32, 10)

            def forward(self, x):
                x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)
                x = F.relu(self.b2(self.c2(x)))
                return self.fc(x.mean(dim=(2, 3)))
        return CNN().eval(), (torch.randn(16, 3, 32, 32),)
    if name == "lstm":
        class Loop(nn.Module):
            def __init__(self, d=256, h=256):
                super().__init__()
                self.h = h
                self.wx, self.wh = nn.Linear(d, 4 * h), nn.Linear(h, 4 * h, bias=False)

            def forward(self, xs):
                h = xs.new_zeros(xs.shape[1], self.h)
                c = torch.zeros_like(h)
                for t in range(xs.shape[0]):
                    i, f, g, o = (self.wx(xs[t]) + self.wh(h)).chunk(4, dim=-1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                return h
        return Loop(), (torch.randn(16, 16, 256),)
    if name == "gpt_block":
        class Block(nn.Module):
            def __init__(self, d=128, heads=4):
                super().__init__()
                self.heads = heads
                self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
                self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
                self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

            def forward(self, x):
                b, t, d = x.shape
                q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
                q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2) for z in (q, k, v))
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
                return x + self.mlp(self.ln2(x))
        return Block(), (torch.randn(8, 64, 128),)
    raise ValueError(name)


def child_compile(system: str, model: str) -> dict:
    """In a fresh process: time the first call and count graphs."""
    import torch

    torch.set_num_threads(2)
    m, args = build(model)
    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    if system == "janus":
        import janus_frame as jf

        cm = jf.compile(m, backend=counting)
    else:
        cm = torch.compile(m, backend=counting)
    with torch.no_grad():
        t0 = time.perf_counter()
        out = cm(*args)
        first = time.perf_counter() - t0
        ref = m(*args)
    ok = bool(torch.allclose(out, ref, rtol=1e-4, atol=1e-5))
    return {"first_call_s": first, "graphs": len(graphs), "correct": ok}


def child_train(system: str) -> dict:
    """In a fresh process: the training step with breaks, compiled whole."""
    import contextlib
    import io

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
    model, _ = build("mlp")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = []

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        print(f"loss {loss.item():.4f}")
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        return loss

    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    if system == "eager":
        fn = step
    elif system == "janus":
        import janus_frame as jf

        fn = jf.compile(step, backend=counting)
    else:
        fn = torch.compile(step, backend=counting)
    x, y = torch.randn(64, 784), torch.randint(0, 10, (64,))
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        fn(x, y)
        first = time.perf_counter() - t0
        for _ in range(5):
            fn(x, y)
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            fn(x, y)
            times.append(time.perf_counter() - t0)
    return {"first_call_s": first, "graphs": len(graphs),
            "median_ms": statistics.median(times) * 1e3}


def overhead() -> dict:
    import torch

    import janus_frame as jf

    torch.set_num_threads(2)

    def f(x):
        x = x + 1
        x = x * 2
        x = x - 3
        x = x / 4
        x = torch.relu(x)
        x = x + 1
        x = x * 2
        x = x - 3
        x = x / 4
        return torch.sigmoid(x)

    graphs = []

    def keep(gm, ex):
        graphs.append(gm)
        return gm.forward

    x = torch.randn(4)
    janus = jf.compile(f, backend=keep)
    janus(x)
    graph_only = graphs[0].forward
    dyn = torch.compile(f, backend="eager")
    dyn(x)

    def per_call(fn, n=20000, reps=7):
        for _ in range(2000):
            fn(x)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(n):
                fn(x)
            times.append((time.perf_counter() - t0) / n * 1e6)
        return statistics.median(times)

    # interleave rounds so all four see the same machine state
    res = {k: [] for k in ("eager", "graph", "janus", "torch.compile")}
    for _ in range(3):
        res["eager"].append(per_call(f))
        res["graph"].append(per_call(graph_only))
        res["janus"].append(per_call(janus))
        res["torch.compile"].append(per_call(dyn))
    return {k: min(v) for k, v in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--overhead-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--train-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child_compile(*args.child)))
        return
    if args.overhead_child:
        print(json.dumps(overhead()))
        return
    if args.train_child:
        print(json.dumps(child_train(args.train_child)))
        return

    def child(*extra):
        r = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True,
                           timeout=900)
        if r.returncode != 0:
            return {"error": r.stderr.strip().splitlines()[-1] if r.stderr else "failed"}
        return json.loads(r.stdout.strip().splitlines()[-1])

    results = {"compile": {}, "overhead_us": None}
    for model in MODELS:
        results["compile"][model] = {s: child("--child", s, model)
                                     for s in ("janus", "torch.compile")}
    results["overhead_us"] = child("--overhead-child")
    results["train_step_with_breaks"] = {s: child("--train-child", s)
                                         for s in ("eager", "janus", "torch.compile")}
    results["machine"] = {"cpu": platform.processor() or platform.machine(),
                          "cores": os.cpu_count(), "python": platform.python_version(),
                          "host": socket.gethostname()}
    results["command"] = " ".join([os.path.basename(sys.executable)] + sys.argv)
    results["date"] = datetime.datetime.now().isoformat(timespec="seconds")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"frontend-{datetime.date.today()}-{socket.gethostname()}.json")
    with open(path, "w") as fh:
        json.dump(results, fh, indent=2)
    print("| model | janus first call (s) | graphs | torch.compile first call (s) | graphs |")
    print("|---|---|---|---|---|")
    for model, r in results["compile"].items():
        j, d = r["janus"], r["torch.compile"]
        print(f"| {model} | {j.get('first_call_s', float('nan')):.3f} | {j.get('graphs')} | "
              f"{d.get('first_call_s', float('nan')):.3f} | {d.get('graphs')} |")
    print()
    print("per call (us):", {k: round(v, 2) for k, v in (results["overhead_us"] or {}).items()})
    print("training step with breaks:", json.dumps(results["train_step_with_breaks"]))
    print("written:", path)


if __name__ == "__main__":
    main()
