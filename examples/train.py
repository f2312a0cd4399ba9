"""Demo: a training loop run under janus_frame, compared with eager.

Builds a small MLP classifier on synthetic data (random weights, fixed seed,
nothing downloaded), trains it for a few steps eagerly and under
``janus_frame.compile``, checks both give the same losses, prints the speedup
of the compiled steps over eager and janus_frame's graph-break report.

Run: python examples/train.py [--steps N]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import janus_frame


class MLP(nn.Module):
    def __init__(self, d_in=784, hidden=512, d_out=10):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, d_out)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def make_step(model, opt, losses):
    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        return loss
    return step


def timed(step, batches):
    times = []
    for x, y in batches:
        t0 = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--backend", default="default")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    batches = [(torch.randn(64, 784), torch.randint(0, 10, (64,))) for _ in range(args.steps)]

    eager_model = MLP()
    jf_model = copy.deepcopy(eager_model)
    eager_losses, jf_losses = [], []
    eager_step = make_step(eager_model, torch.optim.SGD(eager_model.parameters(), lr=0.05),
                           eager_losses)
    compiled_model = janus_frame.compile(jf_model, backend=args.backend)
    jf_step = make_step(compiled_model, torch.optim.SGD(jf_model.parameters(), lr=0.05),
                        jf_losses)

    t0 = time.perf_counter()
    jf_step(*batches[0])
    first = time.perf_counter() - t0
    eager_step(*batches[0])
    warm = 5
    for b in batches[1:warm]:
        eager_step(*b)
        jf_step(*b)
    te, tj = [], []
    for b in batches[warm:]:  # interleaved, so both see the same machine state
        te += timed(eager_step, [b])
        tj += timed(jf_step, [b])

    diff = max(abs(a.item() - b.item()) / max(abs(a.item()), 1e-6)
               for a, b in zip(eager_losses, jf_losses))
    me, mj = statistics.median(te), statistics.median(tj)
    print(f"MLP 784-512-512-10 training step, batch 64, {args.steps} steps, "
          f"{torch.get_num_threads()} threads, backend={args.backend!r}")
    print(f"  eager       {me * 1e3:8.3f} ms/step (median)")
    print(f"  janus_frame {mj * 1e3:8.3f} ms/step (median)   first call {first:.2f} s")
    print(f"  speedup vs eager: {me / mj:.2f}x   max relative loss difference: {diff:.2e}")
    print(f"  final loss: eager {eager_losses[-1].item():.4f}  janus_frame "
          f"{jf_losses[-1].item():.4f}")
    print()
    print("Graph-break report for one training step:")
    probe = copy.deepcopy(eager_model)  # explain() runs the step: keep the models untouched
    probe_step = make_step(probe, torch.optim.SGD(probe.parameters(), lr=0.05), [])
    print(janus_frame.explain(probe_step)(*batches[0]))


if __name__ == "__main__":
    main()
