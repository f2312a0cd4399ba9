"""Adapter to torch's Inductor, the comparison backend (the only place that
imports ``torch._inductor``).

In: an fx.GraphModule with tensor placeholders and real example inputs.
Out: a callable taking the graph's inputs positionally (Inductor's own
compiled function may use the "boxed" convention: one list argument that it
empties; that is adapted here).
"""
from __future__ import annotations


def compile_inductor(gm, example_inputs):
    from torch._inductor.compile_fx import compile_fx

    compiled = compile_fx(gm, list(example_inputs))
    if getattr(compiled, "_boxed_call", False):
        def call_boxed(*args):
            return compiled(list(args))

        return call_boxed
    return compiled
