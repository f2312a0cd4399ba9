"""The decomposition table of the fusing backend.

In: nothing.  Out: ``decomposition_table()`` -- a dict OpOverload -> python
decomposition, for ``make_fx`` (inference) and AOTAutograd (training).

It is torch's core-aten table plus the finer splits that let the scheduler
fuse normalisations and activations (softmax, log-softmax, layer/batch/group
norm, gelu, clamp family), minus the ops we keep whole as library calls
(matmuls, convolution and its backward, embedding, attention) -- except
unpadded, ungrouped 1x1 convolutions of channels-last float data, forward
and backward, which become matrix products (:func:`conv1x1`).
"""
from __future__ import annotations

import functools

import torch

from ....torch_compat import OpOverloadPacket

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
    # their decompositions index without eager's range checks (index_put
    # wraps a negative index where these raise) or with other messages
    aten.take, aten.index_add, aten.index_copy, aten.index_fill,
]


def _overloads(packets):
    out = []
    for p in packets:
        if isinstance(p, OpOverloadPacket):
            out.extend(getattr(p, o) for o in p.overloads())
        else:
            out.append(p)
    return out


@functools.lru_cache(maxsize=None)
def _table():
    from ....torch_compat import core_aten_decompositions
    from ....torch_compat import full_decomposition_table as full

    table = dict(core_aten_decompositions())
    for op in _overloads(_EXTRA):
        if op in full:
            table[op] = full[op]
    for op in _overloads(_KEEP):
        table.pop(op, None)
    return table


def decomposition_table():
    table = dict(_table())
    table[aten.convolution.default] = conv1x1
    table[aten.convolution_backward.default] = conv1x1_backward
    return table


def needs_decomposition(op) -> bool:
    """Whether ``op`` is always decomposed.  The 1x1 convolutions' entries
    apply to some calls only, so a convolution left in a graph is no sign
    that the graph was not traced through the table (a graph handed over
    already in decomposed aten form keeps its 1x1 convolutions as calls)."""
    return op in _table()


def _pair(v):
    v = list(v)
    return v * 2 if len(v) == 1 else v


def _as_mm(x, w, stride, padding, transposed, groups) -> bool:
    """Whether a convolution is a matrix product over NHWC rows: 2-D, kernel
    1x1, no padding, one group, float32/64 CPU data with static, nonzero
    sizes, laid out channels-last (as :mod:`layout` makes the input of every
    float32 convolution) -- and so laid out by eager's own choice, which a
    row-major input with one channel is not.

    oneDNN runs such convolutions far below its 3x3 rate: on the benchmark's
    CNN the 16->32 stride-2 projection took 0.10 ms forward and 0.33 ms
    backward (4.2 and 8.4 MFLOP; the 3x3 convolutions of the same step run
    at ~200 GFLOP/s); through sgemm its three products take 0.14 ms in all,
    the strided input's gather and the gradient's spreading ~0.05 ms."""
    if x.dim() != 4 or w.dim() != 4 or transposed or groups != 1:
        return False
    if not all(isinstance(d, int) for d in (*x.shape, *w.shape)):
        return False  # (first: comparing symbolic sizes would add guards)
    from ....torch_compat import suggest_memory_format

    _, c, h, wd = x.shape
    return (tuple(w.shape[2:]) == (1, 1) and min(c, h, wd, w.shape[0]) > 0
            and len(stride) in (1, 2) and all(p == 0 for p in padding)
            and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and w.dtype == x.dtype and x.is_contiguous(memory_format=torch.channels_last)
            and (h * wd == 1 or suggest_memory_format(x) == torch.channels_last))


def _rows(x, stride):
    """The input's pixels a 1x1 convolution of ``stride`` reads, one row of
    channels each: [N*Ho*Wo, C] (a view when the stride is 1)."""
    n, c, h, w = x.shape
    xs = aten.slice.Tensor(aten.slice.Tensor(x, 2, 0, h, stride[0]), 3, 0, w, stride[1])
    return aten.reshape(aten.permute(xs, [0, 2, 3, 1]), [-1, c]), xs.shape[2], xs.shape[3]


def conv1x1(x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
    """``aten.convolution`` of a 1x1 kernel as ``rows @ W^T`` (+ bias): the
    result is channels-last, as eager's for such an input; NotImplemented
    for every other convolution (the library call)."""
    if not _as_mm(x, w, stride, padding, transposed, groups):
        return NotImplemented
    rows, ho, wo = _rows(x, _pair(stride))
    wt = aten.permute(aten.reshape(w, [w.shape[0], w.shape[1]]), [1, 0])
    y = aten.mm(rows, wt) if bias is None else aten.addmm(bias, rows, wt)
    return aten.permute(aten.view(y, [x.shape[0], ho, wo, w.shape[0]]), [0, 3, 1, 2])


def conv1x1_backward(grad, x, w, bias_sizes, stride, padding, dilation, transposed,
                     output_padding, groups, output_mask):
    """``aten.convolution_backward`` of what :func:`conv1x1` computes: the
    input's gradient is ``grad_rows @ W`` spread back to the pixels the
    stride read (zeros in between: padded, reshaped and cropped, no
    scatter), the weight's ``grad_rows^T @ rows``, the bias's a column sum."""
    if not _as_mm(x, w, stride, padding, transposed, groups):
        return NotImplemented
    stride = _pair(stride)
    n, c, h, wd = x.shape
    o = w.shape[0]
    g = aten.reshape(aten.permute(grad, [0, 2, 3, 1]), [-1, o])
    gi = gw = gb = None
    if output_mask[0]:
        ho, wo = grad.shape[2], grad.shape[3]
        sh, sw = stride
        gr = aten.mm(g, aten.reshape(w, [o, c]))  # [N*Ho*Wo, C]
        t = aten.view(gr, [n, ho, wo, c])
        if sh != 1 or sw != 1:
            t = aten.constant_pad_nd(aten.view(t, [n, ho, 1, wo, 1, c]),
                                     [0, 0, 0, sw - 1, 0, 0, 0, sh - 1])
            t = aten.view(t, [n, ho * sh, wo * sw, c])
            if ho * sh != h or wo * sw != wd:  # past the last row or column read
                t = aten.constant_pad_nd(t, [0, 0, 0, wd - wo * sw, 0, h - ho * sh])
        gi = aten.permute(t, [0, 3, 1, 2])  # dense NHWC, as eager's
    if output_mask[1]:
        rows, _, _ = _rows(x, stride)
        # contiguous, as eager's for row-major inputs (the usual case; a
        # channels-last input gives strides (C, 1, C, C) in eager: the same
        # memory, other strides only over the size-1 dimensions)
        gw = aten.view(aten.mm(aten.permute(g, [1, 0]), rows), [o, c, 1, 1])
    if output_mask[2]:
        gb = aten.sum.dim_IntList(g, [0])
    return gi, gw, gb
