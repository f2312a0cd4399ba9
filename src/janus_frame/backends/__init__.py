"""Backends: ``backend(gm: fx.GraphModule, example_inputs: list[Tensor]) -> callable``.

The torch.compile backend protocol. ``lookup_backend`` turns a name from
``BACKENDS`` or a user callable into such a function:

- ``"eager"``: runs the graph as captured (the reference);
- ``"inductor"``: torch's Inductor, for comparison;
- ``"default"``: janus_frame's fusing backend, which also takes the
  compiler's options (see :func:`lookup_backend`).
"""
from __future__ import annotations

import functools
from typing import Callable


def eager(gm, example_inputs):
    """Run the captured graph as is."""
    return gm.forward


def inductor(gm, example_inputs):
    """torch's Inductor (the comparison backend; imports torch._inductor lazily)."""
    from .inductor import compile_inductor

    return compile_inductor(gm, example_inputs)


def default(gm, example_inputs, *, options=None):
    """janus_frame's fusing backend; ``options``: a :class:`janus_frame.config.Config`
    (None: the process-wide ``config``)."""
    from .janus import janus_backend

    return janus_backend(gm, example_inputs, options=options)


BACKENDS: dict[str, Callable] = {"eager": eager, "inductor": inductor, "default": default}


def is_fusing(fn) -> bool:
    """Is ``fn`` (from :func:`lookup_backend`) janus_frame's fusing backend?"""
    return fn is default or (isinstance(fn, functools.partial) and fn.func is default)


def lookup_backend(spec, options=None) -> Callable:
    """The backend function for ``spec``: a name from ``BACKENDS`` or a callable.

    ``options`` (a Config: the compiler's merged one, with ``strict`` already
    folded in from ``fullgraph``) reach the fusing backend -- ``"default"``,
    or ``default`` itself passed as a callable, comes back as
    ``functools.partial(default, options=options)``.  Other backends follow
    the plain protocol and take no options."""
    if isinstance(spec, str):
        try:
            fn = BACKENDS[spec]
        except KeyError:
            raise ValueError(
                f"unknown backend {spec!r}; choose one of {', '.join(sorted(BACKENDS))}"
            ) from None
    elif callable(spec):
        fn = spec
    else:
        raise TypeError(f"backend must be a name or a callable, got {type(spec).__name__}")
    if fn is default and options is not None:
        return functools.partial(default, options=options)
    return fn
