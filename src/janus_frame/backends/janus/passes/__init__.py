"""Graph passes: what happens to the fx graph before it is lowered.

``decomp`` (the decomposition table), ``layout`` (channels-last
convolutions, on the captured graph) and ``graph_passes`` (matmul folding and
batching, on the functional aten graph).
"""
