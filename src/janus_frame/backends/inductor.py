"""Adapter to torch's Inductor, the comparison backend (the only place that
imports ``torch._inductor``).

In: an fx.GraphModule with tensor placeholders and real example inputs.
Out: Inductor's compiled callable, which behaves like the graph module
(inputs positionally).
"""
from __future__ import annotations


def compile_inductor(gm, example_inputs):
    from ..torch_compat import inductor_compile

    return inductor_compile(gm, list(example_inputs))
