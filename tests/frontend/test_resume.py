"""Graph breaks with resume functions and side effects replayed in order.

Each test compares compiled and plain runs (results, printed output, Python
state) and checks the number of graphs, so that a frame that silently fell
back whole would fail."""
from __future__ import annotations

import copy
import logging
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import janus_frame as jf
from janus_frame.diagnostics.logs import set_logs
from jfutil import Recorder, assert_same


def run_both(fn, *args, calls=1, **options):
    """Run plain and compiled (on copies), compare everything; returns the
    recorder and the outputs printed by the compiled runs."""
    rec = Recorder()
    cf = jf.compile(fn, backend=rec, **options)
    for _ in range(calls):
        a1 = copy.deepcopy(args)
        a2 = copy.deepcopy(args)
        exp = fn(*a1)
        got = cf(*a2)
        assert_same(exp, got)
        assert_same(a1, a2, "inputs after the call")
    return rec


def test_break_in_straight_line_code(capsys):
    def f(x):
        y = torch.sin(x) * 2
        print("y computed", y.shape)
        return torch.cos(y) + 1
    rec = run_both(f, torch.randn(4), calls=3)
    out = capsys.readouterr().out.splitlines()
    assert out == ["y computed torch.Size([4])"] * 6  # same text, eager and compiled
    assert len(rec.graphs) == 2
    assert [n.target for n in rec.graphs[0].graph.nodes if n.op == "call_function"] == \
        [torch.sin, __import__("operator").mul]


def test_several_breaks(capsys):
    def f(x):
        a = x + 1
        print("one")
        b = a * 2
        v = b.sum().item()  # data-dependent: breaks
        c = b - v
        print("two", round(v, 3))
        return c.exp()
    rec = run_both(f, torch.randn(3), calls=2)
    assert len(rec.graphs) == 4
    report = jf.explain(f)(torch.randn(3))
    assert [b.id for b in report.breaks] == ["JF003", "JF004", "JF003"]


def test_break_inside_for_loop_continues_every_iteration(capsys):
    def f(x, ws):
        acc = x
        for i, w in enumerate(ws):
            acc = acc * w
            print("step", i)
            acc = torch.tanh(acc + 1)  # (i in the graph would specialise per iteration)
        return acc
    ws = [torch.randn(3) for _ in range(6)]
    rec = run_both(f, torch.randn(3), ws, calls=2)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"step {i}" for i in range(6)] * 4
    # segments: before the loop + first body half, the body's second half
    # with the next iteration step, the loop body after the real iterator
    assert 2 <= len(rec.graphs) <= 4
    report = jf.explain(f)(torch.randn(3), ws)
    assert report.graph_count >= 2 and "JF017" in [b.id for b in report.breaks]


def test_long_loop_with_break_does_not_grow_the_stack(capsys):
    def f(x, n):
        for i in range(n):
            x = x + 1
            print(i)
        return x
    cf = jf.compile(f, backend="eager")
    out = cf(torch.zeros(1), 3000)  # far beyond the recursion limit if resumes nested
    assert out.item() == 3000


def helper_with_break(x):
    y = x * 3
    print("inside helper")
    return y + 1


def test_break_inside_inlined_callee():
    def outer(x):
        a = torch.sin(x)
        b = helper_with_break(a)
        return torch.cos(b)
    rec = run_both(outer, torch.randn(3), calls=2)
    # outer prefix, helper prefix, helper resume, outer resume
    assert len(rec.graphs) == 4


def test_break_inside_no_grad():
    def f(x, w):
        a = x * w
        with torch.no_grad():
            b = x * w
            print("inside", torch.is_grad_enabled())
            c = b * w
        return a * c, b.requires_grad, c.requires_grad, torch.is_grad_enabled()
    rec = run_both(f, torch.randn(3), torch.randn(3, requires_grad=True), calls=2)
    assert len(rec.graphs) == 2
    assert torch.is_grad_enabled()


def test_break_inside_try_falls_back_correctly():
    def f(x, fail):
        y = x * 2
        try:
            print("trying")
            if fail:
                raise ValueError("boom")
            y = y + 1
        except ValueError:
            y = y - 1
        finally:
            y = y * 3
        return y
    run_both(f, torch.randn(3), False, calls=2)
    run_both(f, torch.randn(3), True, calls=2)


def test_break_on_tensor_if_compiles_each_branch_lazily():
    def f(x):
        y = x * 2
        if y.sum() > 0:
            z = y + 1
        else:
            z = y - 1
        return z * 3
    rec = Recorder()
    cf = jf.compile(f, backend=rec)
    pos, neg = torch.ones(3), -torch.ones(3)
    torch.testing.assert_close(cf(pos), f(pos))
    assert len(rec.graphs) == 2  # the condition's segment and the taken branch only
    torch.testing.assert_close(cf(pos), f(pos))
    assert len(rec.graphs) == 2
    torch.testing.assert_close(cf(neg), f(neg))
    assert len(rec.graphs) == 3
    cond_graph = rec.graphs[0]
    assert any(n.target.__name__ == "gt" for n in cond_graph.graph.nodes if n.op == "call_function")


def test_print_and_logging_break_by_default_and_reorder_when_asked(capsys, caplog):
    log = logging.getLogger("janus_test")

    def f(x):
        y = x + 1
        print("a", y.shape)
        log.warning("b %s", tuple(y.shape))
        return y * 2
    rec = run_both(f, torch.randn(2))
    assert len(rec.graphs) == 2  # two breaks, the middle segment has no op
    jf.reset()
    capsys.readouterr()
    caplog.clear()
    rec = Recorder()
    cf = jf.compile(f, backend=rec, reorder_logging=True)
    with caplog.at_level(logging.WARNING, logger="janus_test"):
        out = cf(torch.ones(2))
    torch.testing.assert_close(out, torch.full((2,), 4.0))
    assert len(rec.graphs) == 1
    assert capsys.readouterr().out == "a torch.Size([2])\n"
    assert [r.getMessage() for r in caplog.records] == ["b (2,)"]


def test_graph_breaks_log_once_with_user_line(caplog):
    def f(x):
        print("hi")
        return x + 1
    set_logs("graph_breaks")
    try:
        with caplog.at_level(logging.INFO, logger="janus_frame"):
            cf = jf.compile(f, backend="eager")
            for _ in range(3):
                cf(torch.randn(2))
        msgs = [r.getMessage() for r in caplog.records if "JF003" in r.getMessage()]
        assert len(msgs) == 1
        assert __file__ in msgs[0] and 'print("hi")' in msgs[0]
    finally:
        set_logs("")


# -- side effects -------------------------------------------------------------------

COUNTER = 0


class Box:
    def __init__(self):
        self.n = 0
        self.items = []


def test_side_effects_replayed_with_no_break():
    def f(x, lst, d, box):
        global COUNTER
        lst.append(x * 2)
        lst.extend([x + 1])
        d["k"] = x.sum()
        d.update({"j": 3})
        box.n += 1
        box.latest = x * 4
        box.items.append(box.n)  # reads after the write see it
        COUNTER = COUNTER + 1
        return box.n, COUNTER
    rec = Recorder()
    cf = jf.compile(f, backend=rec, fullgraph=True)
    global COUNTER
    states = []
    for fn in (f, cf):
        COUNTER = 0
        lst, d, box = [], {}, Box()
        torch.manual_seed(0)
        outs = [fn(torch.randn(2), lst, d, box) for _ in range(4)]
        states.append((outs, lst, d, box.n, box.items, box.latest, COUNTER))
    assert_same(states[0], states[1])
    assert len(rec.graphs) == 1  # one entry for all calls: no guard on lengths or counts


def test_nonlocal_and_new_objects():
    def make():
        total = torch.zeros(2)
        calls = 0

        def step(x):
            nonlocal total, calls
            total = total + x
            calls += 1
            return Box2(total * 2, calls)
        return step

    step_plain, step_c = make(), make()
    cf = jf.compile(step_c, backend="eager", fullgraph=True)
    for _ in range(3):
        x = torch.randn(2)
        a, b = step_plain(x), cf(x)
        assert_same(vars(a), vars(b))
    assert_same(step_plain.__closure__[1].cell_contents, step_c.__closure__[1].cell_contents)


class Box2:
    def __init__(self, value, count):
        self.value = value
        self.count = count


def test_tensor_mutation_across_breaks():
    def f(x):
        view = x[:2]
        x.add_(1)
        print("after add")
        view.mul_(2)  # alias of x, after the break
        return x.sum(), view
    run_both(f, torch.randn(4), calls=2)


@pytest.mark.reruns_ok
def test_exception_in_segment_keeps_eager_side_effects():
    def f(x, idx, log):
        log.append("before")
        y = x[idx]  # raises at run time for an index out of range
        log.append("after")
        return y
    x = torch.randn(3)
    log_e, log_c = [], []
    with pytest.raises(IndexError) as e1:
        f(x, torch.tensor([5]), log_e)
    cf = jf.compile(f, backend="eager")
    cf(x, torch.tensor([1]), [])  # compile with a valid index
    with pytest.raises(IndexError) as e2:
        cf(x, torch.tensor([5]), log_c)
    assert log_c == log_e == ["before"]
    assert e2.traceback[-1].lineno == e1.traceback[-1].lineno


def test_side_effects_no_recompile_training_step():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 4)
            self.steps = 0
            self.register_buffer("running", torch.zeros(4))

        def forward(self, x, losses):
            out = self.lin(x)
            loss = out.pow(2).mean()
            self.steps += 1
            self.running.mul_(0.9).add_(out.mean(0).detach(), alpha=0.1)
            losses.append(loss.detach())
            return loss

    a = Net()
    b = copy.deepcopy(a)
    rec = Recorder()
    cb = jf.compile(b, backend=rec)
    la, lb = [], []
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1)
    for _ in range(20):
        x = torch.randn(5, 8)
        for m, opt, losses in ((a, opt_a, la), (cb, opt_b, lb)):
            opt.zero_grad()
            m(x, losses).backward()
            opt.step()
    assert len(rec.graphs) == 1
    assert a.steps == b.steps == 20
    torch.testing.assert_close(torch.stack(la), torch.stack(lb))
    torch.testing.assert_close(a.running, b.running)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def test_training_step_with_print_and_loss_list(capsys):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    ref = copy.deepcopy(model)

    def make_step(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.05)
        losses = []

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(m(x), y)
            print(f"loss {loss.item():.6f}")
            loss.backward()
            opt.step()
            losses.append(loss.item())
            return loss
        return step, losses

    ref_step, ref_losses = make_step(ref)
    step, losses = make_step(model)
    rec = Recorder()
    cstep = jf.compile(step, backend=rec)
    batches = [(torch.randn(8, 6), torch.randint(0, 3, (8,))) for _ in range(5)]
    for x, y in batches:
        ref_step(x, y)
    eager_text = capsys.readouterr().out
    for x, y in batches:
        cstep(x, y)
    assert capsys.readouterr().out == eager_text
    assert losses == pytest.approx(ref_losses, rel=1e-5)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    # the forward and the loss are captured (not run natively)
    assert any(n.op == "call_function" and "linear" in str(n.target)
               for g in rec.graphs for n in g.graph.nodes)


def test_set_side_effects_replayed():
    def f(x, seen, tags):
        seen.add(3)
        seen.discard(1)
        tags.update({"a", "b"})
        return x + len(seen)
    rec = run_both(f, torch.zeros(1), {1, 2}, set(), calls=2)
    assert len(rec.graphs) == 1


def test_break_records_count_graphs_of_their_frame():
    def f(x):
        y = x * 2
        print("a")
        z = y + 1
        print("b")
        return z * 3
    report = jf.explain(f)(torch.ones(2))
    assert report.graph_count == 3 and report.break_count == 2
    assert [b.graph_count for b in report.breaks] == [3, 3]
    b = report.breaks[0]
    assert (b.id, b.lineno, b.source_line) == ("JF003", f.__code__.co_firstlineno + 2,
                                               'print("a")')
    assert "3 graphs in this frame" in str(report)


class _Layer(nn.Module):
    """A __call__ override using zero-argument super(), like transformers'
    gradient-checkpointing layers."""

    def __call__(self, *args, **kwargs):
        if kwargs.get("flag"):
            print("flagged")
        return super().__call__(*args, **kwargs)


class _Lin(_Layer):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x, flag=False):
        return self.lin(x)


def test_break_before_zero_argument_super_in_resume_function(capsys):
    m = _Lin()
    x = torch.randn(2, 3)

    def f(x):
        return m(x, flag=True) * 2
    run_both(f, x, calls=2)
    assert capsys.readouterr().out == "flagged\n" * 4


def test_hand_written_optimizer_step_is_captured():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    ref = copy.deepcopy(model)

    def make(m):
        @torch.no_grad()
        def sgd(lr):
            for p in m.parameters():
                p -= lr * p.grad
                p.grad = None

        def step(x, y, lr=0.1):
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            sgd(lr)
            return loss.detach()
        return step

    rec = Recorder()
    ref_step, step = make(ref), jf.compile(make(model), backend=rec)
    for _ in range(5):
        x, y = torch.randn(4, 8), torch.randint(0, 2, (4,))
        torch.testing.assert_close(step(x, y), ref_step(x, y))
        for p, q in zip(model.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q)
            assert p.grad is None and q.grad is None
    # forward, loss, backward and the whole update loop: one graph (the
    # backward written out in aten ops), whose updates write the parameters
    assert len(rec.graphs) == 1
    updates = [n for n in rec.graphs[0].graph.nodes if n.op == "call_function"
               and n.target is torch.ops.aten.sub_.Tensor]
    assert len(updates) == 4


def test_break_inside_autocast_region(capsys):
    def f(x, w):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = x @ w
            print("inside", y.dtype, torch.is_autocast_enabled("cpu"))
            z = y @ w
        return z.float() + 1, z.dtype, torch.is_autocast_enabled("cpu")
    rec = run_both(f, torch.randn(4, 4), torch.randn(4, 4), calls=2)
    assert capsys.readouterr().out == "inside torch.bfloat16 True\n" * 4
    assert not torch.is_autocast_enabled("cpu")
    assert 2 <= len(rec.graphs) <= 3


class _Recorder:
    """A user context manager: entered and exited natively around segments."""

    def __init__(self, log):
        self.log = log

    def __enter__(self):
        self.log.append("enter")
        return self

    def __exit__(self, *exc):
        self.log.append(f"exit {exc[0].__name__ if exc[0] else None}")
        return False


def test_user_context_managers_around_graph_segments():
    import contextlib

    @contextlib.contextmanager
    def tag(log, name):
        log.append("open " + name)
        yield name
        log.append("close " + name)

    def f(x, log):
        y = x * 2
        with _Recorder(log):
            z = y + 1
            with tag(log, "inner") as n:
                w = z * 3
        return w - 1, n

    def g(x, log):
        with _Recorder(log):
            x = x + 1
            raise ValueError("boom")

    rec = run_both(f, torch.ones(2), [], calls=2)
    assert len(rec.graphs) == 1  # both managers' Python code is traced
    log_e, log_c = [], []
    with pytest.raises(ValueError):
        g(torch.ones(1), log_e)
    with pytest.raises(ValueError):
        jf.compile(g, backend="eager")(torch.ones(1), log_c)
    assert log_c == log_e == ["enter", "exit ValueError"]


def test_nonlocal_writes_replayed_without_falling_back(monkeypatch):
    from janus_frame.frontend import rebuild

    made = []

    def counting_make_function(*a):
        made.append(a)  # the native rerun path builds a function: must not run
        return counting_make_function.__wrapped__(*a)

    import janus_frame.frontend.resume as resume_mod
    counting_make_function.__wrapped__ = resume_mod.make_function
    monkeypatch.setattr(rebuild, "make_function", counting_make_function)

    def make():
        total = torch.zeros(2)
        calls = 0

        def step(x):
            nonlocal total, calls
            total = total + x
            calls += 1
            return total * 2
        return step

    s = make()
    cf = jf.compile(s, backend="eager", fullgraph=True)
    for _ in range(3):
        cf(torch.ones(2))
    assert s.__closure__[0].cell_contents == 3
    torch.testing.assert_close(s.__closure__[1].cell_contents, torch.full((2,), 3.0))
    assert made == []


def test_break_in_frame_with_closure_cells(capsys):
    def f(x, k):
        scale = k * 2
        g = lambda t: t * scale  # noqa: E731 - `scale` becomes a cell variable
        y = g(x)
        print("between")
        scale = scale + 1  # written after the break: the closure must see it
        return g(y), scale

    def h(x):
        acc = x + 1
        print("p")

        def inner():
            return acc * 2
        acc = acc + 1
        return inner()

    rec = run_both(f, torch.ones(2), 3, calls=2)
    assert len(rec.graphs) >= 2  # resumed after the break, not run natively whole
    rec = run_both(h, torch.ones(2), calls=2)
    assert len(rec.graphs) == 2


def test_closure_cell_shared_with_inlined_function():
    def make():
        count = torch.zeros(1)

        def bump():
            nonlocal count
            count = count + 1

        def step(x):
            bump()  # inlined: writes the cell `step` reads next
            return x * count
        return step

    s_e, s_c = make(), make()
    cf = jf.compile(s_c, backend="eager", fullgraph=True)
    for _ in range(3):
        torch.testing.assert_close(cf(torch.ones(2)), s_e(torch.ones(2)))


def test_printed_values_are_not_specialised(capsys):
    def f(x):
        y = (x * 2).sum()
        v = y.item()  # a new float every call
        print(f"value {v:.3f} ({v!r})")
        return x + 1

    rec = Recorder()
    cf = jf.compile(f, backend=rec)
    for i in range(12):
        x = torch.full((2,), float(i))
        torch.testing.assert_close(cf(x), f(x))
    out = capsys.readouterr().out.splitlines()
    assert out[0::2] == out[1::2]  # compiled and eager printed the same text
    assert jf.hook.stats.recompiles == 0  # the float was never guarded on


def test_values_read_through_items_are_taken_before_replayed_effects():
    # `x, w = args; args.clear()`: at the break, x and w are still needed,
    # but args[0] no longer exists once the clear is replayed
    def call(args):
        x, w = args
        args.clear()
        y = x * 2
        n = len(y.tolist())  # a break with x live after it
        return F.linear(y, w) + x.sum() + n

    rec = run_both(call, [torch.randn(3, 4), torch.randn(2, 4)], calls=2)
    assert len(rec.graphs) == 2


def test_segment_continuing_in_itself_stays_compiled():
    # A loop body segment whose continuation is itself (the loop over a
    # dynamic size); with a closure cell it hands over through the
    # trampoline every iteration, and every iteration must run compiled
    runs = []

    def backend(gm, example_inputs):
        def run(*args):
            runs.append(1)
            return gm.forward(*args)
        return run

    def f(x):
        k = 0.5
        scale = lambda t: t * k  # noqa: E731 - makes k a cell
        acc = x.new_zeros(x.shape[1])
        for i in range(x.shape[0]):
            acc = torch.tanh(scale(acc) + x[i])
        return acc

    cf = jf.compile(f, backend=backend)
    for n in (3, 5):
        cf(torch.randn(n, 4))
    runs.clear()
    x = torch.randn(30, 4)
    torch.testing.assert_close(cf(x), f(x))
    assert len(runs) >= 30, len(runs)


def test_native_copy_of_a_code_is_not_merged_with_it():
    # generated functions hold both a code (to continue in it) and its
    # natively-run copy (to rerun on failure); equal constants are merged by
    # the assembler, so the copy must differ by value
    from janus_frame.frontend.replacement import _native_code

    def g(a, b):
        return a + b

    native = _native_code(g.__code__)
    assert native is not g.__code__ and native != g.__code__
    assert native.co_name == g.__code__.co_name and native.co_filename == g.__code__.co_filename


class _Doubled(dict):
    def __init__(self, **kw):
        super().__init__({k: v * 2 for k, v in kw.items()})


def test_dict_subclass_with_own_init_and_comprehension_frames():
    # a dict subclass whose __init__ stores something else than its
    # arguments is built natively; its __init__'s dict comprehension then
    # runs as its own frame over a run-time iterator, each item added in a
    # segment of its own to the dict handed over between them
    def f(x):
        d = _Doubled(a=x, b=x + 1)
        return d["a"] + d["b"]

    rec = run_both(f, torch.ones(3), calls=2)
    assert rec.graphs

    if sys.version_info >= (3, 12):
        return  # 3.12 inlines the comprehension into __init__ (PEP 709): no frame of its own
    import types
    comps = [c for c in _Doubled.__init__.__code__.co_consts if isinstance(c, types.CodeType)]
    comp = types.FunctionType(comps[0], globals())
    cf = jf.compile(comp, backend=Recorder())
    x = torch.ones(2)
    assert_same(cf(iter({"a": x, "b": x}.items())), comp(iter({"a": x, "b": x}.items())))


def test_break_inside_a_torch_function_mode_keeps_the_mode_stack(jit):
    """A user's TorchFunctionMode decides what every torch call does: the
    code under it runs natively (not traced with the mode bypassed), and the
    mode stack stays balanced across the break at the ``with``."""
    from torch.overrides import TorchFunctionMode

    seen = []

    class Double(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(getattr(func, "__name__", str(func)))
            out = func(*args, **(kwargs or {}))
            return out * 2 if func is torch.add else out

    def f(x):
        y = torch.tanh(x)
        with Double():
            z = torch.add(y, 1)
            print("inside")
            w = torch.add(z, 1)
        return torch.add(w, 1)

    x = torch.ones(3)
    expected = f(x)
    n_eager = len(seen)
    seen.clear()
    cf = jf.compile(f, backend="eager")
    for _ in range(2):
        torch.testing.assert_close(cf(x), expected)
        assert torch._C._len_torch_function_stack() == 0
    assert len(seen) == 2 * n_eager  # the mode saw every call, as in eager


@pytest.mark.parametrize("kind", ["function", "dispatch"])
def test_mode_handlers_and_what_they_call_run_natively(kind):
    """A mode's handler runs inside an operator's dispatch, with the mode
    popped: it is never compiled (with the fusing backend its graph was
    traced under that dispatch state, failed, and warned), nor is what it
    calls; the compiled function under the mode sees what eager sees."""
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    def note(log, func):
        log.append(str(func))

    class LogF(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.log = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            note(self.log, func)
            out = func(*args, **(kwargs or {}))
            return out + 1 if func is torch.Tensor.mul else out

    class LogD(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.log = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            note(self.log, func)
            return func(*args, **(kwargs or {}))

    mode = LogF if kind == "function" else LogD

    def f(x):
        return (x * 2).sin()

    x = torch.randn(3)
    with mode() as m:
        expected = f(x)
    jf.reset()
    cf = jf.compile(f)  # the fusing backend
    torch.testing.assert_close(cf(x), f(x))
    for _ in range(2):
        with mode() as m2:
            got = cf(x)
        torch.testing.assert_close(got, expected)
        assert m2.log == m.log
    from janus_frame.cache import code_state
    for fn in (mode.__torch_function__ if kind == "function" else mode.__torch_dispatch__, note):
        st = code_state(fn.__code__, create=False)
        assert st is None or not st.entries, fn.__name__


@pytest.mark.parametrize("where", ["argument", "native_result", "attribute"])
def test_builtin_method_of_an_object_runs_on_this_calls_object(where):
    """A C method of an opaque object (ndarray.sum, bytearray.count, ...)
    read while tracing and called at a break, or handed to a resume
    function, is bound to the object of each call, never to the first
    call's object."""
    import numpy as np

    class Holder:
        pass

    def f(x, a, h, k):
        y = x.relu()
        if where == "argument":
            m = a.sum
        elif where == "native_result":
            m = x.numpy().max
        else:
            m = h.buf.count
        print("break")
        return y * float(m() if where != "attribute" else m(1)) + k

    cf = jf.compile(f, backend=Recorder())
    for k in range(3):
        x = torch.randn(4)
        a = np.arange(k + 2, dtype=np.float32)
        h = Holder()
        h.buf = bytearray([1] * (k + 1))
        assert_same(cf(x, a, h, k), f(x, a, h, k))


def _trace_counts():
    from janus_frame.cache import stats

    return stats.traces, stats.frames_compiled, stats.break_retraces


def _counted(fn, *args, calls=1):
    """``run_both`` over ``fn``: (traces, frames compiled, breaks traced
    again) during it, and the recorder."""
    t0, c0, r0 = _trace_counts()
    rec = run_both(fn, *args, calls=calls)
    t1, c1, r1 = _trace_counts()
    return (t1 - t0, c1 - c0, r1 - r0), rec


def test_a_break_in_the_frame_is_traced_once(capsys):
    # the print's CALL records nothing before it breaks: the first trace's
    # record up to it is the segment; one trace per compiled frame (the
    # frame and its resume function)
    def f(x, n):
        y = torch.sin(x) * n
        print("y computed")
        return torch.cos(y) + n
    (traces, compiled, retraced), rec = _counted(f, torch.randn(4), 3, calls=2)
    assert capsys.readouterr().out.splitlines() == ["y computed"] * 4
    assert len(rec.graphs) == 2 and compiled == 2
    assert traces == compiled and retraced == 0


def test_breaks_of_several_kinds_are_traced_once(capsys):
    # a data-dependent .item() (JF004), a print (JF003), a tensor branch (JF005)
    def f(x):
        a = x + 1
        v = a.sum().item()
        print("v", round(v, 3))
        if a.sum() > 0:
            a = a * 2
        return a - v
    (traces, compiled, retraced), _ = _counted(f, torch.ones(3), calls=2)
    assert capsys.readouterr().out.splitlines() == ["v 6.0"] * 4
    assert compiled >= 3 and traces == compiled and retraced == 0


def test_a_break_after_an_inlined_callee_recorded_is_traced_again(capsys):
    # the helper records ``x * 3`` before it breaks: the state before the
    # outer CALL is not the first trace's, so the outer frame is traced
    # again up to the call (once); the helper, run natively, breaks at its
    # own print and is traced once
    def outer(x):
        a = torch.sin(x)
        b = helper_with_break(a)
        return torch.cos(b)
    (traces, compiled, retraced), rec = _counted(outer, torch.randn(3))
    assert capsys.readouterr().out.splitlines() == ["inside helper"] * 2
    assert len(rec.graphs) == 4 and retraced == 1 and traces == compiled + 1


class _Shrink(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.limit = 1.0

    def forward(self, h):
        while h.norm() > self.limit:  # a segment looping in place, guarded on self.limit
            h = h * 0.5
        return self.lin(h)


def test_loop_guard_with_class_attribute_facts_runs_as_a_plain_call():
    # the loop's guard (a class-attribute fact holds a list constant, so its
    # code cannot be hashed) is called by the replacement for the next
    # iteration: the frame hook must neither hash nor compile it
    m = _Shrink()

    def step(x):
        return m(x).sum()
    for i in range(4):
        run_both(step, torch.randn(3, 4) * 10 ** (i % 3))
