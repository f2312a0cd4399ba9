"""Conformance: more siblings of the never-wrong-never-crash classes --
instance dicts (``vars(obj)`` / ``obj.__dict__``) of objects made while
tracing, inputs whose layout changes after a size became dynamic, and small
programs over the language, containers, aliasing, exceptions, hooks and
numpy interop.

PYTEST_DONT_REWRITE"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import itertools
import operator

import numpy as np
import torch
from torch import nn

from harness import Registry, T

P = Registry("siblings")
x1 = lambda k: (T(4),)  # noqa: E731


# ---------------------------------------------------------------- instance dicts
class Box:
    def __init__(self, x):
        self.a = x
        self.b = 2


class Prop:
    def __init__(self, x):
        self._v = x

    @property
    def v(self):
        return self._v * 2


@P(args=x1)
def vars_of_new_object_read(x):
    o = Box(x)
    d = vars(o)
    return d["a"] * d["b"], sorted(d)


@P(args=x1)
def dict_of_new_object_store_is_an_attribute(x):
    o = Box(x)
    o.__dict__["a"] = x * 3
    o.__dict__["c"] = 1
    return o.a + o.c


@P(args=x1)
def attribute_store_seen_through_vars(x):
    o = Box(x)
    d = vars(o)
    o.z = 5
    return x + d["z"], "z" in d, list(d.keys())


@P(args=x1)
def vars_delete_pop_setdefault(x):
    o = Box(x)
    d = o.__dict__
    del d["b"]
    d.setdefault("e", 7)
    p = d.pop("a")
    return p * o.e, hasattr(o, "b"), hasattr(o, "a"), len(d)


@P(args=x1)
def vars_update_and_identity(x):
    o = Box(x)
    vars(o).update(q=3, a=x + 1)
    return o.a * o.q, vars(o) is o.__dict__


@P(args=x1)
def vars_of_new_object_escapes(x):
    o = Box(x)
    d = vars(o)
    d["k"] = x.sum()
    return o, d


@P(args=x1)
def vars_items_comprehension(x):
    o = Box(x)
    o.c = x * 2
    return {k: v for k, v in vars(o).items() if k != "b"}


@P(args=x1)
def instance_dict_under_a_property_name(x):
    o = Prop(x)
    o.__dict__["v"] = 100  # a property is a data descriptor: it still wins
    return o.v, o.__dict__["v"]


class SlotBox:
    __slots__ = ("a",)

    def __init__(self, a):
        self.a = a


@P(args=x1)
def vars_of_slotted_object_raises(x):
    s = SlotBox(x)
    try:
        vars(s)
    except TypeError as e:
        return x + 1, str(e)
    return x


# instance dicts of objects read from the frame: the object's attributes and
# its __dict__ are one storage (a change through one is seen through the other)
@P(args=lambda k: (T(4), Box(T(4))))
def argument_dict_store_then_attribute_read(x, o):
    d = o.__dict__
    d["a"] = x * 3
    return o.a + 1


@P(args=lambda k: (T(4), Box(T(4))))
def argument_attribute_store_then_dict_read(x, o):
    o.a = x * 5
    return o.__dict__["a"] + 1


@P(args=lambda k: (T(4), Box(T(4))))
def vars_of_argument_store_then_attribute_read(x, o):
    d = vars(o)
    d["a"] = x * 3
    return o.a + 1


def _obj_and_dict(k):
    o = Box(T(4))
    return (T(4), o, o.__dict__ if k % 2 else {"a": T(4)})


@P(args=_obj_and_dict, calls=4)
def object_and_its_dict_as_two_arguments(x, o, d):
    d["a"] = x * 7
    return o.a + 1


def _obj_and_dict_first_aliased(k):
    o = Box(T(4))
    return (T(4), o, {"a": T(4)} if k % 2 else o.__dict__)


@P(args=_obj_and_dict_first_aliased, calls=4)
def object_and_its_dict_attribute_store_then_dict_read(x, o, d):
    o.a = x * 7
    return d["a"] + 1


# ---------------------------------------------------------------- layouts after a dynamic size
def _layouts(k):
    n = 3 + k
    if k < 2:
        return (T(n, 5), T(n, 5))
    if k == 2:
        return (T(5, n).t(), T(n, 5))  # transposed
    if k == 3:
        return (T(2 * n, 5)[::2], T(n, 5))  # a row step
    if k == 4:
        return (T(1, 5).expand(n, 5), T(n, 5))  # expanded
    return (T(n * 5 + 3)[3:].view(n, 5), T(5, n).t())  # a storage offset; a transposed other


@P(args=_layouts, calls=6, recompiles=6)
def dynamic_rows_then_other_layouts(x, y):
    return (x * 2 + y).sin() + x.sum(1, keepdim=True)


@P(args=_layouts, calls=6, recompiles=6)
def dynamic_rows_then_other_layouts_reduction(x, y):
    return x.cumsum(0) * 3 + y.amax(0)


@P(args=lambda k: (T(4 + k, 3, requires_grad=True) if k < 2 else
                   T(3, 4 + k).t().detach().requires_grad_(True),), calls=4, recompiles=4)
def dynamic_rows_then_transposed_training(x):
    return (x.tanh() * x).sum(1)


# ---------------------------------------------------------------- language
@P(args=x1)
def walrus_in_comprehension_filter(x):
    vals = [y for i in range(4) if (y := x * i).sum() is not None]
    return sum(vals[1:], vals[0])


@P(args=x1)
def chained_comparisons_on_ints(x):
    n = x.shape[0]
    return x * (1 if 0 < n <= 4 < n + 1 else 2)


@P(args=x1)
def star_unpacking_in_assignment(x):
    first, *mid, last = [x, x + 1, x + 2, x + 3]
    return first + last + len(mid)


@P(args=x1)
def nested_closure_nonlocal_counter(x):
    count = 0

    def bump(t):
        nonlocal count
        count += 1
        return t + count
    y = bump(bump(x))
    return y, count


@P(args=x1)
def augmented_assign_on_subscript_and_attr(x):
    d = {"a": x}
    d["a"] += 1
    o = Box(x)
    o.a *= 2
    return d["a"], o.a


# ---------------------------------------------------------------- containers
@P(args=x1, graphs=None, breaks=None,
   why="torch.compile runs the whole frame natively (collections.Counter)")
def counter_most_common(x):
    c = collections.Counter("abracadabra")
    (k, n), = c.most_common(1)
    return x * n, k


@P(args=x1)
def dict_keys_set_operations(x):
    a = {"p": 1, "q": 2}
    b = {"q": 3, "r": 4}
    common = a.keys() & b.keys()
    return x * len(common), sorted(a.keys() | b.keys())


@P(args=x1)
def list_sort_with_key_and_reverse(x):
    parts = [x * 3, x, x * 2]
    parts.sort(key=lambda t: float(t.abs().sum()) if False else 0, reverse=True)
    return parts


@P(args=lambda k: ([T(3), T(3), T(3)],))
def list_argument_slice_assignment(xs):
    xs[1:2] = [xs[0] * 5, xs[2]]
    return len(xs), xs[1] + xs[-1]


@P(args=x1)
def zip_longest_and_accumulate(x):
    acc = list(itertools.accumulate([1, 2, 3]))
    pairs = list(itertools.zip_longest([x, x + 1], [1], fillvalue=0))
    return pairs[0][0] * acc[-1] + pairs[1][1]


# ---------------------------------------------------------------- aliasing
@P(args=lambda k: (T(6),))
def view_of_input_mutated_then_returned(x):
    v = x[2:5]
    v.mul_(2)
    return v, x


@P(args=lambda k: (T(4, 4),))
def transpose_view_mutated_in_place(x):
    t = x.t()
    t[0].add_(10)
    return x.sum(), t


@P(args=lambda k: (T(8),) if k == 0 else (T(8),))
def same_tensor_passed_twice_mutated(x):
    return _twice(x, x)


def _twice(a, b):
    a.add_(1)
    return b * 2


# ---------------------------------------------------------------- exceptions
@P(args=x1)
def exception_chaining_raise_from(x):
    try:
        try:
            {}["k"]
        except KeyError as e:
            raise ValueError("bad") from e
    except ValueError as e:
        return x + 1, type(e.__cause__).__name__
    return x


@P(args=x1)
def finally_runs_on_return(x):
    log = []
    def g(t):
        try:
            return t + 1
        finally:
            log.append("fin")
    return g(x), log


@P(args=x1)
def exception_group_like_nested_suppress(x):
    with contextlib.suppress(ZeroDivisionError):
        with contextlib.suppress(KeyError):
            1 / 0
    return x * 2


# ---------------------------------------------------------------- hooks
def _hook_world():
    class W:
        pass
    torch.manual_seed(0)
    w = W()
    w.m = nn.Linear(3, 3)
    w.fn = lambda x: w.m(x).sum()
    return w


def _add_hook(k, w):
    if k == 1:
        w.m.register_forward_pre_hook(lambda m, a: (a[0] * 0,))


P(name="forward_pre_hook_added_after_compiling", build=_hook_world,
  args=lambda k: (T(2, 3),), between=_add_hook)


# ---------------------------------------------------------------- numpy interop
@P(args=x1, graphs=2, breaks=1, why="float() of the input's data")
def numpy_of_input_sum_is_a_value(x):
    return x + float(x.numpy().sum())


@P(args=x1)
def numpy_array_from_list_of_floats(x):
    a = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)
    return x * torch.from_numpy(a)



# ---------------------------------------------------------------- a second batch
@P(args=x1)
def new_object_dict_setdefault_list_append(x):
    o = Box(x)
    o.__dict__.setdefault("log", []).append(1)
    o.log.append(2)
    return x * len(o.log), o.log


@P(args=x1)
def namespace_vars_roundtrip(x):
    import types as _t
    ns = _t.SimpleNamespace(a=x, b=3)
    d = vars(ns)
    d["c"] = x + 1
    return ns.c * ns.b, sorted(d)


@P(args=lambda k: (T(4), Box(T(4))))
def argument_attribute_read_only_and_dict_read(x, o):
    return o.a + o.__dict__["b"] + x


@P(args=x1)
def exception_in_inlined_call_caught_outside(x):
    def inner(t):
        if t.dim() == 1:
            raise KeyError("dim")
        return t
    try:
        return inner(x)
    except KeyError as e:
        return x + 1, e.args


@P(args=x1)
def try_else_branch_runs(x):
    try:
        y = x + 1
    except ValueError:
        y = x - 1
    else:
        y = y * 2
    finally:
        y = y + 0.5
    return y


@P(args=x1)
def raise_in_finally_replaces(x):
    try:
        try:
            raise KeyError("a")
        finally:
            raise ValueError("b")
    except ValueError as e:
        return x * 2, str(e), type(e.__context__).__name__


@P(args=lambda k: (T(3, 4),))
def named_tuple_min_indices_and_values(x):
    r = x.min(dim=0)
    v, i = r
    return r.values + v, i, r.indices


@P(args=lambda k: (T(6),))
def input_view_returned_after_in_place(x):
    x.add_(1)
    return x[1:4], x.view(2, 3)


@P(args=lambda k: (T(2, 3), T(2, 3)))
def out_argument_writes_into_input(x, y):
    torch.add(x, 1, out=y)
    return y * 2


@P(args=x1, graphs=(1, 2), breaks=1, why="ndarray.item() needs the array's data")
def numpy_array_of_constants_times_tensor(x):
    a = np.arange(4, dtype=np.float32) * 2
    return x * torch.as_tensor(a), a.sum().item()


@P(args=x1)
def dict_views_live_after_mutation(x):
    d = {"a": 1}
    items = d.items()
    vals = d.values()
    d["b"] = 2
    return x * len(items), sorted(vals), ("b", 2) in items


def _module_world():
    torch.manual_seed(0)

    class W:
        pass
    w = W()
    w.m = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    w.seen = []
    w.m[0].register_forward_hook(lambda mod, a, out: w.seen.append(tuple(out.shape)))
    w.fn = lambda x: w.m(x).sum()
    return w


P(name="forward_hook_appends_to_a_list", build=_module_world, args=lambda k: (T(2 + k, 3),))



@P(args=lambda k: (T(3),))
def unsqueeze_in_place_on_input(x):
    x.unsqueeze_(0)
    return x.shape, x * 2


@P(args=lambda k: (T(2, 3),))
def unsqueezed_views_returned(x):
    return x.unsqueeze(0), x.unsqueeze(-1), x[:, None, :], x.t().unsqueeze(1)


test_program = P.tests()
