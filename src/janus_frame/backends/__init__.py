"""Backends: ``backend(gm: fx.GraphModule, example_inputs: list[Tensor]) -> callable``.

The torch.compile backend protocol. ``lookup_backend`` turns a name from
``BACKENDS`` or a user callable into such a function:

- ``"eager"``: runs the graph as captured (the reference);
- ``"inductor"``: torch's Inductor, for comparison;
- ``"default"``: janus_frame's fusing backend.
"""
from __future__ import annotations

from typing import Callable


def eager(gm, example_inputs):
    """Run the captured graph as is."""
    return gm.forward


def inductor(gm, example_inputs):
    """torch's Inductor (the comparison backend; imports torch._inductor lazily)."""
    from .inductor import compile_inductor

    return compile_inductor(gm, example_inputs)


def default(gm, example_inputs):
    """janus_frame's fusing backend."""
    from .janus import janus_backend

    return janus_backend(gm, example_inputs)


BACKENDS: dict[str, Callable] = {"eager": eager, "inductor": inductor, "default": default}


def lookup_backend(spec) -> Callable:
    if isinstance(spec, str):
        try:
            return BACKENDS[spec]
        except KeyError:
            raise ValueError(
                f"unknown backend {spec!r}; choose one of {', '.join(sorted(BACKENDS))}"
            ) from None
    if callable(spec):
        return spec
    raise TypeError(f"backend must be a name or a callable, got {type(spec).__name__}")
