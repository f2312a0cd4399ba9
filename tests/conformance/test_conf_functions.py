"""Conformance: small tensor functions in the style of compiler test suites
(constant folding, shape arithmetic, metadata queries, builtins over
tensors, in-place updates, dtype promotion, torch.* helpers).

PYTEST_DONT_REWRITE"""
from __future__ import annotations

import functools
import math
import operator

import torch
import torch.nn.functional as F

from harness import Registry, T

P = Registry("functions")
two = lambda k: (T(3, 4), T(3, 4))  # noqa: E731
one = lambda k: (T(3, 4),)  # noqa: E731

SHIFT = 3


@P(args=two)
def add_alpha(a, b):
    return torch.add(a, b, alpha=2)


@P(args=two)
def sub_then_mul_constant(a, b):
    return (a - b) * 0.5 + 1


@P(args=two)
def addcmul_addcdiv(a, b):
    return torch.addcmul(a, a, b, value=0.5), torch.addcdiv(a, a, b.abs() + 1, value=2)


@P(args=one)
def shape_unpack_and_view(x):
    n, m = x.size()
    return x.view(m, n) * n + m


@P(args=one)
def shape_negative_index(x):
    return x.reshape(-1, x.shape[-1] * 2) if x.shape[0] % 2 == 0 else x.flatten()[: x.shape[-1]]


@P(args=one)
def tuple_of_size(x):
    s = tuple(x.size())
    return torch.zeros(s) + x, s


@P(args=one)
def max_of_shape(x):
    return x.sum() * max(x.shape) + min(x.shape)


@P(args=one)
def new_factories(x):
    return x.new_zeros(2, 2), x.new_ones(3), x.new_full((2,), 7.0), x.new_empty(0).shape


@P(args=one)
def list_of_size(x):
    dims = list(x.size())
    dims[0] = 1
    return x[:1].expand(*dims) + 1


@P(args=one)
def reduce_over_shape(x):
    numel = functools.reduce(operator.mul, x.shape, 1)
    return x / numel, numel


@P(args=one)
def math_sqrt_of_dim(x):
    return x / math.sqrt(x.shape[-1]) + math.floor(2.7) + math.log(math.e)


@P(args=one)
def numel_floor_div(x):
    half = x.numel() // 2
    return x.flatten()[:half] * half


@P(args=one)
def size_object_ops(x):
    s = torch.Size([x.shape[1], x.shape[0]])
    return x.t().reshape(s), s.numel(), len(s)


@P(args=one)
def view_star_shape(x):
    shape = (2, -1)
    return x.view(*shape).sum(1)


@P(args=one)
def unbind_and_stack(x):
    rows = x.unbind(0)
    return torch.stack(list(reversed(rows)))


@P(args=two)
def zip_rows(a, b):
    return [u @ v for u, v in zip(a, b)]


@P(args=one)
def sum_generator_over_rows(x):
    return sum(r.max() for r in x)


@P(args=one, graphs=1, breaks=None, why='torch.compile breaks on storage_offset()')
def contiguous_and_stride_checks(x):
    y = x.t()
    if not y.is_contiguous():
        y = y.contiguous()
    return y, y.stride(), x.storage_offset()


@P(args=one)
def tensor_from_python_list_of_shapes(x):
    t = torch.tensor([x.shape[0], x.shape[1]])
    return x.sum() * t


@P(args=one)
def none_and_ellipsis_indexing(x):
    return x[None], x[..., None], x[:, None, :], x[None, ..., 0]


@P(args=one)
def clamp_inplace_and_return(x):
    y = x.clone()
    y.clamp_(min=0)
    return y


@P(args=one)
def where_with_scalars(x):
    return torch.where(x > 0, 1.0, -1.0), torch.where(x > 0, x, 0.0)


@P(args=one)
def masked_fill_then_softmax(x):
    mask = torch.triu(torch.ones(3, 4, dtype=torch.bool), diagonal=1)
    return x.masked_fill(mask, float("-inf")).softmax(-1)


@P(args=one)
def abs_neg_pos_builtins(x):
    return abs(x), -x, +x, ~(x > 0)


@P(args=one)
def isinstance_tensor_and_is_tensor(x):
    if isinstance(x, torch.Tensor) and torch.is_tensor(x):
        return x + 1
    return x


@P(args=one)
def dtype_checks(x):
    if x.dtype == torch.float32 and x.dtype.is_floating_point:
        return x.to(torch.float16).float(), str(x.dtype)
    return x, ""


@P(args=one)
def default_dtype_query(x):
    return x.to(torch.get_default_dtype()) * 2


@P(args=one)
def range_len_loop(x):
    out = x[0]
    for i in range(1, len(x)):
        out = out + x[i] * i
    return out


@P(args=one)
def enumerate_rows(x):
    acc = torch.zeros(4)
    for i, row in enumerate(x):
        acc += row * (i + 1)
    return acc


@P(args=one)
def dict_of_tensors_built(x):
    d = dict(a=x, b=x * 2)
    d.update(c=x + 1)
    return d


@P(args=lambda k: (T(3, 4, requires_grad=True),))
def requires_grad_query(x):
    return x * 2 if x.requires_grad else x, x.requires_grad


@P(args=one)
def global_int_constant(x):
    return x + SHIFT, x * (SHIFT - 1)


@P(args=one)
def nested_function_calls(x):
    def inner(t):
        return t.relu() + 1

    def outer(t):
        return inner(t) * inner(-t)
    return outer(x)


@P(args=one)
def keyword_arguments_to_torch(x):
    return torch.sum(x, dim=1, keepdim=True), torch.mean(input=x, dim=0), x.softmax(dim=-1)


@P(args=one)
def functional_activations(x):
    return F.relu(x), F.leaky_relu(x, 0.1), F.elu(x), F.silu(x), F.hardtanh(x), F.softplus(x)


@P(args=one)
def normalize_and_pad(x):
    return F.normalize(x, dim=1), F.pad(x, (1, 1)), F.pad(x, (0, 0, 1, 0), value=2.0)


@P(args=lambda k: (T(2, 3, 8),))
def interpolate_and_unfold(x):
    return F.interpolate(x, scale_factor=2, mode="linear", align_corners=False), x.unfold(2, 2, 2)


@P(args=one)
def cumulative_ops(x):
    return x.cumsum(1), x.cumprod(0), torch.diff(x, dim=1), x.flip(0), x.roll(1, 1)


@P(args=one, graphs=1, breaks=None, why='torch.compile breaks on allclose (data-dependent)')
def comparison_reductions(x):
    return (x > 0).all(), (x > 0).any(1), torch.isclose(x, x + 1e-9).all(), torch.allclose(x, x)


@P(args=one)
def matrix_ops(x):
    return x @ x.T, torch.mm(x.T, x), torch.outer(x[0], x[1]), torch.trace(x @ x.T)


@P(args=one)
def tril_triu_eye(x):
    return torch.tril(x), torch.triu(x, 1), torch.eye(3) @ x


@P(args=one)
def int_tensor_arith(x):
    i = (x * 10).to(torch.int32)
    return i // 3, i % 4, i.float() / 3, torch.div(i, 3, rounding_mode="floor")


@P(args=one)
def bool_tensor_logic(x):
    a, b = x > 0, x < 0.5
    return a & b, a | b, a ^ b, ~a, torch.logical_and(a, b).sum()


@P(args=one)
def type_promotion(x):
    i = torch.arange(4)
    return x + i, (x > 0) + i, i * 1.5, i / 2, torch.ones(4, dtype=torch.float64) + x[0]


@P(args=one)
def repeat_and_tile(x):
    return x.repeat(2, 1), x.tile((1, 2)), x.repeat_interleave(2, dim=0)


@P(args=one)
def sort_topk_indices_used(x):
    _, idx = x.sort(dim=1)
    return torch.gather(x, 1, idx), x.topk(1)[1].squeeze(1)


@P(args=one)
def argmax_argmin_keepdim(x):
    return x.argmax(1, keepdim=True), x.argmin(), x.max(), x.min(0)[0]


@P(args=one)
def chained_views_and_inplace_on_clone(x):
    y = x.clone()
    y.view(-1)[::2] = 0
    y.t()[0].add_(5)
    return y


@P(args=one, graphs=(1, 3), breaks=None, why='float()/int()/bool() of tensors: torch.compile breaks')
def scalar_tensor_to_python_in_return(x):
    s = x.sum()
    return float(s), int(s > 0), bool(s < 100)


@P(args=one)
def empty_tensor_ops(x):
    e = x[:0]
    return e.sum(), e.shape, torch.cat([e, x]).shape


@P(args=one, graphs=(1, 3), breaks=None, why='float() of tensors in a sort key')
def lambda_sort_key_on_tensors(x):
    rows = list(x.unbind(0))
    rows.sort(key=lambda r: float(r.sum()))
    return torch.stack(rows)


@P(args=one)
def list_index_of_tensor_results(x):
    parts = [x[0], x[1], x[2]]
    parts[1] = parts[1] * 10
    return torch.cat(parts)


@P(args=one)
def einsum_variants(x):
    return torch.einsum("ij->j", x), torch.einsum("ij,ij->i", x, x), torch.einsum("ii", x[:, :3])


@P(args=one)
def clone_detach_contiguous_chain(x):
    return x.clone().detach().contiguous().t().contiguous()


test_program = P.tests()
