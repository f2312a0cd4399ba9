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
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed with gloo")

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
    # ranks stay in lockstep
    for a, b in zip(ranks[0][case]["compiled"]["params"], ranks[1][case]["compiled"]["params"]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", SPLIT + ("mlp_whole",))
def test_gradients_all_reduced(ranks, case):
    g0, g1 = ranks[0][case]["compiled"]["grads"], ranks[1][case]["compiled"]["grads"]
    for step0, step1 in zip(g0, g1):
        for a, b in zip(step0, step1):
            assert torch.equal(a, b)
    # the ranks' data differ: equal gradients come from the all-reduce
    e0 = ranks[0][case]["eager"]
    assert e0["buckets"] >= 2 and all(ev for ev in e0["events"])


@pytest.mark.parametrize("case", SPLIT)
def test_graph_split_at_buckets(ranks, case):
    for res in ranks:
        comp = res[case]["compiled"]
        assert comp["buckets"] == res[case]["eager"]["buckets"] >= 2
        assert comp["graphs"] >= comp["buckets"]


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
