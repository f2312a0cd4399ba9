"""Development tool, not a test: what torch.compile gets for each program.

    python tests/conformance/dynamo_reference.py [topic-file ...]

Runs the first call of every program through ``torch._dynamo.explain``
(backend "eager") and prints the programs whose declared ``graphs`` /
``breaks`` differ from Dynamo's counts, with Dynamo's break reasons. The
suite never imports this file: the declared counts in the programs are the
reference, this only helps to write them.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch._dynamo  # noqa: E402

from harness import Registry, seed_all  # noqa: E402


def main(paths):
    paths = paths or sorted(glob.glob(os.path.join(HERE, "test_conf_*.py")))
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        regs = [v for v in vars(mod).values() if isinstance(v, Registry)]
        for reg in regs:
            for p in reg.programs:
                if p.subprocess:
                    continue
                torch._dynamo.reset()
                w = p.world()
                if p.between is not None:
                    p.between(0, w)
                seed_all(1000)
                args, kwargs = p.make_args(0, w)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        r = torch._dynamo.explain(w.fn)(*args, **kwargs)
                    g, b = r.graph_count, len(r.break_reasons)
                    reasons = [str(x.reason).splitlines()[0][:150] for x in r.break_reasons]
                except Exception as e:  # noqa: BLE001
                    g, b, reasons = "?", "?", [f"{type(e).__name__}: {str(e)[:150]}"]
                if (g, b) != (p.graphs, p.breaks):
                    print(f"{p.id}: dynamo graphs={g} breaks={b}; declared {p.graphs}/{p.breaks}"
                          f"  {reasons[:3]}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
