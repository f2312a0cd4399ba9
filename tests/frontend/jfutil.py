"""Helpers for the interpreter's differential tests (imported by conftest and tests)."""
from __future__ import annotations

import copy
import dis
import sys

import torch

import janus_frame as jf


class Recorder:
    """A torch.compile-protocol backend that keeps the graphs it is given."""

    def __init__(self):
        self.graphs = []

    def __call__(self, gm, example_inputs):
        self.graphs.append(gm)
        return gm.forward

    def ops(self, i=-1):
        return [n.target if n.op == "call_function" else n.target
                for n in self.graphs[i].graph.nodes if n.op in ("call_function", "call_method")]

    def placeholders(self, i=-1):
        return [n.name for n in self.graphs[i].graph.nodes if n.op == "placeholder"]


def opnames(fn) -> set[str]:
    code = getattr(fn, "__code__", None) or fn.forward.__code__
    names = set()
    stack = [code]
    while stack:  # nested code objects too (comprehensions, lambdas)
        c = stack.pop()
        for ins in dis.get_instructions(c):
            names.add(ins.opname)
        stack.extend(k for k in c.co_consts if hasattr(k, "co_code"))
    return names


# Tests name the 3.11 opcode they exercise. From 3.12 on some of those
# operations compile to other opcodes: the test then requires one of these
# (the operation is the same, so is the test).
_LATER_FORMS = {
    "UNARY_POSITIVE": {"CALL_INTRINSIC_1"}, "LIST_TO_TUPLE": {"CALL_INTRINSIC_1"},
    "PRECALL": {"CALL", "CALL_KW"}, "CALL": {"CALL", "CALL_KW"}, "KW_NAMES": {"KW_NAMES", "CALL_KW"}, "LOAD_METHOD": {"LOAD_ATTR"},
    "LOAD_CLOSURE": {"LOAD_CLOSURE", "LOAD_FAST"},
    "BUILD_SLICE": {"BUILD_SLICE", "BINARY_SLICE", "STORE_SLICE"},
    "JUMP_IF_TRUE_OR_POP": {"POP_JUMP_IF_TRUE"}, "JUMP_IF_FALSE_OR_POP": {"POP_JUMP_IF_FALSE"},
    "FORMAT_VALUE": {"FORMAT_VALUE", "FORMAT_SIMPLE", "FORMAT_WITH_SPEC"},
}
for _d in ("FORWARD", "BACKWARD"):
    for _c in ("TRUE", "FALSE", "NONE", "NOT_NONE"):
        _LATER_FORMS[f"POP_JUMP_{_d}_IF_{_c}"] = {f"POP_JUMP_IF_{_c}"}


def missing_opcodes(fn, opcodes) -> set[str]:
    """The opcodes (3.11 names) whose operation is not in ``fn``'s bytecode."""
    present = opnames(fn)
    if sys.version_info < (3, 12):
        return set(opcodes) - present
    return {op for op in opcodes if not _LATER_FORMS.get(op, {op}) & present}


def assert_same(a, b, path="result"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), f"{path}: {type(b)} is not a tensor"
        assert a.dtype == b.dtype and a.shape == b.shape, f"{path}: {a.dtype}{tuple(a.shape)} vs " \
            f"{b.dtype}{tuple(b.shape)}"
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, equal_nan=True, msg=path)
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b), f"{path}: {type(a)} vs {type(b)}"
        assert len(a) == len(b), f"{path}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b), f"{path}: keys {list(a)} vs {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif hasattr(a, "__dict__") and not isinstance(a, type) and not callable(a):
        assert type(a) is type(b), f"{path}: {type(a)} vs {type(b)}"
        assert_same(vars(a), vars(b), f"{path}.__dict__")
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} vs {b!r}"


class Jit:
    def __init__(self):
        self.backend = Recorder()

    def __call__(self, fn, *args, graphs=1, opcodes=(), calls=1, **kwargs):
        """Differential check of ``fn(*args, **kwargs)``; returns the compiled fn."""
        if opcodes:
            missing = missing_opcodes(fn, opcodes)
            assert not missing, f"opcodes {missing} not in the function's bytecode: the test " \
                f"would pass vacuously"
        cf = jf.compile(fn, backend=self.backend, fullgraph=True)
        for _ in range(calls):
            a1, k1 = copy.deepcopy((args, kwargs))
            a2, k2 = copy.deepcopy((args, kwargs))
            expected = fn(*a1, **k1)
            got = cf(*a2, **k2)
            assert_same(expected, got)
            assert_same(a1, a2, "inputs after the call")
            assert_same(k1, k2, "keyword inputs after the call")
        assert len(self.backend.graphs) == graphs, \
            f"expected {graphs} graph(s), got {len(self.backend.graphs)}"
        return cf
