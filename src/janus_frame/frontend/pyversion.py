"""What the supported CPython versions (3.11, 3.12, 3.13) lay out
differently in bytecode, in one place (a leaf of the frontend).

In: the running interpreter's version; instructions as the ``bytecode``
package reads them (``bytecode_info.load_instructions``).
Out: the calling convention's NULL slot (:func:`with_null`,
:func:`split_call`, :func:`split_call_ex`: 3.11 and 3.12 put NULL *below*
the callable, 3.13 puts the callable first and "self or NULL" above it),
what ``FOR_ITER`` leaves when its iterator is exhausted
(:data:`FOR_ITER_EXHAUSTED_PUSHES`), and the shapes of loops
(:func:`is_conditional_back_edge`, :func:`while_loop_test`: 3.11 closes a
``while`` with a conditional backward jump, 3.12 and 3.13 with a forward
conditional jump out of the loop followed by ``JUMP_BACKWARD``).
"""
from __future__ import annotations

import sys

from .values import NULL, NullV

VERSION = sys.version_info[:2]
# 3.13: callable, then self-or-NULL; 3.11/3.12: NULL-or-method, then callable-or-self
NULL_AFTER_CALLABLE = VERSION >= (3, 13)
# 3.12+: an exhausted FOR_ITER pushes a value that END_FOR pops (with the
# iterator), jumping to END_FOR; 3.11 pops the iterator and jumps past the loop
FOR_ITER_EXHAUSTED_PUSHES = VERSION >= (3, 12)

_JUMP_IF = ("POP_JUMP_IF_TRUE", "POP_JUMP_IF_FALSE")


def with_null(callable_v) -> list:
    """The two stack slots of a callable pushed with its NULL (LOAD_GLOBAL
    with the NULL bit, the method form of LOAD_ATTR and LOAD_SUPER_ATTR, a
    method loaded by the native step of LOAD_ATTR)."""
    return [callable_v, NULL] if NULL_AFTER_CALLABLE else [NULL, callable_v]


def split_call(a, b, args: list) -> tuple:
    """(callable, positional arguments) of CALL's slots ``a, b, *args``."""
    if NULL_AFTER_CALLABLE:
        return (a, args) if isinstance(b, NullV) else (a, [b] + args)
    return (b, args) if isinstance(a, NullV) else (a, [b] + args)


def split_call_ex(a, b) -> tuple:
    """(callable, receiver or None) of CALL_FUNCTION_EX's two slots below
    its arguments: the NULL is below the callable before 3.13, above it from
    3.13 on (a receiver there comes first among the arguments)."""
    fn, other = (a, b) if NULL_AFTER_CALLABLE else (b, a)
    return fn, (None if isinstance(other, NullV) else other)


def is_conditional_back_edge(instrs, index: int) -> bool:
    """Is the conditional jump at ``index`` the test that closes a loop
    (taken or not, the other way leads back to the loop's start)? 3.11:
    ``POP_JUMP_BACKWARD_IF_*``; 3.12+: ``POP_JUMP_IF_*`` out of the loop,
    followed by ``JUMP_BACKWARD``."""
    name = instrs[index].name
    if name.startswith("POP_JUMP_BACKWARD"):
        return True
    nxt = instrs[index + 1] if index + 1 < len(instrs) else None
    return name.startswith("POP_JUMP_IF") and nxt is not None and \
        nxt.name in ("JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT")


def while_loop_test(instrs, labels, entry: int) -> tuple[int, bool] | None:
    """For the conditional jump at ``entry`` that skips a ``while`` loop
    (its target is the loop's exit): (index of the jump testing the
    condition again at the loop's end, whether a true condition stays in
    the loop there), or None if ``entry`` does not enter a loop.

    3.11: ``entry: POP_JUMP_FORWARD_IF_* exit; body; cond;
    POP_JUMP_BACKWARD_IF_* body; exit:``. 3.12+: ``entry: POP_JUMP_IF_*
    exit; body; cond; POP_JUMP_IF_* exit; JUMP_BACKWARD body; exit:``."""
    ins = instrs[entry]
    exit_ip = labels[ins.arg]
    body_ip = entry + 1
    if exit_ip <= body_ip:
        return None
    back = instrs[exit_ip - 1]
    if back.name in ("POP_JUMP_BACKWARD_IF_TRUE", "POP_JUMP_BACKWARD_IF_FALSE"):
        if labels[back.arg] == body_ip:
            return exit_ip - 1, back.name == "POP_JUMP_BACKWARD_IF_TRUE"
        return None
    if back.name == "JUMP_BACKWARD" and labels[back.arg] == body_ip and exit_ip >= 2:
        test = instrs[exit_ip - 2]
        if test.name in _JUMP_IF and labels[test.arg] == exit_ip:
            return exit_ip - 2, test.name == "POP_JUMP_IF_FALSE"
    return None
