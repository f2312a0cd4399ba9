"""Conformance: torch APIs -- ops returning named tuples, in-place ops and
views, aliasing of inputs and outputs, grad modes, autocast, finfo/iinfo,
dtype/device arguments, autograd inside the function, RNG.

PYTEST_DONT_REWRITE"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import Registry, T

P = Registry("torch")
m34 = lambda k: (T(3, 4),)  # noqa: E731


# ---------------------------------------------------------------- named tuples
@P(args=m34)
def max_dim_values(x):
    return x.max(dim=1).values


@P(args=m34)
def max_dim_indices_attr(x):
    return torch.max(x, 1).indices


@P(args=m34)
def min_dim_unpack(x):
    v, i = x.min(dim=0)
    return v * 2, i


@P(args=m34)
def min_dim_returned_whole(x):
    return x.min(1, keepdim=True)


@P(args=m34)
def topk_values(x):
    return torch.topk(x, 2).values


@P(args=m34)
def topk_fields_by_index(x):
    r = x.topk(2, dim=0, largest=False)
    return r[0] + 1, r[1]


@P(args=m34)
def sort_named(x):
    s = torch.sort(x, dim=1, descending=True)
    return s.values[:, 0], s.indices


@P(args=m34)
def kthvalue_named(x):
    return x.kthvalue(2, dim=1).values


@P(args=lambda k: (torch.randint(0, 3, (3, 5)).float(),))
def mode_named(x):
    return torch.mode(x, 1).values


@P(args=m34)
def median_dim_named(x):
    m = x.median(dim=1)
    return m.values - m.indices


@P(args=m34)
def var_mean_tuple(x):
    var, mean = torch.var_mean(x, dim=1)
    return var + mean


@P(args=m34)
def std_mean_tuple(x):
    r = torch.std_mean(x, dim=0)
    return r[0] * r[1]


@P(args=m34)
def aminmax_named(x):
    r = torch.aminmax(x, dim=1)
    return r.min + r.max


@P(args=lambda k: (T(3, 3),))
def slogdet_named(x):
    r = torch.linalg.slogdet(x)
    return r.sign * r.logabsdet


@P(args=lambda k: (T(4, 3),))
def qr_named(x):
    q, r = torch.linalg.qr(x)
    res = torch.linalg.qr(x)
    return q @ r, res.Q.shape, res.R


@P(args=m34)
def cummax_named(x):
    return torch.cummax(x, dim=1).values


@P(args=lambda k: (torch.tensor([1.0, 2.0, 2.0, 3.0, 1.0]),), graphs=None, breaks=None, why='torch.compile skips this frame (0 graphs); janus_frame may compile it')
def unique_consecutive_counts(x):
    vals, counts = torch.unique_consecutive(x, return_counts=True)
    return vals, counts


@P(args=m34)
def namedtuple_type_preserved(x):
    r = x.max(1)
    return type(r).__name__, isinstance(r, tuple), r._fields if hasattr(r, "_fields") else None


@P(args=lambda k: (T(2, 3, 4),))
def frexp_named(x):
    r = torch.frexp(x)
    return r.mantissa, r.exponent


# ---------------------------------------------------------------- in-place ops and views
@P(args=m34)
def inplace_on_input(x):
    x.add_(1)
    x.mul_(2)
    return x.sum()


@P(args=m34)
def inplace_returns_input(x):
    return x.add_(1)


@P(args=m34)
def inplace_on_view_of_input(x):
    v = x[0]
    v.add_(10)
    return x


@P(args=m34)
def setitem_on_input(x):
    x[0, 1] = 5.0
    x[:, 0] = x[:, 1] * 2
    return x * 1


@P(args=m34)
def setitem_with_tensor_mask(x):
    x[x < 0] = 0.0
    return x.sum()


@P(args=m34)
def return_view_of_input(x):
    return x.view(12)


@P(args=m34)
def return_transpose_view(x):
    return x.t()


@P(args=m34)
def return_several_views(x):
    return x[0], x[:, 1], x.reshape(4, 3), x.unsqueeze(0)


@P(args=m34)
def inplace_then_return_view(x):
    x.mul_(2)
    return x[1:]


@P(args=m34)
def view_write_through_output(x):
    y = x.view(-1)
    y[0] = 100.0
    return y


@P(args=lambda k: (T(3, 4),))
def t_inplace(x):
    x.t_()
    return x + 0


@P(args=lambda k: (T(3, 4),))
def unsqueeze_inplace(x):
    x.unsqueeze_(0)
    return x.shape, x * 2


@P(args=lambda k: (T(3, 4),), graphs=1, breaks=None, why='torch.compile breaks on resize_()')
def squeeze_resize_metadata_inplace(x):
    y = x.clone()
    y.resize_(12)
    return y


@P(args=lambda k: (T(3, 4),))
def transpose_contiguous_copy(x):
    y = x.transpose(0, 1).contiguous()
    y[0, 0] = 0
    return y, x


@P(args=lambda k: (T(3, 4),))
def expand_then_clone(x):
    return x[:1].expand(3, 4).clone(), x[:1].expand(2, 3, 4)


@P(args=lambda k: (T(6),))
def chunk_split_views(x):
    a, b = x.chunk(2)
    c = x.split([1, 5])
    return a, b, c[1]


@P(args=lambda k: (T(4, 4),))
def diagonal_and_narrow_views(x):
    return x.diagonal(), x.narrow(1, 1, 2), x.select(0, 2), x.unfold(0, 2, 2)


@P(args=lambda k: (T(2, 3),))
def as_strided_view(x):
    return x.as_strided((3, 2), (1, 3))


@P(args=lambda k: (T(4),))
def same_tensor_twice_inplace(x):
    def f(a, b):
        a.add_(1)
        return a + b
    return f(x, x)


def _overlap_args(k):
    base = torch.arange(40.0).reshape(4, 10) if k else None
    if k == 0:
        return (torch.arange(4.0) * 10, torch.arange(4.0) + 2)
    return (base[:, 0], base.view(-1)[:4])


@P(args=_overlap_args)
def overlapping_views_as_args(a, b):
    a.mul_(2)
    return b + a


@P(args=lambda k: ((lambda t: (t, t))(T(4)) if k else (T(4), T(4))))
def same_tensor_passed_twice(a, b):
    a.add_(1)
    b.mul_(2)
    return a + b


@P(args=lambda k: ((lambda t: (t[:3], t[1:]))(T(4)) if k != 1 else (T(3), T(3))))
def overlapping_slices_mutated(a, b):
    a.add_(10)
    return b.clone()


def _overlap_rows_args(k):
    if k == 1:
        return (T(3, 4), T(3, 4))
    t = T(4, 4)
    return (t[:3], t[1:])


@P(args=_overlap_rows_args)
def overlapping_rows_mutated_row_cloned(a, b):
    # eager's clone is a tensor of its own: not a row of the updated base
    a.mul_(3)
    return b[1].clone(), b[:, 1:].contiguous()


@P(args=lambda k: (T(4, 4),))
def clone_of_library_result_slice(m):
    return (m @ m)[1:].clone()


@P(args=lambda k: (T(6),))
def clone_of_as_strided_intermediate(x):
    return torch.as_strided(x * 2, (3,), (1,), 1).clone()


@P(args=lambda k: (T(6), T(4, 4)))
def window_of_intermediate_returned(x, m):
    # eager's results are views holding the whole intermediate, at an offset
    return (x * 2)[1:], (m * 3)[1], (x + 1).sum().expand(3)


@P(args=lambda k: (T(3, 4),), graphs=0, breaks=0)
def input_returned_unchanged(x):
    return x


@P(args=lambda k: (T(3, 4),))
def input_returned_twice(x):
    y = x + 1
    return x, y, x


@P(args=lambda k: (T(3, 4),))
def output_is_detach_of_input(x):
    return x.detach()


@P(args=lambda k: (T(3, 4),))
def copy_into_input(x):
    x.copy_(torch.ones(3, 4))
    return x


@P(args=lambda k: (T(3, 4), T(4)))
def out_argument(x, buf):
    torch.add(x[0], 1, out=buf)
    return buf


@P(args=lambda k: (T(3, 4),))
def zero_and_fill_inplace(x):
    x[0].zero_()
    x[1].fill_(7)
    return x.sum(0)


@P(args=lambda k: (T(3, 4),))
def outputs_share_intermediate_storage(x):
    y = x * 2
    return y[0], y[1], y


@P(args=lambda k: (T(2, 3, 4),))
def permute_output_strides(x):
    return x.permute(2, 0, 1) + 1


@P(args=lambda k: (T(4, 3).t(),))
def noncontiguous_input_pointwise(x):
    return x * 2 + 1


@P(args=lambda k: (T(3, 4)[:, 1:],))
def input_with_storage_offset(x):
    x.add_(1)
    return x[0]


# ---------------------------------------------------------------- grad modes
@P(args=lambda k: (T(3, requires_grad=True),))
def no_grad_block(x):
    with torch.no_grad():
        y = x * 2
    z = x * 3
    return y, z, y.requires_grad, z.requires_grad


@P(args=lambda k: (T(3, requires_grad=True),))
def enable_grad_inside_no_grad(x):
    with torch.no_grad():
        with torch.enable_grad():
            y = x * 2
        z = x + 1
    return y, z


@P(args=lambda k: (T(3, requires_grad=True), bool(k % 2)))
def set_grad_enabled_flag(x, flag):
    with torch.set_grad_enabled(flag):
        y = x.sin()
    return y, torch.is_grad_enabled()


@P(args=lambda k: (T(3),), graphs=1, breaks=None, why='torch.compile breaks on is_inference()')
def inference_mode_block(x):
    with torch.inference_mode():
        y = x * 2
    return y + 1, y.is_inference()


@P(args=lambda k: (T(3, requires_grad=True),))
def no_grad_decorator_callee(x):
    @torch.no_grad()
    def stats(t):
        return t.mean()
    return x * stats(x)


@P(args=lambda k: (T(3, requires_grad=True),))
def set_grad_enabled_function_form(x):
    prev = torch.is_grad_enabled()
    torch.set_grad_enabled(False)
    y = x * 2
    torch.set_grad_enabled(prev)
    return y, y.requires_grad


@P(args=lambda k: (T(3, requires_grad=True),), graphs=2, breaks=1)
def grad_mode_inside_with_and_print(x):
    with torch.no_grad():
        y = x * 2
        print("step")
        z = y + 1
    return z, z.requires_grad


@P(args=lambda k: (T(4, 4),))
def autocast_cpu_bf16(x):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = x @ x
    return y.float(), y.dtype


@P(args=lambda k: (T(4, 4),))
def autocast_disabled_inside(x):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.autocast("cpu", enabled=False):
            y = x @ x
    return y, y.dtype


# ---------------------------------------------------------------- dtypes, finfo, devices
@P(args=lambda k: (T(3),))
def finfo_iinfo(x):
    fi = torch.finfo(x.dtype)
    ii = torch.iinfo(torch.int32)
    return x.clamp(min=fi.min, max=fi.max) + fi.eps, ii.max, fi.tiny


@P(args=lambda k: (T(3, dtype=[torch.float32, torch.float64, torch.float16][k]),))
def dtype_changes_between_calls(x):
    return (x * 2).to(torch.float32), x.dtype


@P(args=lambda k: (T(3),))
def dtype_and_device_arguments(x):
    z = torch.zeros(3, dtype=x.dtype, device=x.device)
    o = torch.ones_like(x, dtype=torch.float64)
    r = torch.arange(3, dtype=torch.int64)
    return x + z, o, r, torch.full((2,), 3, dtype=torch.int32)


@P(args=lambda k: (T(3),))
def to_and_type_conversions(x):
    return x.to(torch.int64), x.double(), x.half().float(), x.to("cpu"), x.type(torch.float64)


@P(args=lambda k: (T(3, dtype=torch.int32),))
def int_division_promotion(x):
    return x / 2, x // 2, x * 1.5, torch.true_divide(x, 3)


@P(args=lambda k: (T(3),))
def is_floating_point_branch(x):
    if x.is_floating_point() and x.dtype == torch.float32:
        return x.round()
    return x


@P(args=lambda k: (T(3),))
def default_dtype_changed_inside(x):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    y = torch.ones(3)
    torch.set_default_dtype(old)
    return x + y, y.dtype


@P(args=lambda k: (T(3),))
def complex_tensor_ops(x):
    z = torch.complex(x, x * 2)
    return z.abs(), z.real, torch.view_as_real(z), z.conj().imag


@P(args=lambda k: (T(3),))
def tensor_constructors_from_python(x):
    t = torch.tensor([1.0, 2.0, 3.0])
    s = torch.as_tensor([4, 5, 6])
    return x * t + s, torch.tensor(3.5), torch.linspace(0, 1, 3)


@P(args=lambda k: (T(3),), graphs=1, breaks=None, why='.item() break in torch.compile')
def scalar_tensor_math(x):
    s = x.sum()
    return x / s, s * 2, s.item() > -100


# ---------------------------------------------------------------- autograd inside the function
# torch.compile: 2 graphs, a break at backward(); janus_frame traces the
# backward into the graph (whole_step.py)
@P(args=lambda k: (T(3, requires_grad=True),), graphs=(1, 2), breaks=None)
def backward_inside(x):
    y = (x * x).sum()
    y.backward()
    return x.grad * 1


@P(args=lambda k: (T(3, requires_grad=True),), graphs=1, breaks=None, why='torch.compile breaks on autograd.grad')
def autograd_grad_inside(x):
    y = (x ** 3).sum()
    (g,) = torch.autograd.grad(y, x, create_graph=True)
    return g


@P(args=lambda k: (T(3),))
def requires_grad_set_inside(x):
    w = torch.ones(3, requires_grad=True)
    y = (w * x).sum()
    return y, y.requires_grad


@P(args=lambda k: (T(3, requires_grad=True),), graphs=1, breaks=None, why='torch.compile breaks on requires_grad_()')
def detach_and_requires_grad_outputs(x):
    a = x * 2
    b = a.detach()
    return a, b, b.requires_grad_(True)


@P(args=lambda k: (T(3, requires_grad=True),))
def output_grad_fn_and_backward_outside(x):
    return (x.exp() * 2).sum()


@P(args=lambda k: (T(3, requires_grad=True), T(3)))
def mixed_requires_grad_inputs(a, b):
    return a * b, b * 2


@P(args=lambda k: (T(3, requires_grad=True),))
def inplace_on_leaf_requires_grad_raises(x):
    x.add_(1)
    return x


@P(args=lambda k: (T(3, requires_grad=True),))
def grad_attribute_read_none(x):
    return x * 2, x.grad is None, x.is_leaf


# ---------------------------------------------------------------- RNG
@P(args=lambda k: (T(3),))
def rand_inside(x):
    return x + torch.rand(3)


@P(args=lambda k: (T(3),))
def randn_like_and_dropout(x):
    return torch.randn_like(x) + F.dropout(x, 0.5, training=True)


@P(args=lambda k: (T(3),))
def manual_seed_inside(x):
    torch.manual_seed(123)
    return x + torch.rand(3)


@P(args=lambda k: (T(3),), graphs=1, breaks=None, why='torch.compile breaks on a torch.Generator argument')
def generator_object(x):
    g = torch.Generator().manual_seed(7)
    return x + torch.rand(3, generator=g), torch.randint(0, 10, (2,), generator=g)


@P(args=lambda k: (T(3),), graphs=(1, 2), breaks=None, why='torch.compile breaks on get_rng_state')
def rng_state_save_restore(x):
    st = torch.get_rng_state()
    a = torch.rand(3)
    torch.set_rng_state(st)
    b = torch.rand(3)
    return x + a - b


@P(args=lambda k: (T(8),))
def randperm_and_multinomial(x):
    p = torch.randperm(8)
    m = torch.multinomial(x.abs() + 0.1, 3)
    return x[p], m


@P(args=lambda k: (T(3),))
def bernoulli_and_normal_(x):
    y = torch.empty(3).normal_()
    return torch.bernoulli(torch.sigmoid(x)) + y


# ---------------------------------------------------------------- misc
@P(args=lambda k: (T(3),), eager_fn=lambda x: x + 1)
def is_compiling_flag(x):
    if torch.compiler.is_compiling():
        return x + 1
    return x - 1


@P(args=lambda k: (T(3),))
def is_scripting_flag(x):
    if torch.jit.is_scripting():
        return x * 0
    return x * 2


@P(args=lambda k: (T(2, 3), T(3, 4)))
def matmul_einsum_bmm(a, b):
    return a @ b, torch.einsum("ij,jk->ik", a, b), torch.bmm(a[None], b[None])[0]


@P(args=lambda k: (T(2, 3, 4, 4),))
def conv_pool_functional(x):
    w = torch.ones(2, 3, 3, 3) * 0.1
    y = F.conv2d(x, w, padding=1)
    return F.max_pool2d(y, 2), F.avg_pool2d(y, 2)


@P(args=lambda k: (T(4, 5),))
def softmax_layernorm_functional(x):
    return F.softmax(x, -1), F.log_softmax(x, 0), F.layer_norm(x, (5,)), F.gelu(x)


@P(args=lambda k: (T(4, 5), torch.randint(0, 5, (4,))))
def cross_entropy_functional(x, y):
    return F.cross_entropy(x, y), F.nll_loss(F.log_softmax(x, -1), y, reduction="none")


@P(args=lambda k: (T(3, 4),))
def where_clamp_masked_fill(x):
    return torch.where(x > 0, x, x * 0.1), x.clamp(-1, 1), x.masked_fill(x < 0, 0.5)


@P(args=lambda k: (T(3, 4),))
def cat_stack_split(x):
    return torch.cat([x, x * 2], 0), torch.stack([x, x], -1), torch.split(x, 2, dim=1)


@P(args=lambda k: (T(3, 4),))
def reductions_keepdim(x):
    return x.sum(1, keepdim=True), x.mean((0, 1)), x.amax(0), x.prod(1), x.norm(), x.logsumexp(1)


@P(args=lambda k: (T(3, 4),), graphs=0, breaks=0)
def tensor_properties(x):
    return x.shape, x.size(), x.dim(), x.ndim, x.numel(), x.dtype, x.device, x.is_contiguous(), \
        x.element_size(), x.nelement(), len(x)


@P(args=lambda k: (T(3, 4),), graphs=(1, 3), breaks=None, why='torch.compile breaks on item()/tolist()')
def item_and_tolist_results(x):
    return x.sum().item(), x[0].tolist(), int(x.argmax())


@P(args=lambda k: (T(5),))
def sort_argsort_searchsorted(x):
    s, _ = x.sort()
    return torch.searchsorted(s, torch.tensor([0.0])), x.argsort(), torch.bucketize(x, s)


@P(args=lambda k: (T(5),), graphs=(1, 3), breaks=None, why='data-dependent output shapes')
def nonzero_data_dependent_shape(x):
    return torch.nonzero(x > 0), x[x > 0].sum()


@P(args=lambda k: (T(3, 4),))
def scatter_gather_index_ops(x):
    idx = torch.tensor([[0, 1, 2, 0]])
    return x.gather(0, idx), torch.zeros(3, 4).scatter_(0, idx, 1.0), x.index_select(1, idx[0, :2])


@P(args=lambda k: (T(3, 4),))
def inplace_index_put_on_clone(x):
    y = x.clone()
    y[torch.tensor([0, 2])] += 1.0
    y.index_add_(0, torch.tensor([1]), torch.ones(1, 4))
    return y


test_program = P.tests()
