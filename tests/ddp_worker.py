"""One rank of the DistributedDataParallel tests (tests/test_ddp.py).

Run as ``python ddp_worker.py RANK WORLD PORT OUT``: joins a gloo process
group on localhost, trains each case of ``CASES`` for ``STEPS`` steps with
eager DDP and with DDP compiled by janus_frame (same initial weights, this
rank's own data), and saves with ``torch.save`` to ``OUT``, per case and
mode: the parameters after training, the gradients of every step, the
events of every backward pass (a bucket's all-reduce launched, a compiled
piece's backward reached) and the graphs the backend compiled.
"""
from __future__ import annotations

import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel as DDP

import janus_frame as jf
from janus_frame.backends import default as default_backend
from janus_frame.config import config

STEPS = 5


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(16, 32)
        self.l2 = nn.Linear(32, 32)
        self.l3 = nn.Linear(32, 32)
        self.l4 = nn.Linear(32, 4)

    def forward(self, x):
        x = torch.relu(self.l1(x))
        x = torch.relu(self.l2(x))
        x = torch.tanh(self.l3(x))
        return self.l4(x)


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)  # (BatchNorm follows)
        self.bn = nn.BatchNorm2d(8)  # buffers: DDP broadcasts them at each forward
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)
        self.spare = nn.Linear(8, 8)  # unused: DDP(find_unused_parameters=True) finds it

    def forward(self, x):
        x = torch.relu(self.bn(self.c1(x)))
        x = torch.relu(self.c2(x))
        return self.fc(x.mean(dim=(2, 3)))


def _mlp_data(rank, step):
    g = torch.Generator().manual_seed(1000 * rank + step)
    return torch.randn(8, 16, generator=g), torch.randint(0, 4, (8,), generator=g)


def _conv_data(rank, step):
    g = torch.Generator().manual_seed(1000 * rank + step)
    return torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 10, (4,), generator=g)


# name: (model, optimizer, data, bucket capacity in bytes, how the compiled
# run calls the model, other DDP options). The capacities hold about one layer each: DDP then
# has several buckets, and the graph is split in as many pieces.
CASES = {
    "mlp_sgd": (MLP, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), _mlp_data, 4000,
                "module", {}),
    "conv_adamw": (ConvNet, lambda p: torch.optim.AdamW(p, lr=0.01), _conv_data, 2000,
                   "module", {"find_unused_parameters": True, "gradient_as_bucket_view": True}),
    # a compiled training step calling the DDP module: DDP's forward runs
    # natively at a graph break, the module it wraps is compiled as its own
    # frame (here library code: nn.Sequential's forward)
    "mlp_step_fn": (lambda: nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32),
                                          nn.ReLU(), nn.Linear(32, 32), nn.Tanh(),
                                          nn.Linear(32, 4)),
                    lambda p: torch.optim.SGD(p, lr=0.1), _mlp_data, 4000, "function", {}),
    # the same model with the split turned off: one graph, every bucket
    # reduced after its backward (the events tell the two apart)
    "mlp_whole": (MLP, lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), _mlp_data, 4000,
                  "whole", {}),
}


def run(case, rank, compiled):
    make, make_opt, data, cap, how, options = CASES[case]
    torch.manual_seed(0)
    model = make()
    ddp = DDP(model, bucket_cap_mb=cap / 2 ** 20, **options)
    events, graphs = [], []

    def comm_hook(state, bucket):
        events.append(("bucket", bucket.index()))
        return default_hooks.allreduce_hook(state, bucket)

    ddp.register_comm_hook(None, comm_hook)

    def backend(gm, example_inputs):
        k = len(graphs)
        graphs.append(gm)
        # strict: a graph the fusing backend cannot compile fails the test
        fn = default_backend(gm, example_inputs, options=config.merged(strict=True))

        def call(*args):
            outs = fn(*args)
            for o in outs:
                if isinstance(o, torch.Tensor) and o.requires_grad:
                    # runs when this piece's backward is about to run
                    o.register_hook(lambda g, k=k: events.append(("piece", k)))
            return outs

        return call

    if not compiled:
        step = lambda x, y: F.cross_entropy(ddp(x), y)  # noqa: E731
    elif how == "function":
        step = jf.compile(lambda x, y: F.cross_entropy(ddp(x), y), backend=backend)
    else:
        model_c = jf.compile(ddp, backend=backend, strict=True, optimize_ddp=how != "whole")
        step = lambda x, y: F.cross_entropy(model_c(x), y)  # noqa: E731
    opt = make_opt(ddp.parameters())
    grads, passes = [], []
    for i in range(STEPS):
        x, y = data(rank, i)
        opt.zero_grad(set_to_none=True)
        loss = step(x, y)
        events.clear()
        loss.backward()
        passes.append(list(events))
        grads.append([None if p.grad is None else p.grad.clone() for p in model.parameters()])
        opt.step()
    out = {
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "grads": grads,
        "events": passes,
        "graphs": len(graphs),
        "buckets": len({b for p in passes for kind, b in p if kind == "bucket"}),
    }
    # (one more forward: after the state above was taken)
    out["explain"] = str(jf.explain(ddp)(data(rank, 0)[0])) if compiled and how == "module" else ""
    return out


def main(rank, world, port, out):
    os.environ["MASTER_ADDR"] = "localhost"
    os.environ["MASTER_PORT"] = str(port)
    t0 = time.perf_counter()
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        res = {}
        for case in CASES:
            t = time.perf_counter()
            res[case] = {"eager": run(case, rank, False), "compiled": run(case, rank, True)}
            print(f"rank {rank}: {case} {time.perf_counter() - t:.1f} s", file=sys.stderr)
        from janus_frame.backends.janus import stats as backend_stats
        from janus_frame.cache import stats

        res["frames_compiled"] = stats.frames_compiled
        res["internal_errors"] = stats.internal_errors
        res["fallbacks"] = [repr(f) for f in backend_stats.fallbacks]
        torch.save(res, out)
    finally:
        dist.destroy_process_group()
    print(f"rank {rank}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
