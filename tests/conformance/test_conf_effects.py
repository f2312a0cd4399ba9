"""Conformance: Python-level side effects (print, logging, global lists,
counters on objects, closure cells, id(), hash(), callback order) and guard
soundness: values the trace read change between calls (globals, closure
cells, list/dict contents, default arguments, functions, classes) and the
next call must see the change.

PYTEST_DONT_REWRITE"""
from __future__ import annotations

import io
import logging
import types
import warnings

import torch

from harness import Registry, T

P = Registry("effects")
x1 = lambda k: (T(3),)  # noqa: E731

LOG_LIST: list = []
COUNTS = {"calls": 0}
SCALE = 1.0
FLAGS = {"double": False}
LAYERS = [1, 2]
ACT = torch.relu
CALLBACKS: list = []


# ---------------------------------------------------------------- printing and logging
@P(args=x1, graphs=2, breaks=1, why="print is a graph break in torch.compile")
def print_between_ops(x):
    y = x + 1
    print("y computed", y.shape)
    return y * 2


@P(args=x1, graphs=1, breaks=1, why="print is a graph break")
def print_tensor_value(x):
    y = x * 2
    print(y)
    return y


@P(args=x1, graphs=1, breaks=None, why='print before any tensor op: torch.compile records no break')
def print_kwargs_sep_end(x):
    print("a", 1, 2.5, sep="|", end="!\n")
    return x + 1


_LOGGERS = iter(range(10 ** 9))


def _logger_world():
    logger = logging.getLogger(f"conformance.effects.{next(_LOGGERS)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    stream = io.StringIO()
    logger.addHandler(logging.StreamHandler(stream))

    def fn(x):
        logger.info("step %d", x.shape[0])
        y = x * 3
        logger.debug("not shown")
        return y
    return types.SimpleNamespace(fn=fn, stream=stream)


P(name="logging_info_call", build=_logger_world, args=x1, observe=lambda w: w.stream.getvalue(),
  graphs=1, breaks=1)


@P(args=x1, graphs=1, breaks=0)
def warnings_warn_inside(x):
    warnings.warn("careful", UserWarning)
    return x + 1


# ---------------------------------------------------------------- globals, cells, objects
@P(args=x1, globals=("LOG_LIST",))
def append_to_global_list(x):
    LOG_LIST.append(x.shape[0])
    return x * len(LOG_LIST)


@P(args=x1, globals=("COUNTS",))
def global_dict_counter(x):
    COUNTS["calls"] += 1
    return x + COUNTS["calls"]


@P(args=x1, globals=("LOG_LIST",), graphs=0, breaks=0)
def global_list_grows_len_in_if(x):
    LOG_LIST.append(1)
    if len(LOG_LIST) % 2 == 0:
        return x * 2
    return x


def _cell_world():
    state = {"n": 0}
    hits = 0

    def fn(x):
        nonlocal hits
        hits += 1
        state["n"] += 2
        return x * hits + state["n"]
    return types.SimpleNamespace(fn=fn, state=state, read=lambda: hits)


P(name="closure_cell_written", build=_cell_world, args=x1, observe=lambda w: w.read())


def _obj_counter_world():
    class Model:
        def __init__(self):
            self.steps = 0
            self.history = []

        def __call__(self, x):
            self.steps += 1
            self.history.append(self.steps)
            return x * self.steps
    m = Model()
    return types.SimpleNamespace(fn=m.__call__, m=m)


P(name="counter_and_history_on_self", build=_obj_counter_world, args=x1, recompiles=1)


@P(args=x1)
def callback_call_order(x):
    order = []
    cbs = [lambda t: order.append("a") or t + 1, lambda t: order.append("b") or t * 2]
    for cb in cbs:
        x = cb(x)
    return x, order


@P(args=x1)
def id_and_hash_of_objects(x):
    a = [1]
    d = {id(a): "a"}
    return x + len(d), d[id(a)], hash("abc") == hash("ab" + "c"), hash(3) == 3


@P(args=x1)
def hash_of_tensor_is_identity(x):
    s = {x}
    return x in s, len({x, x.clone()})


@P(args=lambda k: (T(3), []))
def append_tensor_to_arg_list_then_compute(x, out):
    out.append(x * 2)
    out.append(out[0] + 1)
    return out[-1].sum()


@P(args=lambda k: (T(3), {}))
def cache_dict_argument(x, cache):
    if "w" not in cache:
        cache["w"] = x * 2
    return cache["w"] + x


# ---------------------------------------------------------------- guards: values changed between calls
def _set_scale(k, w):
    global SCALE
    SCALE = [1.0, 4.0, 4.0][k]


@P(args=x1, between=_set_scale)
def global_float_changed(x):
    return x * SCALE


def _set_flag(k, w):
    FLAGS["double"] = k == 1


@P(args=x1, between=_set_flag, graphs=0, breaks=0)
def global_dict_value_changed(x):
    if FLAGS["double"]:
        return x * 2
    return x


def _grow_layers(k, w):
    LAYERS[:] = [1, 2] + [3] * k


@P(args=x1, between=_grow_layers)
def global_list_contents_changed(x):
    for s in LAYERS:
        x = x * s
    return x


def _mutate_layer_value(k, w):
    LAYERS[:] = [1, 2 + k]


@P(args=x1, between=_mutate_layer_value)
def global_list_item_changed(x):
    return x * LAYERS[1]


def _set_act(k, w):
    global ACT
    ACT = [torch.relu, torch.tanh, torch.sigmoid][k]


@P(args=x1, between=_set_act)
def global_function_rebound(x):
    return ACT(x)


def _closure_world():
    cfg = {"scale": 1.0}
    s = [2.0]

    def fn(x):
        return x * cfg["scale"] * s[0]
    return types.SimpleNamespace(fn=fn, cfg=cfg, s=s)


def _mutate_closure(k, w):
    w.cfg["scale"] = 1.0 + k
    w.s[0] = 2.0 * (k + 1)


P(name="closure_dict_and_list_mutated", build=_closure_world, between=_mutate_closure, args=x1)


def _cell_rebound_world():
    factor = 1.0

    def fn(x):
        return x * factor

    def set_factor(v):
        nonlocal factor
        factor = v
    return types.SimpleNamespace(fn=fn, set_factor=set_factor)


def _rebind_cell(k, w):
    w.set_factor(1.0 + 10 * k)


P(name="closure_cell_rebound", build=_cell_rebound_world, between=_rebind_cell, args=x1)


def _defaults_world():
    def fn(x, scale=2.0):
        return x * scale
    return types.SimpleNamespace(fn=fn)


def _change_defaults(k, w):
    if k == 1:
        w.fn.__defaults__ = (5.0,)


P(name="function_defaults_changed", build=_defaults_world, between=_change_defaults, args=x1)


def _kwdefaults_world():
    def fn(x, *, shift=1.0):
        return x + shift
    return types.SimpleNamespace(fn=fn)


def _change_kwdefaults(k, w):
    if k == 1:
        w.fn.__kwdefaults__ = {"shift": -7.0}


P(name="function_kwdefaults_changed", build=_kwdefaults_world, between=_change_kwdefaults,
  args=x1)


def _code_world():
    def helper(t):
        return t + 1

    def other(t):
        return t * 100

    def fn(x):
        return helper(x)
    return types.SimpleNamespace(fn=fn, helper=helper, other=other)


def _swap_code(k, w):
    if k == 1:
        w.helper.__code__ = w.other.__code__


P(name="callee_code_replaced", build=_code_world, between=_swap_code, args=x1)


def _obj_attr_world():
    class Cfg:
        pass
    c = Cfg()
    c.depth = 1

    def fn(x):
        for _ in range(c.depth):
            x = x * 2
        return x
    return types.SimpleNamespace(fn=fn, c=c)


def _deepen(k, w):
    w.c.depth = 1 + k


P(name="object_attribute_changed", build=_obj_attr_world, between=_deepen, args=x1)


def _attr_deleted_world():
    class Opt:
        pass
    o = Opt()
    o.bias = 3.0

    def fn(x):
        if hasattr(o, "bias"):
            return x + o.bias
        return x
    return types.SimpleNamespace(fn=fn, o=o)


def _del_attr(k, w):
    if k == 1:
        del w.o.bias


P(name="object_attribute_deleted", build=_attr_deleted_world, between=_del_attr, args=x1)


def _dict_key_added_world():
    opts = {"a": 1}

    def fn(x):
        if "b" in opts:
            return x * opts["b"]
        return x + opts["a"]
    return types.SimpleNamespace(fn=fn, opts=opts)


def _add_key(k, w):
    if k == 1:
        w.opts["b"] = 9


P(name="dict_key_added_between_calls", build=_dict_key_added_world, between=_add_key, args=x1)


def _dict_order_world():
    d = {"a": 1.0, "b": 2.0}

    def fn(x):
        out = []
        for key in d:
            out.append(x * d[key])
        return out
    return types.SimpleNamespace(fn=fn, d=d)


def _reorder(k, w):
    if k == 1:
        a = w.d.pop("a")
        w.d["a"] = a


P(name="dict_order_changed_between_calls", build=_dict_order_world, between=_reorder, args=x1)


def _tensor_attr_world():
    class Holder:
        pass
    h = Holder()
    h.w = torch.ones(3)

    def fn(x):
        return x * h.w
    return types.SimpleNamespace(fn=fn, h=h)


def _replace_tensor_attr(k, w):
    if k == 1:
        w.h.w = torch.full((3,), 5.0)
    if k == 2:
        w.h.w.fill_(-1.0)


P(name="tensor_attribute_replaced_and_mutated", build=_tensor_attr_world,
  between=_replace_tensor_attr, args=x1)


def _global_tensor_mutated(k, w):
    GLOBAL_T.fill_(float(k + 1))


GLOBAL_T = torch.ones(3)


@P(args=x1, between=_global_tensor_mutated)
def global_tensor_mutated_in_place(x):
    return x + GLOBAL_T


@P(args=lambda k: (T(3), [1, 2, 3][: k + 1]))
def list_arg_length_changes(x, lst):
    for v in lst:
        x = x + v
    return x


@P(args=lambda k: (T(3), {"a": 1, "b": 2} if k != 1 else {"b": 2, "a": 1}))
def dict_arg_key_order_changes(x, d):
    return [x * v for v in d.values()]


@P(args=lambda k: (T(3), (1, 2.0, "s")[k]))
def arg_type_changes(x, v):
    if isinstance(v, str):
        return x
    return x * v


@P(args=lambda k: (T(3), [torch.float32, torch.float64, torch.float32][k]))
def dtype_argument_changes(x, dt):
    return x.to(dt) * 2


@P(args=lambda k: (T(3), k % 2 == 0))
def bool_argument_changes(x, flag):
    return x * 2 if flag else x - 2


@P(args=lambda k: (T(3), None if k != 1 else T(3)), graphs=0, breaks=0)
def optional_tensor_argument(x, bias):
    if bias is not None:
        x = x + bias
    return x


def _callbacks_world():
    cbs = []

    def fn(x):
        for cb in cbs:
            x = cb(x)
        return x
    return types.SimpleNamespace(fn=fn, cbs=cbs)


def _register_cb(k, w):
    if k == 1:
        w.cbs.append(lambda t: t * 10)


P(name="callback_list_grows", build=_callbacks_world, between=_register_cb, args=x1,
  graphs=0, breaks=0)


def _method_world():
    class Net:
        def act(self, t):
            return torch.relu(t)

        def forward(self, t):
            return self.act(t) + 1
    n = Net()
    return types.SimpleNamespace(fn=n.forward, net=n, cls=Net)


def _patch_act(k, w):
    if k == 1:
        w.cls.act = lambda self, t: torch.tanh(t)


P(name="method_called_via_self_patched", build=_method_world, between=_patch_act, args=x1)


def _module_global_world():
    import math

    def fn(x):
        return x * math.pi
    return types.SimpleNamespace(fn=fn)


P(name="module_attribute_constant", build=_module_global_world, args=x1)


test_program = P.tests()
