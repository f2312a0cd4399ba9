"""Adapter to torch's Inductor, the comparison backend (the only place that
imports ``torch._inductor``).

In: an fx.GraphModule with tensor placeholders and real example inputs.
Out: Inductor's compiled callable.
"""
from __future__ import annotations


def compile_inductor(gm, example_inputs):
    from torch._inductor.compile_fx import compile_fx

    return compile_fx(gm, example_inputs)
