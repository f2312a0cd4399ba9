"""Lowering: a functional aten graph to the loop IR (:mod:`ir`).

``lower(gm) -> ir.Program``.  ``lowering`` walks the graph, ``tensor_values``
holds the lazy / view values it passes around, ``registry`` is the table of
per-op lowerings, which the registration modules ``ops`` and ``reduce`` fill
when this package is imported.
"""
from . import ops, reduce  # noqa: F401  (fill the registry)
from .lowering import lower

__all__ = ["lower"]
