"""The opcode-handler registry: every opcode of the running Python has a
handler or is listed as a graph break, registrations are checked (opcode
names per version, duplicates, handler names), what a frame can resume after
is exactly what has a native step, and under the checks flag (on for the test
suite) a handler that leaves the stack unlike ``dis.stack_effect`` is caught."""
from __future__ import annotations

import dis

import pytest
import torch

import janus_frame as jf
from janus_frame.frontend import handover
from janus_frame.frontend.breaks import REGISTRY
from janus_frame.frontend.handlers import HANDLERS, NATIVE_STEPS, registry
from janus_frame.frontend.handlers.registry import handler, native_step, unsupported
from janus_frame.frontend.values import NULL


def test_every_opcode_is_handled_or_listed_as_a_break():
    handled = set(HANDLERS) - set(registry.UNSUPPORTED)
    assert not registry.UNLISTED, f"opcodes neither handled nor listed: {registry.UNLISTED}"
    assert handled | set(registry.UNSUPPORTED) == set(dis.opmap)
    assert not handled & set(registry.UNSUPPORTED)
    for name, bid in registry.UNSUPPORTED.items():
        assert bid in REGISTRY, (name, bid)


def test_unhandled_opcodes_of_311():
    """The list, for the reader (3.11): what runs natively when reached."""
    if registry.OPNAMES[(3, 11)] != frozenset(dis.opmap):
        pytest.skip("lists the opcodes of Python 3.11")
    by_id: dict[str, set[str]] = {}
    for name, bid in registry.UNSUPPORTED.items():
        by_id.setdefault(bid, set()).add(name)
    assert by_id == {
        "JF001": {"LOAD_BUILD_CLASS", "SETUP_ANNOTATIONS", "LOAD_NAME", "STORE_NAME",
                  "DELETE_NAME", "GET_LEN", "MATCH_CLASS", "MATCH_KEYS", "MATCH_MAPPING",
                  "MATCH_SEQUENCE", "IMPORT_STAR", "PRINT_EXPR", "CACHE", "EXTENDED_ARG"},
        "JF012": {"CHECK_EG_MATCH", "PREP_RERAISE_STAR"},
        "JF013": {"GET_AWAITABLE", "GET_AITER", "GET_ANEXT", "END_ASYNC_FOR",
                  "BEFORE_ASYNC_WITH", "ASYNC_GEN_WRAP"},
    }


def test_handlers_are_named_after_their_opcode():
    for name, fn in HANDLERS.items():
        assert fn.__name__ == name
    for name, fn in NATIVE_STEPS.items():
        assert fn.__name__ == f"{name}_native"
        assert name in HANDLERS and name not in registry.UNSUPPORTED


def test_resumable_opcodes_are_those_with_a_native_step():
    assert handover._RESUMABLE == frozenset(NATIVE_STEPS)
    if registry.OPNAMES[(3, 11)] == frozenset(dis.opmap):
        assert handover._RESUMABLE == {
            "CALL", "CALL_FUNCTION_EX", "LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR", "DELETE_ATTR",
            "STORE_SUBSCR", "DELETE_SUBSCR", "BINARY_SUBSCR", "BINARY_OP", "COMPARE_OP",
            "UNARY_NOT", "GET_ITER", "FOR_ITER", "POP_JUMP_FORWARD_IF_TRUE",
            "POP_JUMP_FORWARD_IF_FALSE", "POP_JUMP_BACKWARD_IF_TRUE",
            "POP_JUMP_BACKWARD_IF_FALSE", "JUMP_IF_TRUE_OR_POP", "JUMP_IF_FALSE_OR_POP",
            "BEFORE_WITH", "RAISE_VARARGS"}


def _fn(name):
    def f(tx, ins):
        pass
    f.__name__ = name
    return f


def test_registration_rejects_misspelled_and_duplicate_names():
    with pytest.raises(ValueError, match="not an opcode"):
        handler("LOAD_FASTT")(_fn("LOAD_FASTT"))
    with pytest.raises(ValueError, match="not an opcode"):
        handler("LOAD_ATTRR", since=(3, 12))(_fn("LOAD_ATTRR"))  # misspelled, for 3.12 on
    with pytest.raises(ValueError, match="registered twice"):
        handler("NOP")(_fn("NOP"))
    with pytest.raises(ValueError, match="registered twice"):
        native_step("CALL")(_fn("CALL_native"))
    with pytest.raises(ValueError, match="registered twice"):
        unsupported("JF001", "LOAD_NAME")
    with pytest.raises(ValueError, match="named"):
        handler("NOP")(_fn("nop"))
    with pytest.raises(ValueError, match="unregistered graph-break id"):
        unsupported("JF999", "LOAD_NAME")


def test_registration_is_gated_by_python_version():
    before = dict(HANDLERS)
    running = registry._RUNNING
    other = (3, 13) if running < (3, 13) else (3, 11)
    only_other = sorted(registry.OPNAMES[other] - registry.OPNAMES[running])[0]
    # an opcode of another version: checked, then skipped here
    if other > running:
        handler(only_other, since=other)(_fn(only_other))
    else:
        handler(only_other, until=(3, 12))(_fn(only_other))
    assert HANDLERS == before
    # registered for every version, but the running one has no such opcode
    with pytest.raises(ValueError, match="running Python"):
        handler(only_other)(_fn(only_other))
    assert HANDLERS == before


def test_stack_effect_is_checked_under_the_checks_flag(monkeypatch):
    def RESUME(tx, ins):
        tx.stack.append(NULL)  # a handler that leaves something behind
    monkeypatch.setitem(HANDLERS, "RESUME", RESUME)

    def f(x):
        return x + 1
    assert "RESUME" in {i.opname for i in dis.get_instructions(f)}
    with pytest.raises(AssertionError, match="RESUME at instruction 0 of .*f changed the "
                                             "stack by 1, not 0"):
        jf.compile(f, backend="eager", fullgraph=True)(torch.randn(3))
    jf.reset()
    x = torch.randn(3)  # the flag off: no check (the leftover is harmless here)
    torch.testing.assert_close(jf.compile(f, backend="eager", fullgraph=True,
                                          checks=False)(x), x + 1)


def test_declared_stack_effects_add_up_to_the_call():
    """PRECALL and CALL split a call's effect on the stack differently from
    3.11's accounting, but together they agree with it."""
    if registry.OPNAMES[(3, 11)] != frozenset(dis.opmap):
        pytest.skip("3.11's calling sequence")

    class Ins:
        arg = 3
    declared = registry.STACK_EFFECTS["PRECALL"](Ins) + registry.STACK_EFFECTS["CALL"](Ins)
    assert declared == dis.stack_effect(dis.opmap["PRECALL"], 3) + \
        dis.stack_effect(dis.opmap["CALL"], 3)
