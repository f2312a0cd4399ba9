"""The opcode-handler registry.

In: handler functions registered with ``@handler("OPCODE")`` (one opcode
each, the function named after it), the native step of each opcode a graph
segment can end at, registered beside its handler with
``@native_step("OPCODE")`` (named ``OPCODE_native``), and the opcodes knowingly
left unhandled, listed with ``unsupported(break_id, "OPCODE", ...)``. Each
registration may be limited to Python versions: ``since=(3, 12)``,
``until=(3, 12)`` (it applies when since <= running version < until).
Out: ``HANDLERS`` (opcode name -> ``handler(tx, ins)``; once :func:`complete`
ran, every opcode of the running version has one, an unhandled one raising
its graph break),
``NATIVE_STEPS`` (opcode name -> ``step(tx, ins, emit) -> lines``; what is
resumable after a break), ``UNSUPPORTED`` (opcode name -> break ID),
:class:`FrameReturn`, and :func:`check_stack_effect` (the checks flag's
comparison of a handler's effect on the stack with ``dis.stack_effect``).

Registration fails on a name that is not an opcode of the Python versions
it applies to, and on a second registration of an opcode; a registration
for versions other than the running one is checked against the opcode names
of those versions and then skipped.
"""
from __future__ import annotations

import dis
import sys
from typing import Callable

from ..breaks import REGISTRY, GraphBreak

Handler = Callable  # (tx, ins) -> None
NativeStep = Callable  # (tx, ins, emit) -> list[str]

HANDLERS: dict[str, Handler] = {}
NATIVE_STEPS: dict[str, NativeStep] = {}
UNSUPPORTED: dict[str, str] = {}
UNLISTED: set[str] = set()
# opcode -> (ins -> stack effect), for handlers whose effect on the stack is
# knowingly not the one dis.stack_effect reports for their instruction
STACK_EFFECTS: dict[str, Callable] = {}

SUPPORTED_VERSIONS = ((3, 11), (3, 12), (3, 13))
_RUNNING = sys.version_info[:2]
# opcode names added and removed by each version, from the one before
_CHANGES = {
    (3, 12): (
        {"BINARY_SLICE", "CALL_INTRINSIC_1", "CALL_INTRINSIC_2", "CLEANUP_THROW", "END_FOR",
         "END_SEND", "INSTRUMENTED_CALL", "INSTRUMENTED_CALL_FUNCTION_EX",
         "INSTRUMENTED_END_FOR", "INSTRUMENTED_END_SEND", "INSTRUMENTED_FOR_ITER",
         "INSTRUMENTED_INSTRUCTION", "INSTRUMENTED_JUMP_BACKWARD", "INSTRUMENTED_JUMP_FORWARD",
         "INSTRUMENTED_LINE", "INSTRUMENTED_LOAD_SUPER_ATTR", "INSTRUMENTED_POP_JUMP_IF_FALSE",
         "INSTRUMENTED_POP_JUMP_IF_NONE", "INSTRUMENTED_POP_JUMP_IF_NOT_NONE",
         "INSTRUMENTED_POP_JUMP_IF_TRUE", "INSTRUMENTED_RESUME", "INSTRUMENTED_RETURN_CONST",
         "INSTRUMENTED_RETURN_VALUE", "INSTRUMENTED_YIELD_VALUE", "INTERPRETER_EXIT", "JUMP",
         "JUMP_NO_INTERRUPT", "LOAD_FAST_AND_CLEAR", "LOAD_FAST_CHECK",
         "LOAD_FROM_DICT_OR_DEREF", "LOAD_FROM_DICT_OR_GLOBALS", "LOAD_LOCALS",
         "LOAD_SUPER_ATTR", "LOAD_SUPER_METHOD", "LOAD_ZERO_SUPER_ATTR",
         "LOAD_ZERO_SUPER_METHOD", "POP_BLOCK", "POP_JUMP_IF_FALSE", "POP_JUMP_IF_NONE",
         "POP_JUMP_IF_NOT_NONE", "POP_JUMP_IF_TRUE", "RESERVED", "RETURN_CONST",
         "SETUP_CLEANUP", "SETUP_FINALLY", "SETUP_WITH", "STORE_FAST_MAYBE_NULL",
         "STORE_SLICE"},
        {"ASYNC_GEN_WRAP", "IMPORT_STAR", "JUMP_IF_FALSE_OR_POP", "JUMP_IF_TRUE_OR_POP",
         "LIST_TO_TUPLE", "LOAD_CLASSDEREF", "POP_JUMP_BACKWARD_IF_FALSE",
         "POP_JUMP_BACKWARD_IF_NONE", "POP_JUMP_BACKWARD_IF_NOT_NONE",
         "POP_JUMP_BACKWARD_IF_TRUE", "POP_JUMP_FORWARD_IF_FALSE", "POP_JUMP_FORWARD_IF_NONE",
         "POP_JUMP_FORWARD_IF_NOT_NONE", "POP_JUMP_FORWARD_IF_TRUE", "PRECALL",
         "PREP_RERAISE_STAR", "PRINT_EXPR", "UNARY_POSITIVE"},
    ),
    (3, 13): (
        {"CALL_KW", "CONVERT_VALUE", "ENTER_EXECUTOR", "EXIT_INIT_CHECK", "FORMAT_SIMPLE",
         "FORMAT_WITH_SPEC", "INSTRUMENTED_CALL_KW", "LOAD_FAST_LOAD_FAST",
         "SET_FUNCTION_ATTRIBUTE", "STORE_FAST_LOAD_FAST", "STORE_FAST_STORE_FAST", "TO_BOOL"},
        {"FORMAT_VALUE", "KW_NAMES"},
    ),
}


def _opnames_by_version() -> dict[tuple[int, int], frozenset[str]]:
    """The opcode names of every supported version, from the running
    version's ``dis.opmap`` and the changes between versions."""
    names = {_RUNNING: frozenset(dis.opmap)}
    i = SUPPORTED_VERSIONS.index(_RUNNING)
    for prev, v in zip(SUPPORTED_VERSIONS[i:], SUPPORTED_VERSIONS[i + 1:]):
        added, removed = _CHANGES[v]
        names[v] = (names[prev] - removed) | added
    for v, prev in zip(SUPPORTED_VERSIONS[i:0:-1], SUPPORTED_VERSIONS[i - 1::-1]):
        added, removed = _CHANGES[v]
        names[prev] = (names[v] - added) | removed
    return names


OPNAMES = _opnames_by_version()


def _applies(name: str, since, until) -> bool:
    """Does a registration of ``name`` for ``since <= version < until``
    apply to the running version? Fails on a name that none of those
    versions has."""
    versions = [v for v in SUPPORTED_VERSIONS
                if (since is None or v >= since) and (until is None or v < until)]
    if not any(name in OPNAMES[v] for v in versions):
        raise ValueError(f"{name} is not an opcode of Python "
                         f"{', '.join('%d.%d' % v for v in versions) or '(no version)'}")
    if _RUNNING not in versions:
        return False
    if name not in dis.opmap:
        raise ValueError(f"{name} is not an opcode of the running Python "
                         f"{'%d.%d' % _RUNNING}")
    return True


def _register(table: dict, name: str, fn, since, until) -> bool:
    if not _applies(name, since, until):
        return False
    if name in table:
        raise ValueError(f"{name} is registered twice")
    table[name] = fn
    return True


def handler(name: str, *, since=None, until=None, stack_effect: Callable | None = None):
    """Register the decorated ``fn(tx, ins)``, named ``name``, as the
    handler of opcode ``name``. ``stack_effect(ins)``: the handler's effect
    on the stack where it knowingly differs from ``dis.stack_effect``."""
    def deco(fn):
        if fn.__name__ != name:
            raise ValueError(f"the handler of {name} is named {fn.__name__}")
        if _register(HANDLERS, name, fn, since, until) and stack_effect is not None:
            STACK_EFFECTS[name] = stack_effect
        return fn
    return deco


def native_step(name: str, *, since=None, until=None):
    """Register the decorated ``fn(tx, ins, emit) -> lines``, named
    ``{name}_native``: how instruction ``name`` runs natively in the
    replacement when a graph segment ends at it (see handover._Emit for
    ``emit``). The opcodes with a native step are those a frame can resume
    after."""
    def deco(fn):
        if fn.__name__ != f"{name}_native":
            raise ValueError(f"the native step of {name} is named {fn.__name__}")
        _register(NATIVE_STEPS, name, fn, since, until)
        return fn
    return deco


def named(fn, name: str):
    """``fn`` under the name ``name`` (handlers made by a factory for a
    family of opcodes)."""
    fn.__name__ = fn.__qualname__ = name
    return fn


def unsupported(break_id: str, *names: str, detail: str = "{name}", since=None,
                until=None) -> None:
    """Opcodes left unhandled on purpose: each is a graph break ``break_id``
    (detail formatted with the opcode's ``name``)."""
    if break_id not in REGISTRY:
        raise ValueError(f"unregistered graph-break id {break_id}")
    for name in names:
        if _register(HANDLERS, name, _breaking(name, break_id, detail.format(name=name)),
                     since, until):
            UNSUPPORTED[name] = break_id


def complete() -> None:
    """Give every opcode of the running version that nothing registered a
    handler raising JF001, so that it is a graph break, never a crash; they
    are listed in ``UNLISTED`` (a test requires it empty)."""
    for name in dis.opmap:
        if name not in HANDLERS:
            UNLISTED.add(name)
            HANDLERS[name] = _breaking(name, "JF001", f"{name} is not supported")


def _breaking(name: str, break_id: str, message: str) -> Handler:
    def breaks(tx, ins):
        raise GraphBreak(break_id, message)
    return named(breaks, name)


class FrameReturn(Exception):
    """RETURN_VALUE ends the frame (its value is ``tx.return_value``)."""


def check_stack_effect(tx, ins, index: int, depth_before: int) -> None:
    """After instruction ``index`` ran: did its handler change the stack as
    ``dis.stack_effect`` says the instruction does? (Under the checks flag.)"""
    jump = None
    if ins.has_jump():
        target = tx.labels[ins.arg]
        if tx.ip == target:
            jump = True
        elif tx.ip == index + 1:
            jump = False
        else:
            return  # it ran further than itself (both sides of a predicated branch)
    declared = STACK_EFFECTS.get(ins.name)
    expected = declared(ins) if declared is not None else ins.stack_effect(jump)
    actual = len(tx.stack) - depth_before
    if actual != expected:
        raise AssertionError(f"{ins.name} at instruction {index} of {tx.code.co_qualname} "
                             f"changed the stack by {actual}, not {expected}")
