"""Operations whose bytecode differs between Python 3.11, 3.12 and 3.13,
run differentially on each: inlined comprehensions (3.12, PEP 709) and the
locals they save, zero- and two-argument ``super`` (3.12's LOAD_SUPER_ATTR),
slices (BINARY_SLICE/STORE_SLICE), keyword calls (3.13's CALL_KW), function
attributes (3.13's SET_FUNCTION_ATTRIBUTE), f-strings (3.13's CONVERT_VALUE
and FORMAT_*), truth (3.13's TO_BOOL and COMPARE_OP's bool form),
intrinsics, and graph breaks at each (resume code emitted for the running
version). Each names the opcodes it must contain on the running version."""
from __future__ import annotations

import sys

import pytest
import torch

import janus_frame as jf
from janus_frame.frontend.handlers import registry
from jfutil import Recorder, assert_same

PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)


def _ops(*names_by_version):
    """The opcodes of the running version: (since, names) pairs, the last
    one that applies wins."""
    out = set()
    for since, names in names_by_version:
        if sys.version_info[:2] >= since:
            out = set(names)
    return out


def test_opmap_coverage_on_this_version():
    """Real opcodes of the running Python (below 256, not instrumented, not
    the interpreter's internal ones): each handled or a registered break,
    and nothing registered for a name this version lacks."""
    import dis
    internal = {"CACHE", "RESERVED", "INTERPRETER_EXIT", "ENTER_EXECUTOR", "EXIT_INIT_CHECK"}
    real = {n for n, op in dis.opmap.items()
            if op < 256 and not n.startswith("INSTRUMENTED_") and n not in internal}
    handled = set(registry.HANDLERS) - set(registry.UNSUPPORTED)
    assert not registry.UNLISTED
    assert real <= handled | set(registry.UNSUPPORTED)
    assert set(registry.HANDLERS) <= set(dis.opmap)
    assert set(registry.NATIVE_STEPS) <= handled


def test_comprehension_restores_the_variable_it_shadows(jit):
    def f(xs, x):
        a = [x * 2 for x in xs]
        b = {x: x + 1 for x in range(3)}
        return a, b, x  # the argument, not the comprehension's last item
    jit(f, [torch.randn(2), torch.randn(2)], torch.ones(2),
        opcodes=_ops(((3, 11), {"MAKE_FUNCTION"}), ((3, 12), {"LOAD_FAST_AND_CLEAR", "SWAP"})))


def test_comprehension_over_an_unbound_name_leaves_it_unbound():
    def f(xs):
        ys = [y * 2 for y in xs]
        try:
            return ys, y  # noqa: F821 - unbound after the comprehension, in every version
        except NameError:
            return ys, None
    cf = jf.compile(f, backend=Recorder())
    xs = [torch.randn(2), torch.randn(2)]
    assert_same(cf(xs), f(xs))


def test_graph_break_inside_a_comprehension():
    def f(xs, scale):
        out = [torch.sin(x) * scale for x in xs if print("item") is None]
        return torch.stack(out).sum()
    cf = jf.compile(f, backend=Recorder())
    xs = [torch.randn(3) for _ in range(3)]
    for _ in range(2):
        assert_same(cf(xs, 2.0), f(xs, 2.0))


class _Base(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.lin(x)

    def scale(self, x, k=2):
        return x * k


class _Child(_Base):
    def forward(self, x):
        y = super().forward(x) + super(_Child, self).scale(x, k=3)
        scale = super().scale  # the attribute form (no method call)
        return scale(y)


def test_zero_and_two_argument_super(jit):
    m = _Child()
    ops = _ops(((3, 11), {"LOAD_GLOBAL"}), ((3, 12), {"LOAD_SUPER_ATTR"}))
    assert not ops - {i.opname for i in __import__("dis").get_instructions(_Child.forward)}
    x = torch.randn(2, 3)
    cf = jf.compile(m, backend=Recorder(), fullgraph=True)
    torch.testing.assert_close(cf(x), m(x))


def test_slices_load_and_store(jit):
    def f(x, lst):
        x = x.clone()
        x[1:3] = x[0:2] * 2
        lst[1:2] = [x[2:]]
        return x[1:], lst[:2], x[:, 1:2]
    jit(f, torch.randn(4, 3), [1, 2, 3],
        opcodes=_ops(((3, 11), {"BUILD_SLICE"}), ((3, 12), {"BINARY_SLICE", "STORE_SLICE"})))


def test_keyword_calls_and_function_attributes(jit):
    def f(x, k):
        def g(a, b=2, *, c=3):
            return a * b + c + k
        return g(x, c=1), g(x, b=x), g(a=x)
    jit(f, torch.randn(3), 4,
        opcodes=_ops(((3, 11), {"KW_NAMES", "MAKE_FUNCTION"}),
                     ((3, 13), {"CALL_KW", "SET_FUNCTION_ATTRIBUTE"})))


def test_fstrings_with_conversions_and_specs(jit):
    def f(x, n, name):
        s = f"{name!r}:{n:>4}:{n!s:<3}:{name}"
        return x * len(s), s
    jit(f, torch.randn(2), 7, "ab",
        opcodes=_ops(((3, 11), {"FORMAT_VALUE"}),
                     ((3, 13), {"CONVERT_VALUE", "FORMAT_SIMPLE", "FORMAT_WITH_SPEC"})))


def test_truth_and_negation(jit):
    def f(x, xs, n):
        a = not xs
        b = n > 2 and bool(xs)
        c = xs or [n]
        if not n < 3:
            x = x + 1
        return x, a, b, c
    jit(f, torch.randn(2), [1], 5,
        opcodes=_ops(((3, 11), {"UNARY_NOT"}), ((3, 13), {"TO_BOOL", "UNARY_NOT"})))


def test_intrinsics_positive_and_list_to_tuple(jit):
    def f(x, a):
        return +x, tuple([*a, x]), (*a, 1)
    jit(f, torch.randn(2), [1, 2],
        opcodes=_ops(((3, 11), {"UNARY_POSITIVE", "LIST_TO_TUPLE"}),
                     ((3, 12), {"CALL_INTRINSIC_1"})))


@pytest.mark.parametrize("where", ["call", "attr", "compare"])
def test_break_then_resume_per_version(where):
    """A break at a call, a method load and a comparison: the native step
    lays out the stack the running version expects (NULL slot, bool of a
    comparison feeding a jump) and the resume function continues there."""
    def at_call(x, k):
        y = x * 2
        print("k", k)
        return y + k
    def at_attr(x, k):  # noqa: E306
        y = x.relu()
        z = x.numpy().sum() + k  # .numpy() breaks
        return y * float(z)
    def at_compare(x, k):  # noqa: E306
        if x.sum().item() > k:
            return x + 1
        return x - 1
    fn = {"call": at_call, "attr": at_attr, "compare": at_compare}[where]
    cf = jf.compile(fn, backend=Recorder())
    for k in (0, 1, 100):
        x = torch.randn(4)
        assert_same(cf(x, k), fn(x, k))


def test_argument_cells_across_a_break():
    """3.13 loads an argument's cell by the argument's name (LOAD_FAST of
    the slot MAKE_CELL turned into a cell): after a break that slot is a
    free variable of the resume function."""
    def f(x, n):
        print("break")
        def g():
            return x * n
        return g() + x
    cf = jf.compile(f, backend=Recorder())
    x = torch.randn(3)
    assert_same(cf(x, 2), f(x, 2))


def test_for_loop_break_and_exhaustion():
    """FOR_ITER run natively: its exhausted side continues at the loop's
    end with the stack 3.12's END_FOR expects (3.11: the iterator popped)."""
    def f(xs):
        total = 0
        for x in xs:
            total = total + x
            print("step")
        return total * 2
    cf = jf.compile(f, backend=Recorder())
    xs = [torch.randn(2) for _ in range(3)]
    assert_same(cf(iter(xs)), f(iter(xs)))
    assert_same(cf(xs), f(xs))


def test_exception_leaving_a_generator(jit):
    """3.12+ wraps a generator's body in a handler (CALL_INTRINSIC_1
    STOPITERATION_ERROR, then RERAISE; 3.11 does this in C): an exception
    other than StopIteration goes through it unchanged, to the consumer's
    handler, in one graph."""
    def f(x):
        def gen(n):
            yield x * n
            raise KeyError(n)
        try:
            return list(gen(2))
        except KeyError as e:
            return [x, e.args[0]]
    jit(f, torch.randn(3),
        opcodes=_ops(((3, 11), {"YIELD_VALUE", "CHECK_EXC_MATCH"}),
                     ((3, 12), {"CALL_INTRINSIC_1", "RERAISE", "CHECK_EXC_MATCH"})))


def test_stopiteration_leaving_a_generator_is_a_runtime_error():
    """A StopIteration leaking out of a generator becomes Python's
    RuntimeError (left to Python, as on 3.11), chained to it."""
    def f(x, it):
        def gen():
            yield x + 1
            yield next(it)  # exhausted: StopIteration inside the generator
        try:
            return list(gen())
        except RuntimeError as e:
            return [x * 2, str(e), type(e.__cause__).__name__]
    cf = jf.compile(f, backend=Recorder())
    for _ in range(2):
        x = torch.randn(3)
        assert_same(cf(x, iter([])), f(x, iter([])))
