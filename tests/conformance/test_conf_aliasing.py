"""Conformance: aliasing and mutation -- views of inputs returned and written
through, in-place updates of inputs and of views of inputs, arguments that
share storage (same tensor twice, overlapping slices, a view and its base),
outputs that share storage with each other, mutation through containers.

PYTEST_DONT_REWRITE"""
from __future__ import annotations

import torch

from harness import Registry, T

P = Registry("aliasing")
m = lambda k: (T(4, 4),)  # noqa: E731


@P(args=m)
def return_row_view(x):
    return x[1]


@P(args=m)
def return_column_view_after_inplace(x):
    x.mul_(3)
    return x[:, 2]


@P(args=m)
def return_unsqueezed_view(x):
    x.add_(1)
    return x.unsqueeze(0)


@P(args=m)
def return_diagonal_view(x):
    x.fill_(2.0)
    return x.diagonal()


@P(args=m)
def return_view_and_computed(x):
    return x[0], x[0] * 2


@P(args=m)
def return_base_and_view(x):
    y = x * 2
    return y, y[1:]


@P(args=m)
def two_views_of_one_intermediate(x):
    y = x + 1
    return y[:2], y[2:]


@P(args=m)
def view_of_intermediate_then_inplace(x):
    y = x * 2
    v = y[0]
    v.zero_()
    return y


@P(args=m)
def inplace_through_view_changes_base(x):
    x[1:3, 1:3].mul_(0)
    return x.sum()


@P(args=m)
def setitem_slice_of_input(x):
    x[::2] = x[1::2]
    return x


@P(args=m)
def index_put_on_input(x):
    x[torch.tensor([0, 3])] = 1.0
    return x.clone()


@P(args=lambda k: (T(4, 4), T(4)))
def copy_row_into_input(x, r):
    x[0].copy_(r)
    return x


@P(args=lambda k: (T(8),))
def base_and_view_passed_together(x):
    def f(base, view):
        view.mul_(10)
        return base.sum()
    return f(x, x[2:5])


def _view_and_base(k):
    t = T(8)
    return (t, t[2:5]) if k != 1 else (T(8), T(3))


@P(args=_view_and_base)
def view_and_base_as_arguments(base, view):
    view.add_(100)
    return base * 1


def _twice_or_not(k):
    t = T(4)
    return (t, t) if k % 2 == 0 else (t, T(4))


@P(args=_twice_or_not)
def same_tensor_twice_then_distinct(a, b):
    a.mul_(2)
    return a + b


def _disjoint_or_overlapping(k):
    t = T(10)
    return (t[:5], t[5:]) if k == 0 else (t[:5], t[3:8])


@P(args=_disjoint_or_overlapping)
def slices_disjoint_then_overlapping(a, b):
    b.add_(1)
    return a * 2


@P(args=lambda k: (T(4), [T(4)]))
def tensor_and_list_holding_it(x, lst):
    lst.append(x)
    x.add_(1)
    return lst[-1] * 1


@P(args=lambda k: (T(4),))
def list_holds_same_tensor_twice(x):
    lst = [x, x]
    lst[0].mul_(3)
    return lst[1] + 0


@P(args=lambda k: ({"a": T(4)},))
def dict_value_updated_inplace(d):
    d["a"].sub_(1)
    d["b"] = d["a"]
    return d


@P(args=m)
def detach_shares_storage(x):
    y = x.detach()
    y.add_(1)
    return x


@P(args=m)
def reshape_of_contiguous_is_view(x):
    y = x.reshape(16)
    y[0] = -1.0
    return x


@P(args=lambda k: (T(4, 4).t(),))
def reshape_of_noncontiguous_copies(x):
    y = x.reshape(16)
    y[0] = -1.0
    return x, y


@P(args=m, graphs=1, breaks=None, why='data_ptr() comparison: torch.compile breaks')
def flatten_view_identity(x):
    f = x.flatten()
    return f, f.data_ptr() == x.data_ptr()


@P(args=m)
def split_views_mutated(x):
    a, b = x.split(2)
    a.add_(1)
    b.sub_(1)
    return x


@P(args=m)
def expand_view_output(x):
    return x[:1].expand(3, 4)


@P(args=m)
def inplace_returns_self_identity(x):
    y = x.add_(1)
    return y is x, y


@P(args=lambda k: (T(4, 4), T(4, 4)))
def output_is_second_input(a, b):
    a.add_(1)
    return b


@P(args=m)
def as_strided_output(x):
    return x.as_strided((2, 2), (4, 1), 5)


@P(args=lambda k: (T(2, 3),))
def swapdims_and_movedim_views(x):
    return x.swapdims(0, 1), x.movedim(0, 1), x.mT


@P(args=lambda k: (T(4, 4, requires_grad=True),))
def view_of_leaf_requiring_grad(x):
    return x[0], x.view(16)


@P(args=lambda k: (T(4, 4),), graphs=1, breaks=None, why='storage_offset(): torch.compile breaks')
def storage_offset_of_outputs(x):
    v = x[2:, 1:]
    return v, v.storage_offset(), v.stride()


def _same_overlapping_distinct(k):
    t = T(8)
    return [(t[:4], t[:4]), (t, t), (t[1:5], t[3:7]), (T(4), T(4))][k % 4]


@P(args=_same_overlapping_distinct)
def aliasing_pattern_changes_each_call(a, b):
    b.sub_(a * 0.5)
    return a * b


@P(args=m)
def chunks_of_intermediate_returned(x):
    y = x.exp()
    return y.chunk(2), y.t()[0]


test_program = P.tests()
