"""Differential opcode tests: each first asserts its opcodes are in the
function's bytecode, then compares compiled and plain runs and the number of
graphs (one: the frame is captured whole)."""
from __future__ import annotations

import math
import operator
import sys

import pytest
import torch

G_SCALE = 3.0
G_TENSOR_FN = torch.tanh


def test_locals_globals_builtins(jit):
    def f(x):
        y = x * G_SCALE
        z = G_TENSOR_FN(y)
        n = len(x.shape)
        return z + n
    jit(f, torch.randn(4), opcodes={"LOAD_FAST", "STORE_FAST", "LOAD_GLOBAL", "LOAD_ATTR"})


def test_closure_cells_and_free_vars(jit):
    scale = 2.0

    def f(x):
        acc = x + 1  # a cell variable: captured below

        def inner(t):
            return t * scale + acc

        acc = acc * 2
        return inner(x)
    jit(f, torch.randn(3), opcodes={"LOAD_DEREF", "STORE_DEREF", "MAKE_CELL", "LOAD_CLOSURE",
                                    "COPY_FREE_VARS", "MAKE_FUNCTION"})


def test_argument_that_is_a_cell(jit):
    def f(x, k):
        g = lambda t: t + x * k  # noqa: E731
        return g(x)
    jit(f, torch.randn(3), 2, opcodes={"MAKE_CELL", "LOAD_DEREF"})


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "//", "%", "**", "@", "&", "|", "^",
                                "<<", ">>"])
def test_binary_op_tensor_and_const(jit, op):
    if op in ("&", "|", "^", "<<", ">>"):
        a, b = torch.randint(0, 8, (4, 4)), torch.randint(0, 3, (4, 4))
    elif op == "@":
        a, b = torch.randn(4, 4), torch.randn(4, 4)
    else:
        a, b = torch.randn(4, 4) + 3, torch.randn(4, 4).abs() + 1
    ns = {}
    const_part = "k @ 2" if op == "@" else f"k {op} 2"
    if op == "@":
        const_part = "k"
    exec(f"def f(a, b, k):\n    return a {op} b, ({const_part})", ns)
    jit(ns["f"], a, b, 5, opcodes={"BINARY_OP"})


@pytest.mark.parametrize("op", ["+=", "-=", "*=", "/="])
def test_binary_op_inplace_on_input(jit, op):
    ns = {}
    exec(f"def f(a, b):\n    a {op} b\n    return a", ns)
    jit(ns["f"], torch.randn(3, 3), torch.randn(3).abs() + 1, opcodes={"BINARY_OP"})


def test_inplace_on_python_values(jit):
    def f(x, n):
        n += 2
        n *= 3
        lst = [x]
        lst += [x * 2]
        return lst[1] * n
    jit(f, torch.randn(3), 4, opcodes={"BINARY_OP"})


def test_compare_is_in_not_unary(jit):
    def f(x, k, opt=None):
        masks = (x < 0, x <= 0, x == 0, x != 0, x > 0, x >= 0)
        flags = (k < 3, k is None, opt is None, k in (1, 2, 3), "a" not in {"b": 1}, not k)
        return masks, flags, -x, +x, ~(x > 0)
    jit(f, torch.randn(5), 2, opcodes={"COMPARE_OP", "IS_OP", "CONTAINS_OP", "UNARY_NOT",
                                       "UNARY_NEGATIVE", "UNARY_POSITIVE", "UNARY_INVERT"})


def test_tensor_basic_indexing_and_slicing(jit):
    def f(x):
        return x[0], x[1:3], x[:, ::2], x[..., -1], x[None, 1], x[1:, None, :2]
    jit(f, torch.randn(4, 5), opcodes={"BINARY_SUBSCR", "BUILD_SLICE"})


def test_tensor_advanced_and_mask_indexing(jit):
    def f(x, idx, mask):
        return x[idx], x[idx, 1:], x[mask], (x[mask] * 2).sum()
    x = torch.randn(5, 3)
    jit(f, x, torch.tensor([0, 2, 2]), x > 0, opcodes={"BINARY_SUBSCR"})


def test_container_indexing(jit):
    def f(xs, d, t):
        return xs[0] + xs[-1] + d["w"] * t[1], xs[1:], d.get("missing", 3)
    jit(f, [torch.randn(2), torch.randn(2), torch.randn(2)], {"w": torch.randn(2)}, (1, 2.5),
        opcodes={"BINARY_SUBSCR"})


def test_store_subscr_tensor_and_locals(jit):
    def f(x, v):
        x[0] = v
        x[1:, 0] = 0.5
        d = {}
        d["a"] = v * 2
        lst = [1, 2, 3]
        lst[1] = 5
        del lst[0]
        return x, d, lst
    jit(f, torch.randn(3, 3), torch.randn(3), opcodes={"STORE_SUBSCR", "DELETE_SUBSCR"})


def test_build_containers_and_fstrings(jit):
    def f(x, name):
        t = (x, 1)
        lst = [x, x + 1]
        s = {1, 2, 2}
        d = {"a": x, name: 3}
        label = f"layer-{name}-{len(lst):03d}"
        sl = slice(1, None)
        return t, lst, len(s), d, label, x[sl]
    jit(f, torch.randn(3), "k", opcodes={"BUILD_TUPLE", "BUILD_LIST", "BUILD_SET", "BUILD_MAP",
                                         "FORMAT_VALUE", "BUILD_STRING"})


def test_unpacking(jit):
    def f(x, pair):
        a, b = pair
        first, *rest = [x, x * 2, x * 3]
        *init, last = (1, 2, 3)
        (p, q), r = (x, 2), 3
        return a * b + first + sum(rest) * last * p * q * r, init
    jit(f, torch.randn(3), (2, torch.randn(3)), opcodes={"UNPACK_SEQUENCE", "UNPACK_EX"})


def test_comprehensions(jit):
    def f(xs):
        squares = [x * x for x in xs]
        d = {i: x for i, x in enumerate(xs) if i != 1}
        s = {len(x.shape) for x in xs}
        return squares, d, s
    # 3.11 runs each comprehension as a function of its own; 3.12 inlines
    # them into the frame (PEP 709), saving and restoring the loop variable
    inlined = {"MAKE_FUNCTION"} if sys.version_info < (3, 12) else {"LOAD_FAST_AND_CLEAR",
                                                                     "END_FOR"}
    jit(f, [torch.randn(2), torch.randn(2), torch.randn(2)],
        opcodes={"LIST_APPEND", "MAP_ADD", "SET_ADD"} | inlined)


def test_lambda_and_nested_closure(jit):
    def f(x):
        k = 3

        def outer(a):
            def inner(b):
                return a * b + k
            return inner
        g = outer(x)
        h = lambda t, s=2: t ** s  # noqa: E731
        return g(x), h(x), h(x, 3)
    jit(f, torch.randn(3), opcodes={"MAKE_FUNCTION", "LOAD_CLOSURE"})


def test_call_forms(jit):
    def g(a, b=1, *args, c, d=4, **kw):
        return a * b + sum(args) + c * d + sum(kw.values())

    def f(x):
        args = (x, 2)
        kw = {"c": x, "e": 5}
        return g(x, c=3), g(*args, c=x), g(x, 1, 2, 3, c=1, d=x, z=7), g(*args, **kw)
    jit(f, torch.randn(3), opcodes={"KW_NAMES", "CALL", "PRECALL", "CALL_FUNCTION_EX",
                                    "DICT_MERGE"})


def test_math_and_builtins_on_constants(jit):
    def f(x, n):
        k = math.sqrt(n) + math.floor(2.7) + abs(-3) + int(2.9) + float(n) + max(n, 3) + \
            min([4, n]) + round(2.5)
        ok = isinstance(x, torch.Tensor) and isinstance(n, int) and callable(f)
        return x * k, ok, divmod(n, 3), operator.add(n, 1)
    jit(f, torch.randn(3), 4)
