"""The decomposition table of the fusing backend.

In: nothing.  Out: ``decomposition_table()`` -- a dict OpOverload -> python
decomposition, for ``make_fx`` (inference) and AOTAutograd (training).

It is torch's core-aten table plus the finer splits that let the scheduler
fuse normalisations and activations (softmax, log-softmax, layer/batch/group
norm, gelu, clamp family), minus the ops we keep whole as library calls
(matmuls, convolution and its backward, embedding, attention).
"""
from __future__ import annotations

import functools

import torch

aten = torch.ops.aten

# finer splits, taken from torch's full decomposition table
_EXTRA = [
    aten._softmax, aten._log_softmax, aten.native_layer_norm,
    aten._native_batch_norm_legit_functional, aten._native_batch_norm_legit_no_training,
    aten._native_batch_norm_legit, aten.native_batch_norm, aten.native_group_norm,
    aten.hardtanh, aten.leaky_relu, aten.elu, aten.linalg_vector_norm,
    aten.squeeze.dims, aten.hardsigmoid, aten.mish, aten.logit, aten.glu,
]

# kept whole: extern library calls, or lowered directly by us
_KEEP = [
    aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten.convolution, aten.convolution_backward,
    aten.embedding, aten.embedding_dense_backward,
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_flash_attention_for_cpu_backward,
    aten.mean.dim, aten.var_mean.correction, aten.var.correction, aten.relu, aten._to_copy,
    aten.cat, aten.index_select, aten.native_dropout, aten.max_pool2d_with_indices,
    aten.max_pool2d_with_indices_backward, aten._adaptive_avg_pool2d, aten.avg_pool2d,
    aten.gelu,
]


def _overloads(packets):
    out = []
    for p in packets:
        if isinstance(p, torch._ops.OpOverloadPacket):
            out.extend(getattr(p, o) for o in p.overloads())
        else:
            out.append(p)
    return out


@functools.lru_cache(maxsize=None)
def _table():
    from torch._decomp import core_aten_decompositions, decomposition_table as full

    table = dict(core_aten_decompositions())
    for op in _overloads(_EXTRA):
        if op in full:
            table[op] = full[op]
    for op in _overloads(_KEEP):
        table.pop(op, None)
    return table


def decomposition_table():
    return dict(_table())


def needs_decomposition(op) -> bool:
    return op in _table()
