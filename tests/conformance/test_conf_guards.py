"""Conformance: guard soundness along other lookup paths -- globals read in
inlined callees, builtins shadowed later, class attributes inherited and
changed on the base, instance __dict__ writes, mutable default arguments,
partial keywords, os.environ, patched library functions, enum and
dataclass values, module hook dictionaries edited directly. Each program
changes the thing between calls; the next call must see the change.

PYTEST_DONT_REWRITE"""
from __future__ import annotations

import builtins
import dataclasses
import functools
import os
import types

import torch
import torch.nn.functional as F
from torch import nn

from harness import Registry, T

P = Registry("guards")
x1 = lambda k: (T(4),)  # noqa: E731

FACTOR = 1.0
OPTIONS = {"act": "relu"}
STEPS = [1]


def _helper_reads_global(t):
    return t * FACTOR


def _set_factor(k, w):
    global FACTOR
    FACTOR = [1.0, -2.0, -2.0][k]


@P(args=x1, between=_set_factor)
def global_read_in_inlined_callee(x):
    return _helper_reads_global(x) + 1


def _helper_dispatch(t):
    if OPTIONS["act"] == "relu":
        return torch.relu(t)
    return torch.tanh(t)


def _set_act(k, w):
    OPTIONS["act"] = "relu" if k != 1 else "tanh"


@P(args=x1, between=_set_act)
def global_dict_read_in_callee(x):
    return _helper_dispatch(x)


def _set_steps(k, w):
    STEPS[:] = [1] * (k + 1)


@P(args=x1, between=_set_steps)
def global_list_length_loop_in_callee(x):
    def run(t):
        for s in STEPS:
            t = t * 2 + s
        return t
    return run(x)


def _shadow_len(k, w):
    g = globals()
    if k == 1:
        g["len"] = lambda obj: 100
    else:
        g.pop("len", None)


@P(args=x1, between=_shadow_len)
def builtin_shadowed_by_global(x):
    return x * len([1, 2])


class Base:
    scale = 1.0

    def apply(self, t):
        return t * self.scale


class Derived(Base):
    pass


def _set_base_scale(k, w):
    Base.scale = [1.0, 5.0, 5.0][k]


@P(args=lambda k: (T(4), Derived()), between=_set_base_scale)
def inherited_class_attribute_changed_on_base(x, obj):
    return obj.apply(x)


def _shadow_on_derived(k, w):
    if k == 1:
        Derived.scale = -1.0
    elif "scale" in Derived.__dict__:
        del Derived.scale


@P(args=lambda k: (T(4), Derived()), between=_shadow_on_derived)
def class_attribute_added_then_removed_on_subclass(x, obj):
    return obj.apply(x)


def _instance_dict_world():
    class Holder:
        def __init__(self):
            self.w = 1.0
    h = Holder()

    def fn(x):
        return x * h.w
    return types.SimpleNamespace(fn=fn, h=h)


def _write_instance_dict(k, w):
    w.h.__dict__["w"] = 1.0 + k


P(name="instance_dict_written_directly", build=_instance_dict_world,
  between=_write_instance_dict, args=x1)


def _mutable_default_world():
    def fn(x, acc=[]):  # noqa: B006 - the point of the program
        acc.append(1)
        return x * len(acc)
    return types.SimpleNamespace(fn=fn)


P(name="mutable_default_argument_grows", build=_mutable_default_world, args=x1,
  observe=lambda w: list(w.fn.__defaults__[0]))


def _partial_world():
    p = functools.partial(torch.clamp, min=-1.0)

    def fn(x):
        return p(x)
    return types.SimpleNamespace(fn=fn, p=p)


def _mutate_partial_keywords(k, w):
    if k == 1:
        w.p.keywords["min"] = 0.5


P(name="partial_keywords_mutated", build=_partial_world, between=_mutate_partial_keywords,
  args=x1)


def _set_env(k, w):
    if k == 1:
        os.environ["CONFORMANCE_MODE"] = "double"
    else:
        os.environ.pop("CONFORMANCE_MODE", None)


@P(args=x1, between=_set_env, graphs=0, min_graphs_total=1,
   why="the first call only returns its argument (no graph, as torch.compile); the "
       "second sees the variable set and compiles x * 2")
def environment_variable_read(x):
    if os.environ.get("CONFORMANCE_MODE") == "double":
        return x * 2
    return x


def _set_env_scale(k, w):
    # unset, set, changed: each call sees another environment
    if k == 0:
        os.environ.pop("CONFORMANCE_SCALE", None)
    else:
        os.environ["CONFORMANCE_SCALE"] = str(k + 1)


@P(args=x1, between=_set_env_scale, calls=4)
def environment_getenv_default(x):
    return x * float(os.getenv("CONFORMANCE_SCALE", "0.5"))


@P(args=x1, between=_set_env_scale, calls=4)
def environment_get_keyword_default(x):
    return x * len(os.environ.get("CONFORMANCE_SCALE", default="abcd"))


@P(args=x1, between=_set_env_scale, calls=4)
def environment_membership(x):
    if "CONFORMANCE_SCALE" in os.environ:
        return x - 1
    return x + 1


@P(args=x1, between=_set_env_scale, calls=4)
def environment_subscript_caught(x):
    try:
        s = os.environ["CONFORMANCE_SCALE"]
    except KeyError:
        s = "7"
    return x * int(s)


@P(args=x1, between=_set_env_scale, calls=4)
def environment_subscript_unset_raises(x):
    y = x + 1
    return y * int(os.environ["CONFORMANCE_SCALE"])


_ORIG_GELU = F.gelu


def _patch_library(k, w):
    F.gelu = _ORIG_GELU if k != 1 else (lambda t, approximate="none": t * 0 + 7)


@P(args=x1, between=_patch_library)
def library_function_monkeypatched(x):
    return F.gelu(x)


@dataclasses.dataclass
class Settings:
    depth: int = 1
    bias: float = 0.0


SETTINGS = Settings()


def _change_settings(k, w):
    SETTINGS.depth = 1 + k
    SETTINGS.bias = float(k)


@P(args=x1, between=_change_settings)
def dataclass_global_fields_changed(x):
    for _ in range(SETTINGS.depth):
        x = x * 2
    return x + SETTINGS.bias


def _hooks_dict_world():
    torch.manual_seed(0)
    m = nn.Linear(4, 4)

    def fn(x):
        return m(x)
    return types.SimpleNamespace(fn=fn, m=m)


def _edit_hooks_dict(k, w):
    if k == 1:
        w.m._forward_hooks[12345] = lambda mod, i, o: o * 0
    if k == 2:
        w.m._forward_hooks.clear()


P(name="module_forward_hooks_dict_edited_directly", build=_hooks_dict_world,
  between=_edit_hooks_dict, args=x1)


def _full_backward_hook_world():
    torch.manual_seed(0)
    m = nn.Linear(4, 2)
    grads = []

    def fn(x):
        out = m(x).sum()
        return out
    return types.SimpleNamespace(fn=fn, m=m, grads=grads)


def _add_backward_hook(k, w):
    if k == 1:
        w.m.register_full_backward_hook(lambda mod, gi, go: w.grads.append(1))


P(name="full_backward_hook_added_after_first_call", build=_full_backward_hook_world,
  between=_add_backward_hook, args=lambda k: (T(3, 4, requires_grad=True),))


def _state_world():
    torch.manual_seed(0)
    m = nn.Linear(4, 4)

    def fn(x):
        return m(x) * 2
    return types.SimpleNamespace(fn=fn, m=m)


def _load_state(k, w):
    if k == 1:
        w.m.load_state_dict({"weight": torch.eye(4), "bias": torch.zeros(4)})


P(name="load_state_dict_between_calls", build=_state_world, between=_load_state, args=x1)


def _delete_forward_world():
    torch.manual_seed(0)

    class M(nn.Module):
        def forward(self, x):
            return x + 1
    m = M()
    return types.SimpleNamespace(fn=lambda x: m(x) * 2, m=m, cls=M)


def _instance_forward(k, w):
    if k == 1:
        w.m.forward = lambda x: x - 100


P(name="module_forward_replaced_on_instance", build=_delete_forward_world,
  between=_instance_forward, args=x1)


def _closure_of_callee_world():
    cfg = [1.0]

    def scale(t):
        return t * cfg[0]

    def fn(x):
        return scale(x) + scale(x)
    return types.SimpleNamespace(fn=fn, cfg=cfg)


def _set_cfg(k, w):
    w.cfg[0] = 1.0 + 3 * k


P(name="closure_list_of_inlined_callee_mutated", build=_closure_of_callee_world,
  between=_set_cfg, args=x1)


def _callee_rebound_world():
    ns = types.SimpleNamespace(op=torch.sin)

    def fn(x):
        return ns.op(x)
    return types.SimpleNamespace(fn=fn, ns=ns)


def _rebind_op(k, w):
    w.ns.op = [torch.sin, torch.cos, torch.exp][k]


P(name="namespace_attribute_function_rebound", build=_callee_rebound_world,
  between=_rebind_op, args=x1)


def _tensor_global_world():
    state = {"w": torch.ones(4)}

    def fn(x):
        return x * state["w"]
    return types.SimpleNamespace(fn=fn, state=state)


def _swap_tensor_shape(k, w):
    if k == 1:
        w.state["w"] = torch.full((4,), 3.0)
    if k == 2:
        w.state["w"] = torch.ones(1)


P(name="tensor_in_closure_dict_replaced_other_shape", build=_tensor_global_world,
  between=_swap_tensor_shape, args=x1)


def _dtype_global_world():
    cfg = {"dtype": torch.float32}

    def fn(x):
        return x.to(cfg["dtype"]) * 2
    return types.SimpleNamespace(fn=fn, cfg=cfg)


def _set_dtype(k, w):
    w.cfg["dtype"] = [torch.float32, torch.float64, torch.float16][k]


P(name="dtype_in_closure_dict_changed", build=_dtype_global_world, between=_set_dtype,
  args=x1)


def _grad_mode_between(k, w):
    torch.set_grad_enabled(k != 1)


@P(args=lambda k: (T(4, requires_grad=True),), between=_grad_mode_between)
def grad_mode_changed_between_calls(x):
    return x * 2


def _default_dtype_between(k, w):
    torch.set_default_dtype(torch.float64 if k == 1 else torch.float32)


@P(args=x1, between=_default_dtype_between)
def default_dtype_changed_between_calls(x):
    return x + torch.ones(4)


def _builtins_module_world():
    def fn(x):
        return x * builtins.abs(-3)
    return types.SimpleNamespace(fn=fn)


P(name="builtins_module_attribute", build=_builtins_module_world, args=x1)


test_program = P.tests()
