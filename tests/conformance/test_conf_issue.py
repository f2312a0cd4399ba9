"""Conformance: the exact reproducers of every numbered item of the issue
"Never wrong, never crash" (issue_NN_*), each with siblings, and the
recompile-storm and silent-fallback items (storm_*).

PYTEST_DONT_REWRITE"""
from __future__ import annotations

import collections
import contextlib
import functools
import types

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from harness import Registry, T

P = Registry("issue")
x1 = lambda k: (T(4),)  # noqa: E731


# ---------------------------------------------------------------- 1. numpy value kept without a guard
@P(args=x1, graphs=1, breaks=0)
def issue_01_numpy_copy(x):
    a = x.numpy()
    return a.copy()


@P(args=x1, graphs=1, breaks=1)
def issue_01_numpy_tolist(x):
    return x.numpy().tolist()


@P(args=x1, graphs=1, breaks=1)
def issue_01_numpy_scalar_in_python(x):
    m = float(x.numpy().max())
    return m * 2


@P(args=x1, graphs=1, breaks=0)
def issue_01_numpy_then_tensor(x):
    a = x.numpy() * 2
    return torch.as_tensor(a) + x


@P(args=x1, graphs=1, breaks=1)
def issue_01_tolist_returned(x):
    return (x * 2).tolist()


@P(args=x1, graphs=1, breaks=1)
def issue_01_item_returned(x):
    return x.sum().item()


@P(args=x1, graphs=1, breaks=0)
def issue_01_numpy_array_function(x):
    return np.cumsum(x.detach().numpy())


# ---------------------------------------------------------------- 2. dict views are snapshots
@P(args=x1)
def issue_02_keys_view_live(x):
    d = {1: x}
    keys = d.keys()
    d[4] = 1
    return 4 in keys, x + 1


@P(args=x1)
def issue_02_values_view_live(x):
    d = {"a": 1}
    vals = d.values()
    d["b"] = 2
    return x * sum(vals)


@P(args=x1)
def issue_02_items_view_len(x):
    d = {"a": x}
    it = d.items()
    d["b"] = x
    del d["a"]
    return len(it), [k for k, _ in it], x * len(it)


@P(args=x1)
def issue_02_view_of_kwargs(x):
    def g(**kw):
        ks = kw.keys()
        kw["late"] = 1
        return list(ks)
    return g(a=1), x + 1


@P(args=lambda k: (T(4), {"p": 1}))
def issue_02_view_of_argument_dict(x, d):
    v = d.values()
    d["q"] = 5
    return x * sum(v)


# ---------------------------------------------------------------- 3. in-place update and a returned view of it
@P(args=lambda k: (T(3, 4),))
def issue_03_inplace_return_view(x):
    x.add_(1)
    return x[0]


@P(args=lambda k: (T(3, 4),))
def issue_03_inplace_return_reshape(x):
    x.mul_(2)
    return x.view(4, 3)


@P(args=lambda k: (T(3, 4),))
def issue_03_inplace_return_transpose(x):
    x.sub_(1)
    return x.transpose(0, 1)


@P(args=lambda k: (T(3, 4),))
def issue_03_return_view_no_mutation(x):
    return x[1:]


@P(args=lambda k: (T(3, 4),))
def issue_03_view_then_inplace_through_view(x):
    v = x[:, 0]
    v.mul_(3)
    return v


@P(args=lambda k: (T(3, 4),))
def issue_03_return_input_and_view(x):
    x.relu_()
    return x, x[0], x.flatten()


# ---------------------------------------------------------------- 4. overlapping views passed after separate tensors
def _issue_04_args(k):
    if k == 0:
        return (torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 11.0, 21.0, 31.0]))
    base = torch.arange(1.0, 50.0)
    return (base[0:4], base[0:31:10])


@P(args=_issue_04_args)
def issue_04_overlapping_views(a, b):
    a.mul_(20)
    return b + 1


def _issue_04b_args(k):
    if k == 0:
        return (T(4), T(4))
    t = T(8)
    return (t[:4], t[2:6])


@P(args=_issue_04b_args)
def issue_04_partial_overlap_add(a, b):
    a.add_(b)
    return a * 1, b * 1


def _issue_04e_args(k):
    if k == 0:
        return (T(4), T(4), T(3))
    t = T(8)
    return (t[:4], t[2:6], T(3))


@P(args=_issue_04e_args)
def issue_04_overlap_after_other_update(a, b, c):
    # the error comes from the add's line, with ``c`` updated exactly once
    c.mul_(2)
    a.add_(b)
    return a * 1, c * 1


@P(args=_issue_04e_args)
def issue_04_overlap_through_view_of_input(a, b, c):
    # the updated tensor is a view of the input, not the input itself
    c.add_(1)
    a.view(2, 2).add_(b.view(2, 2))
    return a * 1


@P(args=lambda k: _issue_04e_args(k) + ([k],))
def issue_04_overlap_after_python_effect(a, b, c, log):
    log.append(len(log))
    c.sub_(1)
    a.mul_(b)
    return a * 1, len(log)


def _issue_04_bn_world():
    bn = nn.BatchNorm1d(4)

    def fn(x, a, b):
        # the batch statistics update the running ones in place (not an
        # in-place op by name), before the overlapping add raises
        y = bn(x)
        a.add_(b)
        return y * 1

    return types.SimpleNamespace(fn=fn, bn=bn)


def _issue_04_bn_args(k, w):
    x = T(3, 4)
    if k == 0:
        return (x, T(4), T(4))
    t = T(8)
    return (x, t[:4], t[2:6])


P(name="issue_04_overlap_after_batch_norm_update", build=_issue_04_bn_world,
  args=_issue_04_bn_args, backward=False,
  observe=lambda w: (w.bn.running_mean.tolist(), w.bn.running_var.tolist(),
                     int(w.bn.num_batches_tracked)))


def _issue_04c_args(k):
    if k != 1:
        return (T(4), T(4))
    t = T(4)
    return (t, t)


@P(args=_issue_04c_args)
def issue_04_same_tensor_second_call(a, b):
    b.zero_()
    return a.sum()


def _issue_04d_args(k):
    t = T(2, 4)
    if k == 0:
        return (t, T(4))
    return (t, t[1])


@P(args=_issue_04d_args)
def issue_04_row_view_of_other_arg(m, row):
    m.fill_(3.0)
    return row + 0


# ---------------------------------------------------------------- 5. class method replaced after compiling
class Layer:
    def act(self, x):
        return x + 1


_orig_act = Layer.act


def _issue_05_patch(k, w):
    Layer.act = _orig_act if k == 0 else (lambda self, x: x * 100)


@P(args=lambda k: (T(3), Layer()), between=_issue_05_patch)
def issue_05_method_replaced(x, layer):
    return layer.act(x)


class Layer2:
    def act(self, x):
        return x + 1

    def forward(self, x):
        return self.act(x) * 2


_orig_act2 = Layer2.act


def _issue_05b_patch(k, w):
    Layer2.act = _orig_act2 if k == 0 else staticmethod(lambda x: x - 50)


@P(args=lambda k: (T(3), Layer2()), between=_issue_05b_patch)
def issue_05_method_replaced_by_staticmethod(x, layer):
    return layer.forward(x)


class Base5:
    def f(self, x):
        return x + 1


class Sub5(Base5):
    pass


def _issue_05c_patch(k, w):
    if k == 0:
        Base5.f = lambda self, x: x + 1
    else:
        Base5.f = lambda self, x: x + 1000


@P(args=lambda k: (T(3), Sub5()), between=_issue_05c_patch)
def issue_05_base_class_method_replaced(x, obj):
    return obj.f(x)


class Glob5:
    def f(self, x):
        return x * 2


G5 = Glob5()


def _issue_05d_patch(k, w):
    Glob5.f = (lambda self, x: x * 2) if k == 0 else (lambda self, x: x * -3)


@P(args=x1, between=_issue_05d_patch)
def issue_05_method_of_global_object_replaced(x):
    return G5.f(x)


# ---------------------------------------------------------------- 6. forward hook on a submodule after the first call
class Net6(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(torch.relu(self.inner(x)))


def _net6_world():
    torch.manual_seed(0)
    m = Net6()
    return types.SimpleNamespace(fn=m, m=m)


def _issue_06_hook(k, w):
    if k == 1:
        w.m.inner.register_forward_hook(lambda mod, i, o: o * 0)


P(name="issue_06_forward_hook_added", build=_net6_world, between=_issue_06_hook,
  args=lambda k: (T(2, 4),))


def _issue_06_prehook(k, w):
    if k == 1:
        w.m.out.register_forward_pre_hook(lambda mod, i: (i[0] + 5,))


P(name="issue_06_forward_pre_hook_added", build=_net6_world, between=_issue_06_prehook,
  args=lambda k: (T(2, 4),))


def _issue_06_hook_on_compiled_forward(k, w):
    if k == 2:
        w.m.register_forward_hook(lambda mod, i, o: o.sum())


P(name="issue_06_root_hook_added_third_call", build=_net6_world,
  between=_issue_06_hook_on_compiled_forward, args=lambda k: (T(2, 4),))


def _net6_method_world():
    torch.manual_seed(0)
    m = Net6()

    def fn(x):
        return m(x) + 1
    return types.SimpleNamespace(fn=fn, m=m)


P(name="issue_06_hook_added_on_module_called_from_function", build=_net6_method_world,
  between=_issue_06_hook, args=lambda k: (T(2, 4),))


# ---------------------------------------------------------------- 7. __exit__ that returns True (crash-prone: subprocess)
class Swallow:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


@P(args=x1, subprocess=True)
def issue_07_exit_suppresses(x):
    with Swallow():
        raise ValueError("x")
    return x + 1


@P(args=x1, subprocess=True)
def issue_07_exit_suppresses_after_tensor_op(x):
    y = x * 2
    with Swallow():
        y = y + 1
        raise RuntimeError("r")
    return y


@P(args=x1, subprocess=True, graphs=0, why='the exception skips the only tensor operation: no graph (torch.compile: 0)')
def issue_07_exit_suppresses_keyerror_lookup(x):
    d = {}
    with Swallow():
        x = x + d["missing"]
    return x


class SwallowOnly:
    def __init__(self, t):
        self.t = t

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        return et is not None and issubclass(et, self.t)


@P(args=x1, subprocess=True, graphs=0, why='the exception skips the only tensor operation: no graph (torch.compile: 0)')
def issue_07_exit_selectively_suppresses(x):
    with SwallowOnly(ZeroDivisionError):
        x = x / (1 // 0)
    return x


# ---------------------------------------------------------------- 8. named-tuple returns
@P(args=lambda k: (T(3, 4),))
def issue_08_max_values(x):
    return x.max(dim=1).values


@P(args=lambda k: (T(3, 4),))
def issue_08_topk_values(x):
    return torch.topk(x, 2).values


@P(args=lambda k: (T(3, 4),))
def issue_08_sort_indices(x):
    return x.sort(dim=-1).indices


@P(args=lambda k: (T(3, 4),))
def issue_08_min_values_in_expression(x):
    return x - x.min(-1, keepdim=True).values


@P(args=lambda k: (T(3, 4),))
def issue_08_median_indices(x):
    return torch.median(x, 0).indices


@P(args=lambda k: (T(3, 4),))
def issue_08_mode_values(x):
    return x.round().mode(1).values


@P(args=lambda k: (T(3, 4),))
def issue_08_kthvalue_indices(x):
    return x.kthvalue(1, 1).indices


@P(args=lambda k: (T(3, 3),))
def issue_08_linalg_eigh_eigenvalues(x):
    s = x @ x.T
    return torch.linalg.eigh(s).eigenvalues


@P(args=lambda k: (T(3, 3),))
def issue_08_svd_fields(x):
    r = torch.linalg.svd(x)
    return r.S, r.U.shape


@P(args=lambda k: (T(3, 4),))
def issue_08_cummin_values(x):
    return x.cummin(1).values


@P(args=lambda k: (T(3, 4),))
def issue_08_unpacked_max(x):
    v, i = torch.max(x, dim=1)
    return v * 2, i


@P(args=lambda k: (T(3, 4),))
def issue_08_indexed_sort(x):
    r = torch.sort(x, descending=True)
    return r[0] - r.values, r[1]


@P(args=lambda k: (T(3, 4),))
def issue_08_topk_smallest_indices(x):
    return x.topk(2, dim=0, largest=False).indices


@P(args=lambda k: (T(4, 3),))
def issue_08_nanmedian_and_cummax(x):
    return torch.nanmedian(x, dim=0).values + x.cummax(0).values[-1]


@P(args=lambda k: (T(3, 3),))
def issue_08_linalg_ex_results(x):
    s = x @ x.T + torch.eye(3) * 3
    r = torch.linalg.cholesky_ex(s)
    inv = torch.linalg.inv_ex(s)
    return r.L, r.info, inv.inverse


@P(args=lambda k: (T(3, 4),), graphs=(1, 2), breaks=1, why="torch.compile: 1 graph")
def issue_08_result_across_break(x):
    r = x.min(dim=1)
    print("break")
    return r.values + r.indices, r


@P(args=lambda k: (T(3, 4),))
def issue_08_result_type_and_len(x):
    r = x.aminmax(dim=0)
    return isinstance(r, tuple), type(r).__name__, len(r), [t * 2 for t in r]


@P(args=lambda k: (T(3, 4),))
def issue_08_result_in_container(x):
    return {"m": x.max(0), "k": [torch.kthvalue(x, 2, 1)]}


@P(args=lambda k: (torch.max(T(3, 4), 1),))
def issue_08_result_as_argument(r):
    return r.values * 2 + r.indices


@P(args=lambda k: (T(2, 3, 3),))
def issue_08_slogdet_batched(x):
    sign, logabsdet = torch.linalg.slogdet(x)
    return sign * logabsdet, torch.linalg.slogdet(x).logabsdet


# ---------------------------------------------------------------- 9. contextlib.suppress
@P(args=x1)
def issue_09_suppress_keyerror(x):
    d = {}
    with contextlib.suppress(KeyError):
        x = x + d["nope"]
    return x * 2


@P(args=x1)
def issue_09_suppress_in_loop(x):
    d = {0: 1, 2: 3}
    for i in range(3):
        with contextlib.suppress(KeyError):
            x = x + d[i]
    return x


@P(args=x1)
def issue_09_suppress_base_class(x):
    with contextlib.suppress(LookupError):
        [][1]
    return x - 1


@P(args=x1)
def issue_09_suppress_not_matching_raises(x):
    with contextlib.suppress(KeyError):
        raise ValueError("not suppressed")
    return x


@P(args=x1, graphs=0, breaks=0)
def issue_09_suppress_attribute_error_getattr(x):
    class O:
        pass
    o = O()
    with contextlib.suppress(AttributeError):
        x = x * o.missing
    return x


# ---------------------------------------------------------------- 10. graph break inside a TorchFunctionMode
class Mode10(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@P(args=x1, graphs=2, breaks=1)
def issue_10_function_mode_break(x):
    with Mode10():
        y = x + 1
        print("break")
        return y * 2


@P(args=x1, graphs=2, breaks=1)
def issue_10_function_mode_break_in_callee(x):
    def attention(q, mask):
        if mask is not None:
            print("mask given")
            q = q + mask
        return q.softmax(-1)
    with Mode10():
        return attention(x, torch.zeros(4))


@P(args=x1, graphs=2, breaks=None, why='torch.compile: 2 graphs')
def issue_10_function_mode_enter_exit_manually(x):
    m = Mode10()
    m.__enter__()
    try:
        y = x * 3
        print("between")
        y = y + 1
    finally:
        m.__exit__(None, None, None)
    return y


@P(args=x1, graphs=2, breaks=1)
def issue_10_sdpa_like_under_mode(x):
    with Mode10():
        q = x.view(1, 1, 2, 2)
        s = (q @ q.transpose(-1, -2)) / 2
        print("mask")
        return torch.softmax(s, -1)


# ---------------------------------------------------------------- 11. recursive method over a dict's values
class Walker:
    def walk(self, node, x):
        for v in node.values():
            if isinstance(v, dict):
                x = self.walk(v, x)
            else:
                x = x + v
        return x


@P(args=lambda k: (T(3), Walker()))
def issue_11_recursive_method_over_dict_values(x, w):
    return w.walk({"a": 1, "b": {"c": 2, "d": {"e": 3}}}, x)


class Walker2:
    def collect(self, node, out):
        for v in node.values():
            if isinstance(v, dict):
                self.collect(v, out)
            else:
                out.append(v)
        return out


@P(args=lambda k: (T(3), Walker2()))
def issue_11_recursive_collect_into_list(x, w):
    vals = w.collect({"a": [1, 2], "b": {"c": [3]}}, [])
    return x * len(vals), vals


class Config11:
    def __init__(self):
        self.sub = {"enc": {"layers": [1, 2], "heads": 2}, "dec": {"layers": [3]}}

    def count(self, d=None):
        d = self.sub if d is None else d
        n = 0
        for v in d.values():
            n += self.count(v) if isinstance(v, dict) else (len(v) if isinstance(v, list) else 1)
        return n


@P(args=lambda k: (T(3), Config11()))
def issue_11_recursive_count_with_list_leaves(x, c):
    return x * c.count()


@P(args=lambda k: (T(3),), graphs=1, breaks=None, why='print before any tensor op')
def issue_11_list_constant_across_break(x):
    sizes = [1, 2, 3]
    print("break")
    return x * sum(sizes), sizes


# ---------------------------------------------------------------- 12. acc = 0; acc += t
@P(args=x1)
def issue_12_acc_from_int_zero(x):
    acc = 0
    acc += x
    return acc


@P(args=lambda k: ([T(4) for _ in range(3)],))
def issue_12_loss_accumulator(xs):
    total = 0
    for t in xs:
        total += t.sum()
    return total


@P(args=x1)
def issue_12_acc_from_float_literal(x):
    acc = 1.5
    acc *= x
    return acc


@P(args=x1)
def issue_12_acc_from_none_then_tensor(x):
    acc = None
    for i in range(2):
        acc = x if acc is None else acc + x
    return acc


@P(args=x1)
def issue_12_subtract_from_literal(x):
    r = 10
    r -= x
    r /= 2
    return r


@P(args=lambda k: (T(4, dtype=torch.int64, low=1, high=5),))
def issue_12_every_inplace_operator_on_int(x):
    a, b, c, d, e, f = 7, 7, 7, 7, 7, 7
    a -= x
    b *= x
    c //= x
    d %= x
    e **= x
    f /= x
    g, h, i, j, m = 6, 6, 6, 1, 64
    g &= x
    h |= x
    i ^= x
    j <<= x
    m >>= x
    return a, b, c, d, e, f, g, h, i, j, m


@P(args=x1)
def issue_12_inplace_on_float_bool_complex(x):
    a = 2.5
    a -= x
    b = True
    b += x
    c = 1 + 2j
    c *= x
    return a, b, c


@P(args=lambda k: (T(4), 3 + k))
def issue_12_inplace_int_argument_left(x, n):
    n += x
    n *= 2
    return n


@P(args=lambda k: (T(3, 2),))
def issue_12_inplace_size_left(x):
    n = x.shape[0]
    n *= x
    return n


@P(args=lambda k: (T(3, 2),), why="torch.compile fails on list += tensor (fake tensor error)")
def issue_12_tuple_and_list_plus_equals_tensor(x):
    t = (1,)
    t += (x,)
    lst = [0]
    lst += x
    return t, lst


@P(args=x1)
def issue_12_inplace_tensor_left_unchanged(x):
    y = x * 1
    z = y
    y += 1
    y *= x
    return y, z, y is z


@P(args=lambda k: ([T(4) for _ in range(3)],))
def issue_12_accumulate_in_comprehension_helper(xs):
    def total(ts):
        s = 0
        for t in ts:
            s += t.mean()
        return s
    return total(xs) / len(xs)


# ---------------------------------------------------------------- storms: objects made before a break
@P(args=x1, calls=6, recompiles=1, graphs=1, breaks=None, why='print before any tensor op')
def storm_partial_across_break(x):
    f = functools.partial(torch.mul, other=2.0)
    print("break")
    return f(x)


@P(args=x1, calls=6, recompiles=1, graphs=2, breaks=1)
def storm_namedtuple_class_across_break(x):
    Pt = collections.namedtuple("Pt", ["a", "b"])
    p = Pt(x, x + 1)
    print("break")
    return p.a * p.b


@P(args=x1, calls=6, recompiles=1, graphs=1, breaks=None, why='print before any tensor op')
def storm_module_built_before_break(x):
    torch.manual_seed(0)
    lin = nn.Linear(4, 4)
    print("break")
    return lin(x)


@P(args=x1, calls=6, recompiles=1, graphs=1, breaks=None, why='print before any tensor op')
def storm_closure_made_before_break(x):
    s = 3.0

    def scale(t):
        return t * s
    print("break")
    return scale(x)


@P(args=x1, calls=6, recompiles=1, graphs=2, breaks=1)
def storm_list_made_before_break(x):
    parts = [x, x * 2]
    print("break")
    return parts[0] + parts[1]


@P(args=x1, calls=6, recompiles=1, graphs=1, breaks=None, why='print before any tensor op')
def storm_dict_made_before_break(x):
    cfg = {"a": 2.0, "fn": torch.tanh}
    print("break")
    return cfg["fn"](x * cfg["a"])


class LayersNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])

    def forward(self, x, n=2):
        for layer in self.layers[:n]:
            x = layer(x)
            print("layer")
        return x


def _layers_world():
    torch.manual_seed(0)
    m = LayersNet()
    return types.SimpleNamespace(fn=m, m=m)


P(name="storm_module_list_slice_across_break", build=_layers_world, args=lambda k: (T(2, 4),),
  calls=6, recompiles=1,
  graphs=None, breaks=None, why='torch.compile skips this frame (0 graphs); janus_frame may compile it')


def _losses_world():
    losses = []

    def fn(x):
        loss = (x * 2).sum()
        losses.append(loss.item())
        if len(losses) > 3:
            return loss * 0.5
        return loss
    return types.SimpleNamespace(fn=fn, losses=losses)


P(name="storm_growing_list_len_in_if", build=_losses_world, args=x1, calls=8, recompiles=2,
  graphs=1, breaks=1)


def _losses_world2():
    history = []

    def fn(x):
        history.append(1)
        if len(history) % 100 == 0:
            print("log")
        return x * len(history)
    return types.SimpleNamespace(fn=fn, history=history)


P(name="storm_growing_list_len_used_as_value", build=_losses_world2, args=x1, calls=8,
  recompiles=2,
  graphs=1, breaks=0)


def _step_counter_world():
    class Trainer:
        def __init__(self):
            self.step = 0

        def train_step(self, x):
            self.step += 1
            return x * 2
    t = Trainer()
    return types.SimpleNamespace(fn=t.train_step, t=t)


P(name="storm_step_counter_on_self", build=_step_counter_world, args=x1, calls=8, recompiles=2)


@P(args=lambda k: (1.5,) if k == 0 else (T(4),), calls=4, min_graphs_total=1, graphs=0)
def storm_first_call_number_then_tensor(v):
    return v * 2 + 1


@P(args=lambda k: (3,) if k == 0 else (T(4),), calls=4, min_graphs_total=1, graphs=0)
def storm_first_call_int_then_tensor(v):
    return (v + 1) * v


@P(args=lambda k: (T(3), k), calls=8, recompiles=2)
def storm_int_argument_changes_every_call(x, step):
    return x * step


@P(args=lambda k: (T(3 + k),), calls=8, recompiles=2)
def storm_shape_changes_every_call(x):
    return x.sin() * 2


@P(args=lambda k: (T(3), float(k) * 0.1), calls=8, recompiles=2)
def storm_float_argument_changes_every_call(x, lr):
    return x - lr * x


test_program = P.tests()
