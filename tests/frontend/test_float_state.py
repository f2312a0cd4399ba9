"""Python floats read from mutable state are not specialised to their values.

A simulator that keeps its state as Python floats on an object (a cart-pole
environment) changes every float at every call. A trace that guarded those
values would recompile at every call until the recompile limit. The floats
flow through Python arithmetic and ``math`` functions (kept as functions of
the values read, recomputed natively), through comparisons (guarded as
relations, not values) and into arrays and tensor operations (graph inputs
computed natively, so bitwise what Python computes in double precision).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import janus_frame as jf
from janus_frame import hook
from janus_frame.cache import listeners
from jfutil import Recorder


class _Entries:
    """Entries compiled per code name, and at which call."""

    def __init__(self):
        self.call = 0
        self.log: list[tuple[int, str]] = []

    def __call__(self, event, code, payload):
        if event == "entry":
            self.log.append((self.call, code.co_qualname))

    def count(self, name: str, since: int = 0) -> int:
        return sum(1 for c, n in self.log if n.endswith(name) and c >= since)


def _listening():
    rec = _Entries()
    listeners.append(rec)
    return rec


class Pole:
    """Cart-pole dynamics in Python floats (no reset: the episode goes on)."""

    trig = math  # whose cos and sin the dynamics use

    def __init__(self):
        self.state = [0.01, -0.02, 0.03, 0.015]

    def reward(self, theta):
        return 1.0

    def step(self, action: int):
        x, x_dot, theta, theta_dot = self.state
        force = 10.0 if action == 1 else -10.0
        cos, sin = self.trig.cos(theta), self.trig.sin(theta)
        temp = (force + 0.05 * theta_dot ** 2 * sin) / 1.1
        theta_acc = (9.8 * sin - cos * temp) / (0.5 * (4.0 / 3.0 - 0.1 * cos ** 2 / 1.1))
        x_acc = temp - 0.05 * theta_acc * cos / 1.1
        tau = 0.02
        self.state = [x + tau * x_dot, x_dot + tau * x_acc, theta + tau * theta_dot,
                      theta_dot + tau * theta_acc]
        done = abs(self.state[0]) > 2.4 or abs(self.state[2]) > 12 * 2 * math.pi / 360
        obs = np.asarray(self.state, dtype=np.float32)
        return obs, self.reward(theta), done


def test_cartpole_step_with_changing_float_state_does_not_recompile_per_call():
    ref, env = Pole(), Pole()
    be = Recorder()
    step = jf.compile(env.step, backend=be)
    rec = _listening()
    dones = set()
    try:
        for i in range(30):
            rec.call = i
            action = (i * 7) % 3 % 2
            want, got = ref.step(action), step(action)
            # bitwise: the state is Python double arithmetic in both
            assert env.state == ref.state, i
            assert got[0].dtype == want[0].dtype and np.array_equal(got[0], want[0]), i
            assert got[1:] == want[1:], i
            dones.add(got[2])
    finally:
        listeners.remove(rec)
    # the array is made by a graph (the state floats are its inputs)
    assert be.graphs
    assert dones == {False, True}  # the pole fell: both outcomes of the relation ran
    # per action (a branch on it): the first entry specialised, one more once
    # the floats turned out to vary, one when the pole fell; never one per call
    assert rec.count("Pole.step") <= 6, rec.log
    assert rec.count("Pole.step", since=15) == 0, rec.log


def test_relation_on_derived_floats_is_guarded_not_the_values():
    class Ball:
        def __init__(self):
            self.h, self.v = 10.0, 0.0

        def step(self, x):
            self.v = self.v - 9.81 * 0.01
            self.h = self.h + self.v * 0.01
            if abs(self.h - 5.0) > math.sqrt(2.0):  # the branch needs only the relation
                return x * 2.0
            return x - 1.0

    ref, ball = Ball(), Ball()
    f = jf.compile(ball.step, backend=Recorder())
    rec = _listening()
    try:
        for i in range(120):
            rec.call = i
            x = torch.full((3,), float(i))
            assert torch.equal(f(x), ref.step(x)), i
            assert (ball.h, ball.v) == (ref.h, ref.v), i
    finally:
        listeners.remove(rec)
    # the outcome flips once (h falls below 5 + sqrt 2): one entry per side
    assert rec.count("Ball.step") <= 3, rec.log


def test_floats_mixed_with_tensors_are_graph_inputs_bitwise_equal():
    class Scaled:
        def __init__(self):
            self.scale, self.a, self.b, self.n = 0.5, 3.0, 7.0, 5

        def __call__(self, x):
            return (x * self.scale + x * math.exp(self.scale) - x / (self.a / self.b)
                    + x * (self.n // 2) + x * -self.a)

    ref, m = Scaled(), Scaled()
    be = Recorder()
    f = jf.compile(m.__call__, backend=be)
    rec = _listening()
    g = torch.Generator().manual_seed(0)
    try:
        for i in range(12):
            rec.call = i
            for o in (ref, m):
                o.scale = 0.5 + 0.37 * i
                o.a, o.b, o.n = 3.0 + i / 3, 7.0 - i / 7, 5 + i
            x = torch.randn(16, generator=g)
            assert torch.equal(f(x), ref(x)), i
    finally:
        listeners.remove(rec)
    # one recompile per number found varying (automatic dynamic), then none
    assert rec.count("Scaled.__call__") <= 5, rec.log
    assert rec.count("Scaled.__call__", since=5) == 0, rec.log
    # the last graph takes the varying numbers as 0-d float64 inputs
    ph = be.graphs[-1].graph.find_nodes(op="placeholder")
    assert sum(1 for n in ph if n.meta["example_value"].dim() == 0) >= 4


def test_math_domain_error_is_raised_like_eager():
    class Root:
        def __init__(self):
            self.v = 4.0

        def __call__(self, x):
            self.v = self.v - 1.5
            return x * math.sqrt(self.v)

    ref, r = Root(), Root()
    f = jf.compile(r.__call__, backend=Recorder())
    x = torch.ones(2)
    for _ in range(2):
        assert torch.equal(f(x), ref(x))
    for o in (ref, r):
        try:
            (f if o is r else ref)(x)
        except ValueError as e:
            err = str(e)
        else:
            raise AssertionError("no error")
        assert err == "math domain error"


def test_branches_on_the_flags_of_a_list_stop_recompiling_quickly():
    # discounted returns over episode ends: each call's list of flags is a
    # new combination; a recompile per combination would never settle
    def returns(rewards, dones, x):
        out, ret = [], 0.0
        for r, d in zip(reversed(rewards), reversed(dones)):
            ret = r + 0.99 * ret * (0.0 if d else 1.0)
            out.append(ret)
        return x * torch.tensor(out[::-1], dtype=torch.float64)

    f = jf.compile(returns, backend=Recorder())
    rec = _listening()
    import random
    rng = random.Random(0)
    x = torch.ones(8, dtype=torch.float64)
    try:
        with pytest.warns(RuntimeWarning, match=r"items of L\['dones'\]"):
            for i in range(20):
                rec.call = i
                rewards = [rng.random() for _ in range(8)]
                dones = [rng.random() < 0.3 for _ in range(8)]
                assert torch.equal(f(rewards, dones, x), returns(rewards, dones, x)), i
    finally:
        listeners.remove(rec)
    # stopped after a few items' flags, well before the recompile limit (8)
    assert rec.count("returns") <= 4, rec.log
    assert rec.count("returns", since=6) == 0, rec.log


def test_a_flag_argument_is_not_a_storm():
    def f(x, flags):
        return x * 2 if flags[0] else x - 1

    cf = jf.compile(f, backend=Recorder())
    rec = _listening()
    try:
        for i in range(10):
            rec.call = i
            flags = [i % 2 == 0, i % 3 == 0, True]
            x = torch.full((2,), float(i))
            assert torch.equal(cf(x, flags), f(x, flags))
    finally:
        listeners.remove(rec)
    assert rec.count("f") == 2, rec.log  # one per value of the one flag read


def test_state_array_without_dtype_is_float64_and_exact():
    class Osc:
        def __init__(self):
            self.state = (0.3, -0.1)

        def step(self, x):
            p, v = self.state
            self.state = (p + 0.1 * v, v - 0.1 * math.sin(p))
            a = np.asarray(self.state)  # float64, as numpy makes it
            return torch.from_numpy(a) * x, self.state[0] * 2.0

    ref, o = Osc(), Osc()
    be = Recorder()
    f = jf.compile(o.step, backend=be)
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    rec = _listening()
    try:
        for i in range(10):
            rec.call = i
            (t1, s1), (t2, s2) = ref.step(x), f(x)
            assert t1.dtype == t2.dtype and torch.equal(t1, t2), i
            assert type(s1) is type(s2) and s1 == s2, i
            assert o.state == ref.state, i
    finally:
        listeners.remove(rec)
    assert be.graphs
    assert rec.count("Osc.step", since=4) == 0, rec.log


@pytest.mark.parametrize("backend", [
    "eager",
    # functionalizing the write through a view at a data-dependent offset
    # guards on that offset: the fusing backend runs the graph as captured
    pytest.param("default", marks=pytest.mark.expect_fallback)])
def test_varying_int_index_takes_a_view(backend):
    # x[i] with an int that changes between calls: a view (a 0-d tensor
    # index would copy, and the in-place update would be lost)
    def g(x):
        for i in range(x.shape[0]):
            x[i].mul_(2)
        return x * 1

    cg = jf.compile(g, backend=backend)
    for n in range(4, 8):
        a = torch.arange(float(n * 2)).view(n, 2)
        b = a.clone()
        torch.testing.assert_close(cg(a), g(b))
        torch.testing.assert_close(a, b)


def test_varying_float_beside_a_zero_dim_tensor_keeps_its_dtype():
    # a float32 0-d loss plus a Python float: float32 in eager; a float64 0-d
    # input in its place would promote the result
    def f(x, s):
        return x.sum() + 0.5 * s

    cf = jf.compile(f, backend="eager")
    for k in range(5):
        x, s = torch.randn(3), 0.1 * k + 0.05
        got, want = cf(x, s), f(x, s)
        assert got.dtype == want.dtype == torch.float32
        torch.testing.assert_close(got, want)


def test_varying_int_row_of_a_parameter_written_in_place_raises_as_eager():
    w = torch.nn.Parameter(torch.randn(6, 3))

    def f(i):
        r = w[i]
        r.mul_(2)
        return r

    cf = jf.compile(f, backend="eager")
    for i in range(4):
        with pytest.raises(RuntimeError, match="a view of a leaf Variable"):
            f(i)
        with pytest.raises(RuntimeError, match="a view of a leaf Variable"):
            cf(i)


@pytest.mark.parametrize("spelling", ["row", "row_slice", "row_unsqueezed", "in_list"])
@pytest.mark.parametrize("backend", ["recorder", "default"])
def test_varying_int_row_of_a_parameter_that_escapes_aliases_the_parameter(spelling, backend):
    # a row gathered for a varying index is a copy; returned (or a view of
    # it, or inside a container), later writes through it must reach the
    # parameter, as they do through eager's view
    w = torch.nn.Parameter(torch.zeros(6, 3))
    view = {"row": lambda r: r, "row_slice": lambda r: r[1:],
            "row_unsqueezed": lambda r: r.unsqueeze(0), "in_list": lambda r: [r]}[spelling]

    def f(i):
        return (w[i] * 2).sum(), view(w[i])

    rec = Recorder()
    cf = jf.compile(f, backend=rec if backend == "recorder" else None)
    for i in range(1, 5):
        for fn in (f, cf):
            with torch.no_grad():
                w.zero_()
            s, r = fn(i)
            r = r[0] if spelling == "in_list" else r
            assert r._base is w
            s.backward()
            with torch.no_grad():
                r.fill_(7.0)
            assert (w[i, 1:] == 7).all() and w.grad[i].eq(2).all()
            w.grad = None
    if backend == "recorder":
        assert rec.graphs


def test_varying_int_row_read_and_reduced_in_the_fusing_backend():
    def f(x, i, j):
        return (x[i] * x[j]).sum() + x[i].exp()

    cf = jf.compile(f)
    x = torch.randn(6, 4)
    for i, j in [(0, 1), (2, 5), (5, 0), (3, 3)]:
        torch.testing.assert_close(cf(x, i, j), f(x, i, j))


def _breaks(prof) -> list:
    return [s.break_id for s in prof.report().sites if s.break_id]


@pytest.mark.parametrize("backend", ["recorder", "default"])
def test_varying_int_row_of_a_tensor_is_read_in_the_graph(backend):
    # x[i] for an int that changes every call, on tensors that are no
    # parameter with grad on (an input, a table, a parameter under no_grad):
    # gathered in the graph, where the row needed the int's value (a break
    # per call) before
    table = torch.randn(8, 5)
    w = torch.nn.Parameter(torch.randn(8, 5))

    def f(x, i):
        with torch.no_grad():
            p = w[i]
        return (x[i] * 2 + table[i]).sum() + p.sum(), x[i].tanh()

    rec = Recorder()
    cf = jf.compile(f, backend=rec if backend == "recorder" else None)
    x = torch.randn(8, 5)
    with jf.profile() as prof:
        for i in range(6):
            for got, want in zip(cf(x, i), f(x, i)):
                torch.testing.assert_close(got, want)
    assert _breaks(prof) == []
    if backend == "recorder":
        assert len(rec.graphs) <= 2  # the first int specialised, then one graph


def test_varying_int_row_in_a_recurrent_step_trains_as_eager():
    # a step function called once per time step with the step's index
    torch.manual_seed(0)
    W, U = torch.nn.Parameter(torch.randn(4, 6)), torch.nn.Parameter(torch.randn(6, 6) * 0.3)

    def step(xs, t, h):
        return torch.tanh(xs[t] @ W + h @ U)

    cstep = jf.compile(step)
    grads = []
    for fn in (step, cstep):
        src = torch.randn(7, 3, 4, generator=torch.Generator().manual_seed(1))
        xs = src * 1.5  # an activation: no leaf
        h = torch.zeros(3, 6)
        with jf.profile() as prof:
            for t in range(7):
                h = fn(xs, t, h)
        h.sum().backward()
        grads.append((h.detach(), W.grad.clone(), U.grad.clone()))
        W.grad = U.grad = None
        if fn is cstep:
            assert _breaks(prof) == []
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.reruns_ok  # the graph's index check fails: the frame reruns natively
@pytest.mark.parametrize("backend", ["eager", "default"])
def test_varying_int_row_out_of_range_raises_eager_s_error(backend):
    def f(x, i):
        return x[i] * 2

    cf = jf.compile(f, backend=backend)
    x = torch.randn(4, 3)
    for i in range(4):
        torch.testing.assert_close(cf(x, i), f(x, i))
    with pytest.raises(IndexError, match="index 4 is out of bounds"):
        cf(x, 4)
    torch.testing.assert_close(cf(x, 2), f(x, 2))


@pytest.mark.parametrize("backend", ["recorder", "default"])
def test_window_at_a_varying_offset_of_a_tensor_is_read_in_the_graph(backend):
    # x[i:i + k] for an int that changes every call, on a tensor that is no
    # parameter with grad on: gathered in the graph, where it was a narrow
    # needing the int's value (a break per call)
    def f(x, node):
        w = x[node.word:node.word + 3]
        return (w * 2).sum(0) + w[1], w.exp()

    rec = Recorder()
    cf = jf.compile(f, backend=rec if backend == "recorder" else None)
    x = torch.randn(10, 4, requires_grad=True)
    with jf.profile() as prof:
        for word in [0, 4, 7, 2, 5]:
            got, want = cf(x, _Node(word)), f(x, _Node(word))
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w)
            torch.testing.assert_close(torch.autograd.grad(got[0].sum() + got[1].sum(), x)[0],
                                       torch.autograd.grad(want[0].sum() + want[1].sum(), x)[0])
    assert _breaks(prof) == []


def _window_written(x, i):
    w = x[i:i + 2]
    w.mul_(3)
    return x * 1


def _window_returned(x, i):
    return x[i:i + 2]


@pytest.mark.parametrize("f", [_window_written, _window_returned])
def test_window_at_a_varying_offset_keeps_eager_view_semantics(f):
    cf = jf.compile(f)
    for i in range(5):
        xa = torch.arange(40.0).view(8, 5)
        xb = xa.clone()
        got, want = cf(xa, i), f(xb, i)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(xa, xb)
        got.fill_(-1)
        want.fill_(-1)
        torch.testing.assert_close(xa, xb)


def _written(x, i):
    r = x[i]
    r.add_(1)
    return x.sum()


def _written_by_item(x, i):
    r = x[i]
    r[0] = 5.0
    return x * 1


def _source_written(x, i):
    r = x[i]
    x.mul_(2)
    return r * 1


def _source_written_through_a_view(x, i):
    r = x[i]
    x.view(-1)[:7].zero_()
    return r + 0


def _returned(x, i):
    return x[i]


def _view_returned(x, i):
    return x[i][1:]


def _kept_in_a_list(x, i):
    return [x[i]]


@pytest.mark.parametrize("f", [_written, _written_by_item, _source_written,
                               _source_written_through_a_view, _returned, _view_returned,
                               _kept_in_a_list])
@pytest.mark.parametrize("backend", ["eager", "default"])
def test_varying_int_row_keeps_eager_view_semantics(f, backend):
    # where a copy of the row would show -- written through, its tensor
    # written after the read, kept by Python past the graph -- the row is
    # eager's view, and what the program sees is eager's
    cf = jf.compile(f, backend=backend)
    for i in range(5):
        xa = torch.arange(40.0).view(8, 5)
        xb = xa.clone()
        got, want = cf(xa, i), f(xb, i)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(xa, xb)
        r, q = (got[0], want[0]) if isinstance(got, list) else (got, want)
        if r.shape != xa.shape:  # a row Python kept: writes through it reach x
            r.fill_(-1)
            q.fill_(-1)
            torch.testing.assert_close(xa, xb)


class NumpyPole(Pole):
    """The same dynamics with numpy's functions: the state becomes numpy
    float64 scalars after the first step (as gym's environments keep it)."""

    trig = np

    def reward(self, theta):
        return np.float64(1.0) * np.exp(-abs(theta))


def test_numpy_float_state_keeps_its_type_and_does_not_recompile_per_call():
    ref, env = NumpyPole(), NumpyPole()
    be = Recorder()
    step = jf.compile(env.step, backend=be)
    rec = _listening()
    try:
        for i in range(30):
            rec.call = i
            action = (i * 7) % 3 % 2
            want, got = ref.step(action), step(action)
            assert env.state == ref.state, i
            assert [type(v) for v in env.state] == [type(v) for v in ref.state], i
            assert np.array_equal(got[0], want[0]) and got[0].dtype == want[0].dtype, i
            assert got[1] == want[1] and type(got[1]) is type(want[1]), i
            assert got[2] == want[2], i
    finally:
        listeners.remove(rec)
    assert be.graphs
    assert type(env.state[1]) is np.float64
    assert rec.count("Pole.step", since=15) == 0, rec.log


def test_tensor_scaled_by_a_numpy_float_from_state_is_an_input_not_a_constant():
    class Sim:
        def __init__(self):
            self.theta, self.v = 0.1, 0.0

    def f(x, s):
        s.v = s.v + 0.01 * np.sin(s.theta)
        s.theta = s.theta + s.v
        return x * np.cos(s.theta)

    cf = jf.compile(f, backend=Recorder())
    a, b = Sim(), Sim()
    x = torch.ones(3)
    for k in range(12):
        torch.testing.assert_close(cf(x, a), f(x, b), rtol=0, atol=0)
        assert (a.theta, a.v) == (b.theta, b.v) and type(a.v) is type(b.v) is np.float64
    assert len(hook.code_state(f.__code__).recompiles) <= 1


def test_numpy_float64_from_state_keeps_numpys_promotion_with_arrays():
    # numpy 2 promotes a float32 array with a float64 scalar to float64 (the
    # scalar's type counts): the scalar stays numpy's in numpy operations
    class S:
        k = np.float64(1.5)

    def f(x, s):
        a = x.numpy() * s.k
        b = np.float32(2) * s.k
        return torch.from_numpy(a) + 1, b, s.k * 3, np.add(x.numpy(), s.k).dtype

    cf = jf.compile(f, backend=Recorder())
    s = S()
    for k in range(4):
        s.k = np.float64(1.5 + k)
        x = torch.ones(3)
        want, got = f(x, s), cf(x, s)
        assert got[0].dtype == want[0].dtype == torch.float64
        torch.testing.assert_close(got[0], want[0])
        assert got[1:] == want[1:] and [type(v) for v in got[1:]] == [type(v) for v in want[1:]]


class _Node:
    __slots__ = ("word",)

    def __init__(self, word):
        self.word = word


@pytest.mark.parametrize("backend", ["recorder", "eager"])
def test_window_at_a_varying_offset_is_a_view_and_does_not_recompile_per_offset(backend):
    # x[i:i + k] with an int that changes between calls (a tree node's word):
    # a narrow at an offset read from the node, guarded in range
    emb = torch.nn.Parameter(torch.randn(50, 4))

    def lookup(node):
        return (emb[node.word:node.word + 1] * 2).sum()

    def scale(x, node):
        x[node.word:node.word + 3].mul_(2)
        return x[node.word:node.word + 3] + 1

    be = Recorder() if backend == "recorder" else backend
    cl, cs = jf.compile(lookup, backend=be), jf.compile(scale, backend=be)
    for w in [3, 7, 11, 2, 40, 0, 49]:
        got, want = cl(_Node(w)), lookup(_Node(w))
        assert torch.equal(got, want)
        assert torch.equal(torch.autograd.grad(got, emb)[0], torch.autograd.grad(want, emb)[0])
    for w in [0, 3, 7, 5, 2, 8, 9]:   # 8 and 9: past the end, Python's slice clamps
        a = torch.arange(20.0).view(10, 2)
        b = a.clone()
        torch.testing.assert_close(cs(a, _Node(w)), scale(b, _Node(w)))
        assert torch.equal(a, b), w
    assert len(hook.code_state(lookup.__code__).recompiles) <= 1
    # one to a dynamic offset, then one per clamped offset past the end
    assert len(hook.code_state(scale.__code__).recompiles) <= 3
