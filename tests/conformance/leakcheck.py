"""The leak check of the conformance suite: compile and drop many
dynamically created functions (each with a closure cell and its own
globals) in a child interpreter and measure what stays.

The children are slow (janus_frame compiles each function), so the
conformance conftest starts them in the background when the suite is
collected and the leak tests only wait for their results.

* ``1000``: 1,000 functions with ``tracemalloc`` on from the child's first
  line (bytes) and ``gc`` object counts, measured before and after
  ``jf.reset()``;
* ``10000``: 10,000 functions, ``gc`` object counts and pymalloc blocks
  (``sys.getallocatedblocks``): tracemalloc makes each compile about four
  times slower, too slow for 10,000 compiles in the suite's time budget.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r'''
import gc, json, sys, tracemalloc

N, TRACE = int(sys.argv[1]), sys.argv[2] == "trace"
if TRACE:  # from the start: "within 5%" is relative to the whole process
    tracemalloc.start()
import torch
import janus_frame as jf

x = torch.ones(3)


def make(i):
    g = {"torch": torch, "K": float(i), "__name__": f"dyn{i}"}
    src = (
        "def outer():\n"
        f"    c = {i}.0\n"
        "    def f(x):\n"
        "        return x * c + K\n"
        "    return f\n"
    )
    exec(src, g)
    return g["outer"]()


def one(i):
    cf = jf.compile(make(i), backend="eager")
    cf(x)
    cf(x)


def measure():
    gc.collect()
    gc.collect()
    return {"objects": len(gc.get_objects()), "blocks": sys.getallocatedblocks(),
            "traced": tracemalloc.get_traced_memory()[0] if TRACE else 0}


for i in range(20):  # warm up: lazy imports, caches of the first compile
    one(-1 - i)
jf.reset()
start = measure()
for i in range(N):
    one(i)
    if i % 500 == 0:
        gc.collect()
kept = measure()
jf.reset()
after_reset = measure()
print(json.dumps({"n": N, "start": start, "kept": kept, "reset": after_reset}))
'''

JOBS = {"1000": (1000, "trace"), "10000": (10000, "notrace")}
_procs: dict = {}


def start(kind: str) -> None:
    if kind in _procs:
        return
    n, trace = JOBS[kind]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JANUS_")}
    _procs[kind] = subprocess.Popen([sys.executable, "-c", CHILD, str(n), trace],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env, cwd=HERE)


def result(kind: str, timeout: float = 900) -> dict:
    start(kind)
    p = _procs[kind]
    out, err = p.communicate(timeout=timeout)
    if not hasattr(p, "_jf_result"):
        if p.returncode != 0:
            p._jf_result = {"error": f"leak child exited {p.returncode}: {err[-3000:]}"}
        else:
            p._jf_result = json.loads(out.strip().splitlines()[-1])
    return p._jf_result


def stop_all() -> None:
    for p in _procs.values():
        if p.poll() is None:
            p.kill()
            p.wait()
