"""Every single fault, one at a time: a child process of test_fault_injection.py.

In: the programs below (breaks inside ``with`` blocks and ``try`` bodies, so
resume functions start inside exception regions and an exception is raised
and handled after the break). Out: exit status 0 when, for every k, a fault
raised at the k-th injection point reached (and nowhere else) leaves each
call's result, printed output and torch's settings as eager's; the first
difference is printed and the status is 1. A crash (a resume code whose
exception table the interpreter cannot unwind when it runs natively after a
failed compile) shows as the child's signal.

Run as ``python tests/fault_sweep_child.py``; ``--quick`` sweeps every
third point.
"""
from __future__ import annotations

import contextlib
import io
import sys
import warnings

import torch

import janus_frame as jf
from janus_frame import faults
from janus_frame.config import config


class Quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True  # suppresses


def exit_suppresses_after_break(x):
    y = x + 1
    with Quiet():
        print("inside", y.shape)
        y = y * [1][3]  # IndexError, suppressed by __exit__
    return y * 2


def except_after_break(x):
    y = x.sin()
    try:
        print("in try")
        y = y + {}["missing"]
    except KeyError as e:
        y = y - len(str(e))
    finally:
        y = y * 3
    return y


def suppress_in_loop(x, n=3):
    acc = x
    for i in range(n):
        with contextlib.suppress(ZeroDivisionError):
            print("step", i)
            acc = acc + 1 / (i - 1)
        acc = acc * 2
    return acc


def nested_with_and_try(x):
    out = []
    with Quiet():
        try:
            print("a")
            out.append(x + 1)
            raise ValueError("v")
        except ValueError:
            print("b")
            out.append(x * 2)
        raise RuntimeError("suppressed")
    return out


PROGRAMS = [exit_suppresses_after_break, except_after_break, suppress_in_loop,
            nested_with_and_try]


def run(fn, x):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        out = fn(x)
    return out, buf.getvalue(), torch.get_default_dtype(), torch.is_grad_enabled(), \
        torch._C._len_torch_function_stack()


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape \
            and torch.allclose(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return a == b


def main() -> int:
    step = 3 if "--quick" in sys.argv else 1
    config.checks = True  # the per-instruction points ride on the checks switch
    warnings.simplefilter("ignore")
    hits, target = [], [-1]

    def point(name, scale=1.0):
        hits.append(name)
        if len(hits) - 1 == target[0]:
            raise faults.InjectedFault(f"injected fault at {name}")

    faults.point = point
    x = torch.arange(3.0)
    for fn in PROGRAMS:
        want = [run(fn, x), run(fn, x + 1)]
        jf.reset()
        hits.clear()
        cf = jf.compile(fn, backend="eager")
        run(cf, x), run(cf, x + 1)
        total = len(hits)
        for k in range(0, total, step):
            jf.reset()
            hits.clear()
            target[0] = k
            cf = jf.compile(fn, backend="eager")
            got = [run(cf, x), run(cf, x + 1)]
            if not same(got, want):
                print(f"{fn.__name__}: fault at point {k} ({hits[k] if k < len(hits) else '?'}) "
                      f"changed the result:\n  {got}\n  eager: {want}")
                return 1
        print(f"{fn.__name__}: {total} points, each fault a native run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
