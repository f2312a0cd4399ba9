"""Opcode handlers: raising and handling exceptions, and ``with`` cleanups.

An exception raised in the trace is a value (values/exceptions.py) carried
by a JF020 GraphBreak (:func:`raising`); the interpreter's loop looks up the
raising instruction's handler in the code's exception table, cuts the stack
back to the handler's depth and jumps there (interpreter.Translator.run).
The handlers below are what the exception table leads to: PUSH_EXC_INFO,
CHECK_EXC_MATCH, POP_EXCEPT, RERAISE, WITH_EXCEPT_START (the ``__exit__`` of
a with-block called with the exception), and RAISE_VARARGS. A handler
stack is kept per frame (``tx.handled``): the exception a new one chains to
(``__context__``) is the innermost one being handled. Code that only
something else would know of (an exception group, the caller's exception)
is a graph break.

An exception that leaves the compiled frame makes the frame run natively
from where it was raised (the interpreter places the break there), so
Python raises it with its own message and traceback. RAISE_VARARGS's
native step raises the rebuilt exception there.

In/out: the frame's stack, ``tx.handled``.
"""
from __future__ import annotations

from ..breaks import GraphBreak, would_raise
from ..values import Const, ObjV
from ..values.exceptions import (
    CALLER_EXCEPTION, ExcV, PrevExcV, TracebackV, UnknownV, construct, exception_type, matches,
    traceback_of,
)
from .registry import handler, native_step


def raising(tx, exc, *, reraise: bool = False) -> GraphBreak:
    """The break that carries ``exc`` (an exception value) raised by the
    instruction being run; the interpreter unwinds with it. A fresh raise
    chains ``exc`` to the exception being handled and marks it raised."""
    if not reraise:
        if isinstance(exc, ExcV):
            _chain(tx, exc)
        elif not isinstance(exc, ExcV):
            raise GraphBreak("JF012", f"raising a {exc.python_type().__name__} read from "
                             "outside the compiled code")
    gb = would_raise(exc.python_type(), _describe(exc))
    gb.exc_value = exc
    if reraise:
        gb.reraised_by = tx
    return gb


def _describe(exc) -> str:
    """The exception's message, as the break's reason shows it."""
    m = exc.as_python() if isinstance(exc, ExcV) else getattr(exc, "obj", None)
    if isinstance(m, BaseException):
        return str(m) or "(no message)"
    return "raised in compiled code"


def _chain(tx, exc: ExcV) -> None:
    """What raising does to an exception: ``__context__`` is the exception
    being handled (a cycle in the chain is cut, as Python does), and its
    traceback becomes one the trace does not know."""
    handled = tx.handled_exception()
    if handled is not exc:
        o = handled
        while isinstance(o, ExcV):
            nxt = o.attrs.get("__context__")
            if nxt is exc:
                o.attrs["__context__"] = Const(None)
                break
            o = nxt
        exc.attrs["__context__"] = handled
    exc.raised = True
    exc.attrs["__traceback__"] = TracebackV()


def _instance(tx, v, what: str):
    """``raise v``: an exception instance, or a class to instantiate."""
    if isinstance(v, (ExcV, UnknownV)):
        return v
    if isinstance(v, ObjV):
        obj = v.obj
        if isinstance(obj, type) and issubclass(obj, BaseException):
            return construct(tx, obj, [], {})
        if isinstance(obj, BaseException):
            return v
    msg = f"exceptions must derive from BaseException" if what == "exception" else \
        "exception causes must derive from BaseException"
    raise raising(tx, construct(tx, TypeError, [Const(msg)], {}))


# -- raising -----------------------------------------------------------------------


@handler("RAISE_VARARGS")
def RAISE_VARARGS(tx, ins):
    if ins.arg == 0:  # a bare raise: the exception being handled, as it is
        exc = tx.handled_exception()
        if exc is CALLER_EXCEPTION:
            raise GraphBreak("JF012", "a bare raise with no exception handled in the "
                             "compiled code")
        raise raising(tx, exc, reraise=True)
    cause = tx.stack.pop() if ins.arg == 2 else None
    exc = _instance(tx, tx.stack.pop(), "exception")
    if cause is not None:
        c = cause if isinstance(cause, Const) and cause.value is None else \
            _instance(tx, cause, "cause")
        if not isinstance(exc, ExcV):
            raise GraphBreak("JF012", "setting the cause of an exception read from outside")
        exc.store_attr(tx, "__cause__", c)
    raise raising(tx, exc)


@handler("RERAISE")
def RERAISE(tx, ins):
    exc = tx.stack.pop()
    # (oparg: the raising instruction's offset is below it, for the line of
    # the traceback, which the trace does not model)
    raise raising(tx, exc, reraise=True)

# -- handling ------------------------------------------------------------------------


@handler("PUSH_EXC_INFO")
def PUSH_EXC_INFO(tx, ins):
    exc = tx.stack.pop()
    tx.stack.append(PrevExcV(tx.handled_exception()))
    tx.stack.append(exc)
    tx.handled.append(exc)


@handler("POP_EXCEPT")
def POP_EXCEPT(tx, ins):
    prev = tx.stack.pop()
    if not isinstance(prev, PrevExcV) or not tx.handled:
        raise GraphBreak("JF012", "an exception handler's state is not on the stack")
    tx.handled.pop()


@handler("CHECK_EXC_MATCH")
def CHECK_EXC_MATCH(tx, ins):
    spec = tx.stack.pop()
    tx.stack.append(Const(matches(tx, tx.stack[-1], spec)))


@handler("WITH_EXCEPT_START")
def WITH_EXCEPT_START(tx, ins):
    # 3.11-3.13: __exit__, lasti, the exception handled before, the exception
    exc = tx.stack[-1]
    exit_fn = tx.stack[-4]
    args = [exception_type(tx, exc), exc, traceback_of(tx, exc)]
    tx.stack.append(exit_fn.call(tx, args, {}))

# -- native steps --------------------------------------------------------------------


@native_step("RAISE_VARARGS")
def RAISE_VARARGS_native(tx, ins, emit):
    stack, e = list(tx.stack), emit.expr
    if ins.arg == 0:
        return ["raise"]
    if ins.arg == 1:
        return [f"raise {e(stack[-1])}"]
    return [f"raise {e(stack[-2])} from {e(stack[-1])}"]
