"""DistributedDataParallel training compiled by janus_frame, on 2 processes.

Two ranks (tests/ddp_worker.py, gloo on localhost, CPU) each train every
case of ``ddp_worker.CASES`` for 5 steps with eager DDP and with compiled
DDP -- ``janus_frame.compile(DDP(model))``, and a compiled training step
calling the DDP module -- from the same initial weights, each rank on its own
data. Checked here: the compiled run ends with eager DDP's parameters; the
gradients were all-reduced (equal on both ranks though their data differ);
the wrapped module's forward and backward were compiled (graphs captured,
strict: no fallback) and split in at least as many graphs as DDP has
buckets; and a bucket's all-reduce starts before the backward of the
earlier pieces, as in eager -- while with the split turned off every bucket
waits for the end of the one graph's backward.
"""
from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

HERE = pathlib.Path(__file__).parent
WORLD = 2

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="needs torch.distributed with gloo")

SPLIT = ("mlp_sgd", "conv_adamw", "mlp_step_fn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """The results of both ranks (see ddp_worker.run)."""
    d = tmp_path_factory.mktemp("ddp")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JANUS_")}
    env["JANUS_CHECKS"] = "1"
    procs = [subprocess.Popen(
        [sys.executable, "-W", "error:janus_frame:RuntimeWarning", str(HERE / "ddp_worker.py"),
         str(r), str(WORLD), str(port), str(d / f"rank{r}.pt")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for r in range(WORLD)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=540)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"rank {r} failed:\n{out[-6000:]}"
    return [torch.load(d / f"rank{r}.pt") for r in range(WORLD)]


def test_compiled_without_fallback(ranks):
    for res in ranks:
        assert res["frames_compiled"] >= 3  # MLP.forward (twice: options differ), ConvNet.forward
        assert res["internal_errors"] == 0
        assert res["fallbacks"] == []


@pytest.mark.parametrize("case", SPLIT + ("mlp_whole",))
def test_parameters_equal_eager_ddp(ranks, case):
    for res in ranks:
        eager, comp = res[case]["eager"], res[case]["compiled"]
        for a, b in zip(eager["params"], comp["params"]):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        for a, b in zip(eager["buffers"], comp["buffers"]):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        for step_e, step_c in zip(eager["grads"], comp["grads"]):
            for a, b in zip(step_e, step_c):
                assert (a is None) == (b is None)
                if a is not None:
                    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    # ranks stay in lockstep
    for a, b in zip(ranks[0][case]["compiled"]["params"], ranks[1][case]["compiled"]["params"]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", SPLIT + ("mlp_whole",))
def test_gradients_all_reduced(ranks, case):
    g0, g1 = ranks[0][case]["compiled"]["grads"], ranks[1][case]["compiled"]["grads"]
    for step0, step1 in zip(g0, g1):
        for a, b in zip(step0, step1):
            assert (a is None and b is None) or torch.equal(a, b)
    # the ranks' data differ: equal gradients come from the all-reduce
    e0 = ranks[0][case]["eager"]
    assert e0["buckets"] >= 2 and all(ev for ev in e0["events"])


@pytest.mark.parametrize("case", SPLIT)
def test_graph_split_at_buckets(ranks, case):
    for res in ranks:
        comp = res[case]["compiled"]
        assert comp["buckets"] == res[case]["eager"]["buckets"] >= 2
        assert comp["graphs"] >= comp["buckets"]
        if case != "mlp_step_fn":
            assert f"split in {comp['graphs']} at DistributedDataParallel" in comp["explain"]


@pytest.mark.parametrize("case", SPLIT)
def test_allreduce_overlaps_backward(ranks, case):
    # after the first step (DDP's first backward fills one bucket, then
    # rebuilds them in the order gradients came), each bucket's all-reduce
    # starts before the backward of the pieces computed before it
    for res in ranks:
        for events in res[case]["compiled"]["events"][1:]:
            kinds = [k for k, _ in events]
            last_piece = len(kinds) - 1 - kinds[::-1].index("piece")
            assert "bucket" in kinds[:last_piece], events
            assert kinds.count("bucket") == res[case]["compiled"]["buckets"]


def test_whole_graph_reduces_after_its_backward(ranks):
    # the measure above tells the two apart: one graph, every bucket after it
    for res in ranks:
        comp = res["mlp_whole"]["compiled"]
        assert comp["graphs"] == 1
        for events in comp["events"][1:]:
            assert events[0][0] == "piece" and all(k == "bucket" for k, _ in events[1:])


# -- the split itself, in one process (no process group) ---------------------

class _Tied(torch.nn.Module):
    """Layers of unequal sizes, a weight used twice, a value used by a
    later layer and returned, an in-place update of a buffer, a non-tensor
    output."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Linear(6, 12)
        self.mid = torch.nn.Linear(12, 12)
        self.out = torch.nn.Linear(12, 6)
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x):
        h = torch.tanh(self.emb(x))
        self.count.add_(1)
        m = torch.relu(self.mid(h)) + h
        y = self.out(m + x @ self.emb.weight.t())  # emb.weight: last used here
        return y, m.sum(), h.shape[0]


def _captured(model, *args):
    import janus_frame as jf

    seen = []

    def capture(gm, example_inputs):
        seen.append((gm, list(example_inputs)))
        return gm.forward

    jf.compile(model, backend=capture, fullgraph=True)(*args)
    (gm, inputs), = seen
    return gm, inputs


@pytest.mark.parametrize("cap,backend", [(1, "eager"), (200, "eager"), (700, "eager"),
                                         (10 ** 9, "eager"), (1, "default")])
def test_split_runs_as_the_whole_graph(cap, backend):
    from janus_frame.backends import lookup_backend
    from janus_frame.config import config
    from janus_frame.frontend.ddp import BucketedGraph, partition

    torch.manual_seed(0)
    model = _Tied()
    x = torch.randn(3, 6)
    gm, inputs = _captured(model, x)
    sizes = {id(p): p.numel() * p.element_size() for p in model.parameters()}
    pieces = partition(gm, inputs, sizes, cap, cap)
    ops = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output")]
    assert [n for p in pieces for n in p] == ops  # contiguous, in order, each node once
    # walking back from the output: out (312 bytes), emb.weight (288, last
    # used by the matmul), mid (624), emb.bias (48)
    assert len(pieces) == {1: 4, 200: 4, 700: 2, 10 ** 9: 1}[cap]
    compiled = []
    compile_piece = lookup_backend(backend, config.merged(strict=True))

    def counting(g, ex):
        compiled.append(g)
        return compile_piece(g, ex)

    run = BucketedGraph(gm, pieces, counting)
    # the fusing backend: each piece through its training path (inputs that
    # require grad, some of them activations of the piece before)
    tol = dict(rtol=0, atol=0) if backend == "eager" else dict(rtol=1e-5, atol=1e-6)
    for _ in range(2):  # compiled on the first call, reused on the second
        args = [t for t in inputs]
        ref = gm(*args)
        count = model.count.clone()
        got = run(*args)
        assert torch.equal(model.count, count + 1)  # the mutation ran once
        assert type(got) is type(ref) and len(got) == len(ref)
        for a, b in zip(ref, got):
            if isinstance(a, torch.Tensor):
                torch.testing.assert_close(b, a, **tol)
            else:
                assert a == b
        ga = torch.autograd.grad(ref[0].sum() + ref[1], list(model.parameters()))
        gb = torch.autograd.grad(got[0].sum() + got[1], list(model.parameters()))
        for a, b in zip(ga, gb):
            torch.testing.assert_close(b, a, **tol)
    assert len(compiled) == len(pieces)


class _Modes(torch.nn.Module):
    """Layers inside a no_grad block and an autocast block."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.d = (torch.nn.Linear(8, 8) for _ in range(4))

    def forward(self, x):
        h = torch.relu(self.a(x))
        with torch.no_grad():
            s = torch.sigmoid(self.b(h))
            s = s * 2
        h = h * s
        with torch.autocast("cpu", dtype=torch.bfloat16):
            m = torch.relu(self.c(h))
            m = m + 1
        return self.d(m.float())


def test_split_never_inside_a_mode_switch():
    from janus_frame.frontend.ddp import BucketedGraph, partition

    torch.manual_seed(0)
    model = _Modes()
    x = torch.randn(4, 8)
    gm, inputs = _captured(model, x)
    sizes = {id(p): p.numel() * p.element_size() for p in model.parameters()}
    pieces = partition(gm, inputs, sizes, 1, 1)
    assert len(pieces) >= 2
    for piece in pieces:  # each piece leaves the modes as it found them
        grad, depth = True, 0
        for n in piece:
            if n.target is torch._C._set_grad_enabled:
                grad = n.args[0]
            elif n.target is torch.amp.autocast_mode._enter_autocast:
                depth += 1
            elif n.target is torch.amp.autocast_mode._exit_autocast:
                depth -= 1
        assert grad and depth == 0, [n.format_node() for n in piece]
    got = BucketedGraph(gm, pieces, lambda g, ex: g.forward)(*inputs)
    torch.testing.assert_close(got[0], gm(*inputs)[0], rtol=0, atol=0)
    assert torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
