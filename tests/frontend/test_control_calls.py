"""Python control flow specialised at trace time, and calls: torch functions,
tensor methods and properties, builtins, inlined user functions, methods,
objects and with-blocks. Each test captures the frame as one graph."""
from __future__ import annotations

import abc
import collections
import dataclasses
import enum
import functools
import operator
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import janus_frame as jf
from janus_frame.frontend.breaks import GraphBreak
from jfutil import Jit, Recorder


def test_if_on_constants_shapes_isinstance(jit):
    def f(x, mode, scale=None):
        if x.shape[0] > 2:
            x = x * 2
        else:
            x = x - 1
        if isinstance(mode, str) and mode == "relu":
            x = torch.relu(x)
        elif mode is None:
            x = -x
        y = x if scale is None else x * scale
        return y + (1 if x.ndim == 2 and x.dim() == 2 else 0)
    jit(f, torch.randn(4, 3), "relu", opcodes={"POP_JUMP_FORWARD_IF_FALSE", "POP_JUMP_FORWARD_IF_NOT_NONE"})
    jit.backend.graphs.clear()
    jit(f, torch.randn(2, 3), None, 0.5)


def test_for_loops_over_python_iterables(jit):
    def f(x, ws, d):
        for i in range(3):
            x = x + i
        for w in ws:
            x = x * w
        for t in (1, 2):
            x = x - t
        for k, v in d.items():
            x = x + v
        for k in d:
            x = x + d[k]
        for i, w in enumerate(ws):
            x = x + i * w
        for a, b in zip(ws, reversed(ws)):
            x = x + a * b
        return x
    jit(f, torch.randn(3), [torch.randn(3), torch.randn(3)], {"a": torch.randn(3), "b": 2.0},
        opcodes={"GET_ITER", "FOR_ITER", "JUMP_BACKWARD"})


def test_while_break_continue(jit):
    def f(x, n):
        i = 0
        while i < n:
            i += 1
            if i == 2:
                continue
            if i > 4:
                break
            x = x * 1.5
        return x, i
    jit(f, torch.randn(3), 10, opcodes={"JUMP_BACKWARD"})


def test_unroll_cap_falls_back():
    def f(x):
        for i in range(50):
            x = x + i
        return x
    cf = jf.compile(f, backend="eager", unroll_limit=10)
    x = torch.randn(3)
    torch.testing.assert_close(cf(x), f(x))
    report = jf.explain(jf.compile(f, unroll_limit=10))(x)
    assert report.graph_count == 1  # explain uses the default limit: captured
    with pytest.raises(Exception, match="JF007"):
        jf.compile(f, backend="eager", fullgraph=True, unroll_limit=10)(x)


def test_module_containers(jit):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
            self.heads = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Linear(4, 2)})
            self.seq = nn.Sequential(nn.Linear(4, 4), nn.Tanh())

        def forward(self, x):
            for layer in self.layers:
                x = torch.relu(layer(x))
            x = self.seq(x) + self.layers[-1](x)
            return {k: h(x) for k, h in self.heads.items()}, len(self.layers)
    m = M()
    jit(m.forward, torch.randn(2, 4))
    assert len(jit.backend.placeholders()) == 1 + 2 * 3 + 2 * 2 + 2  # x + parameters


class _Lists(nn.Module):
    def __init__(self):
        super().__init__()
        self.ws = nn.ParameterList([nn.Parameter(torch.randn(4, 4)) for _ in range(3)])
        self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])
        self.seq = nn.Sequential(nn.Linear(4, 4), nn.Tanh())


def test_parameter_list_indexed_by_int(jit):
    m = _Lists()

    def f(x):
        return torch.tanh(x @ m.ws[0]) @ m.ws[-1] + x @ m.ws[1] + m.ws[-3].sum()
    x = torch.randn(2, 4)
    cf = jit(f, x)
    # the entries are graph inputs read from the list, not constants of the trace
    assert len(jit.backend.placeholders()) == 1 + 3
    with torch.no_grad():
        m.ws[1].mul_(2)
    torch.testing.assert_close(cf(x), f(x))
    assert len(jit.backend.graphs) == 1
    # gradients reach the listed parameters as in eager
    cf(x).sum().backward()
    got = [p.grad.clone() for p in m.ws]
    m.zero_grad()
    f(x).sum().backward()
    for g, p in zip(got, m.ws):
        torch.testing.assert_close(g, p.grad)
    # a list of another length is a new entry (its length is guarded)
    m.ws.append(nn.Parameter(torch.randn(4, 4)))
    torch.testing.assert_close(cf(x), f(x))
    assert len(jit.backend.graphs) == 2


@pytest.mark.parametrize("attr,index", [("ws", 3), ("ws", -4), ("layers", 2), ("layers", -3),
                                        ("seq", 5)])
def test_module_and_parameter_list_index_out_of_range_raises_like_eager(attr, index):
    m = _Lists()

    def f(x, log):
        log.append("before")
        y = x + 1
        return getattr(m, attr)[index], y
    x = torch.randn(2, 4)
    log_e, log_c = [], []
    with pytest.raises(IndexError):
        f(x, log_e)
    with pytest.raises(IndexError):
        jf.compile(f, backend="eager")(x, log_c)
    assert log_c == log_e == ["before"]
    with pytest.raises(GraphBreak) as info:
        jf.compile(f, backend="eager", fullgraph=True)(x, [])
    assert info.value.exc_type is IndexError


def test_torch_functions_and_tensor_methods(jit):
    def f(x, y):
        a = torch.cat([x, y], dim=0).view(-1, 2).transpose(0, 1).contiguous()
        b = F.softmax(a, dim=-1) + F.gelu(a) + torch.where(a > 0, a, torch.zeros_like(a))
        c = x.T @ y + x.size(0) + x.numel() + x.to(torch.float64).double().float()
        return b.sum(dim=1, keepdim=True), c.mean(), x.dtype, x.device, x.ndim, x.shape
    jit(f, torch.randn(4, 4), torch.randn(4, 4))


def test_user_functions_and_methods_inlined(jit):
    class Helper:
        def __init__(self, k):
            self.k = k

        def scale(self, x):
            return x * self.k

        @staticmethod
        def shift(x):
            return x + 1

        @classmethod
        def name(cls):
            return cls.__name__

        @property
        def double_k(self):
            return self.k * 2

    h = Helper(3)

    def helper(x, n=2):
        return x ** n

    def f(x):
        return helper(x), h.scale(x), Helper.shift(x), h.name(), x * h.double_k
    jit(f, torch.randn(3))


def test_recursion_runs_as_cached_frames():
    def fact(x, n):
        return x if n == 0 else fact(x * n, n - 1)
    rec = jf.compile(fact, backend="eager")
    torch.testing.assert_close(rec(torch.ones(2), 5), fact(torch.ones(2), 5))
    with pytest.raises(Exception, match="JF018"):
        jf.compile(fact, backend="eager", fullgraph=True)(torch.ones(2), 10)


def test_super_and_module_inheritance(jit):
    class Base(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return self.lin(x)

    class Child(Base):
        def forward(self, x):
            return super().forward(x) * 2 + super(Child, self).forward(x)
    m = Child()
    jit(m.forward, torch.randn(2, 3))


def test_no_grad_enable_grad_set_grad_enabled(jit):
    def f(x, w):
        with torch.no_grad():
            a = x * w
            with torch.enable_grad():
                b = x * w
        with torch.set_grad_enabled(False):
            c = x * w
        d = x * w
        return a.requires_grad, b.requires_grad, c.requires_grad, d.requires_grad, a + b + c + d
    jit(f, torch.randn(3), torch.randn(3, requires_grad=True), opcodes={"BEFORE_WITH"})


def test_autocast_region(jit):
    def f(x, w):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = x @ w
        return y.float() + 1, y.dtype
    jit(f, torch.randn(4, 4), torch.randn(4, 4), opcodes={"BEFORE_WITH"})


Point = collections.namedtuple("Point", ["x", "y"])


@dataclasses.dataclass
class Cfg:
    scale: float
    bias: float = 1.0


class Plain:
    def __init__(self):
        self.alpha = 0.5


def test_dataclass_namedtuple_object_reads(jit):
    def f(t, p, cfg, obj):
        q = Point(p.x * 2, p.y)
        return t * cfg.scale + cfg.bias + p.x + obj.alpha * p.y, q, q.x
    jit(f, torch.randn(3), Point(torch.randn(3), 2.0), Cfg(2.0), Plain())


class Output(collections.OrderedDict):
    """A ModelOutput-style dict subclass."""


@dataclasses.dataclass
class DataOutput(dict):
    logits: torch.Tensor = None
    loss: torch.Tensor = None

    def __post_init__(self):
        self.update({k: v for k, v in vars(self).items() if v is not None})


def test_dict_subclass_return_values(jit):
    def f(x):
        return Output(logits=x * 2, hidden=x + 1)
    out = jit(f, torch.randn(3))
    assert type(out(torch.randn(3))) is Output


def test_frames_without_tensor_ops_run_natively_until_tensors_come():
    """A frame compiled on purpose whose trace finds nothing to compile
    gets an entry running it natively for those argument types, and is
    compiled when tensors come; a frame reached implicitly is skipped."""
    from janus_frame import _C

    def f(a, b):
        return a + b
    rec = Recorder()
    cf = jf.compile(f, backend=rec)
    assert cf(1, 2) == 3
    assert _C.get_code_strategy(f.__code__)[0] != _C.SKIP
    assert len(_C.code_entries(f.__code__)) == 1 and not rec.graphs
    x = torch.randn(3)
    torch.testing.assert_close(cf(x, x), x + x)
    assert len(rec.graphs) == 1

    def g(a, b):
        return a * b
    with jf.enable(backend="eager"):
        assert g(2, 3) == 6
    assert _C.get_code_strategy(g.__code__)[0] == _C.SKIP
    assert _C.code_entries(g.__code__) == []


def test_getattr_hasattr_builtins(jit):
    class Obj:
        scale = 2.0

    o = Obj()

    def f(x):
        s = getattr(o, "scale") * getattr(o, "missing", 3.0)
        return x * s, hasattr(o, "scale"), hasattr(o, "nope"), hasattr(x, "shape")
    jit(f, torch.randn(3))


def _delegating(xs):
    yield from xs
    yield from (x * 2 for x in xs)


def test_generators_with_yield_from(jit):
    from jfutil import opnames

    assert {"GET_YIELD_FROM_ITER", "SEND"} <= opnames(_delegating)

    def f(a, b):
        return sum(_delegating([a, b])), list(_delegating((1, 2)))
    jit(f, torch.randn(3), torch.randn(3))


def _inner_logged(log, n):
    for i in range(n):
        log.append(("inner", i))
        yield i
    return "done"


def _outer_logged(log, n):
    r = yield from _inner_logged(log, n)
    log.append(("outer", r))
    yield r


def test_yield_from_is_lazy(jit):
    """``yield from`` a generator resumes it one item at a time: a consumer
    that stops early leaves the rest of the delegate unrun (its side effects
    too), items and side effects interleave as in Python, and the
    delegate's return value is the expression's value."""
    from jfutil import opnames

    assert {"GET_YIELD_FROM_ITER", "SEND"} <= opnames(_outer_logged)

    def first(x, log):
        for i in _outer_logged(log, 4):
            log.append(("got", i))
            if i == 1:
                return x + i
        return x

    def all_items(x, log):
        out = []
        for i in _outer_logged(log, 2):
            log.append(("got", i))
            out.append(i)
        return x * len(out), out

    jit(first, torch.randn(3), [])
    Jit()(all_items, torch.randn(3), [])


def test_parameters_walk_stops_with_its_consumer():
    """``next(iter(m.parameters()))`` (transformers' ``dtype``) walks the
    module tree only up to the first parameter: the entry guards the
    modules visited, not every parameter of the model."""
    from janus_frame.cache import code_state

    class Deep(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.first = torch.nn.Linear(3, 3)
            self.rest = torch.nn.Sequential(*[torch.nn.Linear(3, 3) for _ in range(6)])

        def forward(self, x):
            for p in self.parameters():
                return x.to(p.dtype) + 1

    m = Deep()
    cm = jf.compile(m, backend="eager", fullgraph=True)
    x = torch.randn(3)
    torch.testing.assert_close(cm(x), m(x))
    lines = code_state(Deep.forward.__code__).entries[0][1].guard_lines
    assert not [l for l in lines if "_modules['rest']._modules" in l], lines


class _Layer(abc.ABC):
    @abc.abstractmethod
    def scale(self): ...


class _Doubling(_Layer):
    def __init__(self, k):
        self.k = k

    def scale(self):
        return 2 * self.k


class _Mode(str, enum.Enum):
    FAST = "fast"
    SLOW = "slow"


def test_abstract_base_class_instances_and_str_enums_in_one_graph(jit):
    def f(x, mode):
        layer = _Doubling(3)  # a concrete class under ABCMeta
        if mode == _Mode.FAST:
            x = x * layer.scale()
        if mode in (_Mode.SLOW, _Mode.FAST):
            x = x + 1
        if mode not in (_Mode.SLOW,):
            x = x - 0.5
        return x

    jit(f, torch.randn(3), _Mode.FAST, opcodes={"CONTAINS_OP", "COMPARE_OP"})
    jf.reset()
    Jit()(f, torch.randn(3), _Mode.SLOW)


def _logged(fn):
    def wrapped(*args, **kwargs):  # one code object for every decorated function
        return fn(*args, **kwargs)
    return wrapped


@_logged
def _inner(x):
    return torch.tanh(x)


@_logged
def _outer(x):
    return _inner(x) * 2


def test_decorator_wrappers_around_different_functions_are_not_recursion(jit):
    def f(x):
        return _outer(x) + 1

    jit(f, torch.randn(4))


def _model_output_module():
    """A stand-in for transformers.utils.generic.ModelOutput with its
    semantics: a dataclass whose non-None fields are its dict items."""
    import types

    class ModelOutput(collections.OrderedDict):
        def __post_init__(self):
            for f in dataclasses.fields(self):
                v = getattr(self, f.name)
                if v is not None:
                    collections.OrderedDict.__setitem__(self, f.name, v)

        def __getitem__(self, k):
            if isinstance(k, str):
                return dict(self.items())[k]
            return self.to_tuple()[k]

        def to_tuple(self):
            return tuple(self[k] for k in self.keys())

    mod = types.ModuleType("transformers.utils.generic")
    mod.ModelOutput = ModelOutput
    return mod


def test_model_output_records_stay_in_the_graph(monkeypatch):
    mod = _model_output_module()
    monkeypatch.setitem(sys.modules, "transformers.utils.generic", mod)

    @dataclasses.dataclass
    class Out(mod.ModelOutput):
        loss: torch.Tensor = None
        logits: torch.Tensor = None
        hidden: torch.Tensor = None

    def f(x):
        out = Out(logits=x * 2, hidden=x + 1)
        first = out[0]  # the first non-None field
        return first + out.hidden + out["logits"] + sum(out.to_tuple()), out.loss is None, out

    rec = Recorder()
    cf = jf.compile(f, backend=rec)
    x = torch.randn(3)
    got, want = cf(x), f(x)
    torch.testing.assert_close(got[0], want[0])
    assert got[1] is want[1] is True
    assert type(got[2]) is Out and list(got[2].keys()) == ["logits", "hidden"]
    torch.testing.assert_close(got[2].logits, want[2].logits)
    assert got[2].loss is None
    # f itself is one graph (the returned record is built natively after it)
    report = jf.explain(f)(x)
    assert not [b for b in report.breaks if b.frame.endswith("stay_in_the_graph.<locals>.f")]
    assert operator.mul in [n.target for n in rec.graphs[0].graph.nodes]


def test_module_list_slice_iterated_and_returned(jit):
    layers = nn.ModuleList([nn.Linear(3, 3) for _ in range(4)])

    def f(x):
        for layer in layers[:3]:                # LlamaModel: self.layers[:num_hidden_layers]
            x = layer(x)
        tail = layers[1:][::2]
        return x, len(tail), tail               # a new ModuleList, as in Python

    cf = jf.compile(f, backend="eager", fullgraph=True)
    x = torch.randn(2, 3)
    out = cf(x)
    torch.testing.assert_close(out[0], f(x)[0])
    assert out[1] == 2 and type(out[2]) is nn.ModuleList
    assert [m is n for m, n in zip(out[2], [layers[1], layers[3]])] == [True, True]
    jit(lambda x: f(x)[0], x)


def test_partial_made_inside_escapes_with_its_own_keywords():
    def f(x, w):
        p = functools.partial(torch.mul, other=w)
        kw = p.keywords
        return p(x), p, kw

    rec = Recorder()
    cf = jf.compile(f, backend=rec, fullgraph=True)
    x = torch.randn(3)
    got, want = cf(x, 2.0), f(x, 2.0)
    assert len(rec.graphs) == 1
    torch.testing.assert_close(got[0], want[0])
    p, kw = got[1], got[2]
    assert type(p) is functools.partial and p.func is torch.mul and p.args == ()
    # the returned dict is the partial's own, as in Python: storing into it
    # changes the partial's later calls
    assert p.keywords is kw and kw == {"other": 2.0}
    kw["other"] = 5.0
    torch.testing.assert_close(p(x), x * 5.0)


def test_tracing_state_query_bound_by_pybind11_folds(jit):
    # torch._C._get_tracing_state is bound to a pybind11 function record,
    # not a module: it is still the module function the frontend folds
    def f(x):
        return x * 2 if torch._C._get_tracing_state() is None else x

    jit(f, torch.randn(3))


def test_stateless_modules_built_in_forward(jit):
    """``nn.ReLU()(x)`` inside forward (DistilBERT's classifier head): built
    while tracing, its forward inlined, one graph; training-mode dropout as
    eager has it (a module built in forward is in training mode)."""
    lin = nn.Linear(4, 4)

    def f(x):
        y = lin(x)
        return (nn.ReLU()(y) + nn.GELU(approximate="tanh")(y) + nn.Softmax(dim=-1)(y)
                + nn.Dropout(p=0.0)(y) + nn.LeakyReLU(0.2, inplace=False)(y))
    jit(f, torch.randn(2, 4))


def _tanh_built_in_forward_escapes():
    rec = Recorder()

    def f(x):
        act = nn.Tanh()
        return act(x), act

    cf = jf.compile(f, backend=rec, fullgraph=True)
    x = torch.randn(3)
    (y1, a1), (y2, a2) = cf(x), cf(x)
    torch.testing.assert_close(y1, torch.tanh(x))
    assert type(a1) is nn.Tanh and a1 is not a2 and a1.training
    assert len(rec.graphs) == 1


def test_stateless_module_built_in_forward_escapes_as_a_new_object():
    _tanh_built_in_forward_escapes()


def test_module_built_in_forward_then_changed_breaks():
    """Changing a module made in the frame (an attribute stored, a hook
    registered) is not modelled: a graph break, still eager's result."""
    def f(x):
        act = nn.ReLU()
        act.register_forward_hook(lambda m, i, o: o + 1)
        return act(x)

    def g(x):
        act = nn.Dropout(0.5)
        act.p = 0.0
        return act(x)

    for fn in (f, g):
        x = torch.randn(5)
        r = jf.explain(fn)(x)
        assert r.break_count >= 1 and r.breaks[0].id in ("JF023", "JF011"), \
            [(b.id, b.reason) for b in r.breaks]
        torch.testing.assert_close(jf.compile(fn, backend="eager")(x), fn(x))


def test_stateless_module_built_in_forward_after_torch_compile_patched_module_init():
    # torch.compile, once run, wraps nn.Module.__init__ for the whole process
    # (a generation tag); the module is still built in the graph, not a break,
    # whether janus_frame read the constructors before or after that
    import janus_frame.frontend.values.new_modules  # noqa: F401
    torch.compile(lambda x: nn.Tanh()(x) + 1, backend="eager")(torch.randn(2))
    _tanh_built_in_forward_escapes()


@pytest.mark.parametrize("make,target", [
    (lambda: nn.CrossEntropyLoss(), lambda: torch.tensor([1, 0, 3, 2])),
    (lambda: nn.CrossEntropyLoss(ignore_index=0, label_smoothing=0.1),
     lambda: torch.tensor([1, 0, 3, 2])),
    (lambda: nn.NLLLoss(reduction="sum"), lambda: torch.tensor([1, 0, 3, 2])),
    (lambda: nn.MSELoss(), lambda: torch.randn(4, 5)),
    (lambda: nn.BCEWithLogitsLoss(), lambda: torch.rand(4, 5)),
    (lambda: nn.SmoothL1Loss(beta=0.5), lambda: torch.randn(4, 5)),
])
def test_loss_module_built_in_forward_is_in_the_graph(make, target):
    # transformers' heads build their loss module inside forward
    w = torch.randn(3, 5, requires_grad=True)

    def f(x, t):
        loss_fct = make()
        return loss_fct(x @ w, t)

    rec = Recorder()
    cf = jf.compile(f, backend=rec, fullgraph=True)
    x, t = torch.randn(4, 3), target()
    want = f(x, t)
    gw, = torch.autograd.grad(want, w)
    got = cf(x, t)
    gg, = torch.autograd.grad(got, w)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(gg, gw)
    assert len(rec.graphs) == 1


def test_loss_module_built_with_a_weight_tensor_breaks_and_stays_correct():
    def f(x, t, cw):
        return nn.CrossEntropyLoss(weight=cw)(x, t)

    x, t, cw = torch.randn(4, 3), torch.tensor([0, 2, 1, 1]), torch.rand(3)
    r = jf.explain(f)(x, t, cw)
    assert r.break_count >= 1 and r.breaks[0].id == "JF023"
    torch.testing.assert_close(jf.compile(f, backend="eager")(x, t, cw), f(x, t, cw))
