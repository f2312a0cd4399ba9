"""Lowering: a functional aten graph to the loop IR (:mod:`..ir`).

``lowering`` walks the graph, ``tensor_values`` holds the lazy / view values
it passes around, and ``ops`` / ``reduce`` register the per-op lowerings.
"""
