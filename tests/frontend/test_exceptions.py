"""Exceptions and context managers in traced code.

Opcode tests (``jit``: the opcodes are in the bytecode, compiled and plain
runs agree, and the frame is one graph: no break) for raising, catching,
finally blocks, with-block cleanups and generator-based managers; then what
happens where the trace cannot finish the job itself: an exception leaving
the compiled frame is raised by Python from the user's line, a break inside
a try body or a with-block resumes under the handler's protection, a break
inside a handler runs natively from where the exception was raised.

PYTEST_DONT_REWRITE (assert statements are programs under test here)
"""
from __future__ import annotations

import contextlib
import dis
import traceback

import pytest
import torch

import janus_frame as jf
from janus_frame.frontend.bytecode_info import (
    exception_handlers, live_locals, load_instructions,
)
from janus_frame.frontend.resume import resume_code
from jfutil import Recorder, assert_same, missing_opcodes


class MyError(Exception):
    pass


class CodedError(ValueError):
    def __init__(self, msg, code):
        super().__init__(msg)
        self.code = code


class Suppress:
    def __init__(self, *types):
        self.types = types
        self.exited = 0

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.exited += 1
        return et is not None and issubclass(et, self.types)


class Logging:
    def __init__(self, log, tag):
        self.log, self.tag = log, tag

    def __enter__(self):
        self.log.append(f"enter {self.tag}")
        return self.tag

    def __exit__(self, et, ev, tb):
        self.log.append(f"exit {self.tag} {et.__name__ if et else None}")
        return False


@contextlib.contextmanager
def tagged(log, name):
    log.append("open " + name)
    try:
        yield name
    finally:
        log.append("close " + name)


@contextlib.contextmanager
def swallowing(exc_type, log):
    try:
        yield
    except exc_type as e:
        log.append(f"swallowed {type(e).__name__}")


def run_both(fn, *args, calls=2, graphs=None, breaks=None, **options):
    """Compiled (eager backend, recording graphs) against plain: results,
    arguments after the call, or the same exception from the same line."""
    rec = Recorder()
    cf = jf.compile(fn, backend=rec, **options)
    for _ in range(calls):
        out = []
        for f in (fn, cf):
            args_i = [list(a) if isinstance(a, list) else a.clone() if isinstance(
                a, torch.Tensor) else a for a in args]
            try:
                out.append(("ok", f(*args_i), args_i))
            except Exception as e:  # noqa: BLE001 - compared
                tb = [(t.name, t.lineno) for t in traceback.extract_tb(e.__traceback__)
                      if t.filename == __file__][-1:]
                out.append(("raised", type(e), str(e), tb, args_i))
        (e, c) = out
        assert e[0] == c[0], (e, c)
        if e[0] == "ok":
            assert_same(e[1], c[1])
            assert_same(e[2], c[2], "arguments")
        else:
            assert e[1:4] == c[1:4], (e, c)
            assert_same(e[4], c[4], "arguments")
    if graphs is not None:
        assert len(rec.graphs) == graphs, f"{len(rec.graphs)} graphs"
    return rec


# ------------------------------------------------------------------ raise and catch
def test_raise_caught_by_type(jit):
    def f(x):
        try:
            raise ValueError("bad")
        except KeyError:
            return x - 1
        except ValueError as e:
            return x + len(str(e)), e.args, repr(e)
    jit(f, torch.randn(3), opcodes={"RAISE_VARARGS", "PUSH_EXC_INFO", "CHECK_EXC_MATCH",
                                    "POP_EXCEPT", "RERAISE"})


def test_except_tuple_and_base_class(jit):
    def f(x):
        out = []
        for exc in (KeyError("k"), IndexError("i"), ZeroDivisionError("z")):
            try:
                raise exc
            except (ValueError, KeyError):
                out.append("vk")
            except LookupError as e:
                out.append(type(e).__name__)
            except Exception:
                out.append("other")
        return x * len(out), out
    jit(f, torch.randn(3), opcodes={"CHECK_EXC_MATCH"})


def test_raise_class_instantiates_it(jit):
    def f(x):
        try:
            raise MyError
        except MyError as e:
            return x + 1, e.args, type(e).__name__
    jit(f, torch.randn(3), opcodes={"RAISE_VARARGS"})


def test_finally_runs_on_exception_and_reraises(jit):
    def f(x):
        log = []
        try:
            try:
                x = x * 2
                raise IndexError("i")
            finally:
                log.append("finally")
        except IndexError:
            log.append("caught")
        return x + 1, log
    jit(f, torch.randn(3), opcodes={"RERAISE", "PUSH_EXC_INFO"})


def test_bare_reraise_and_raise_from(jit):
    def f(x):
        try:
            try:
                raise TypeError("t")
            except TypeError:
                raise
        except TypeError as e:
            first = str(e)
        try:
            try:
                raise KeyError("a")
            except KeyError as e:
                raise ValueError("b") from e
        except ValueError as e:
            return (x + 1, first, type(e.__cause__).__name__, e.__suppress_context__,
                    type(e.__context__).__name__)
    jit(f, torch.randn(3), opcodes={"RAISE_VARARGS", "RERAISE"})


def test_implicit_context_and_variable_cleared(jit):
    def f(x):
        e = 5
        try:
            try:
                raise KeyError("a")
            except KeyError:
                raise ValueError("b")
        except ValueError as e:  # noqa: F841
            ctx = type(e.__context__).__name__, e.__suppress_context__
        return x + ("e" in locals()), ctx
    jit(f, torch.randn(3), opcodes={"DELETE_FAST", "POP_EXCEPT"})


def test_user_exception_with_init(jit):
    def f(x):
        try:
            raise CodedError("custom", 7)
        except ValueError as e:
            return x * e.code, e.args, str(e), isinstance(e, CodedError)
    jit(f, torch.randn(3), opcodes={"RAISE_VARARGS"})


def test_exceptions_of_modelled_operations_are_caught(jit):
    def f(x, d, lst):
        out = []
        try:
            d["missing"]
        except KeyError as e:
            out.append(("key", e.args))
        try:
            lst[10]
        except IndexError as e:
            out.append(str(e))
        try:
            out.append(1 // 0)
        except ZeroDivisionError as e:
            out.append(str(e))
        it = iter([])
        try:
            next(it)
        except StopIteration:
            out.append("stop")
        return x + len(out), out
    jit(f, torch.randn(3), {"a": 1}, [1, 2], opcodes={"CHECK_EXC_MATCH"})


def test_exception_in_callee_caught_by_caller(jit):
    def inner(t, d):
        if t.dim() == 1:
            return t + d["nope"]
        return t

    def f(x, d):
        try:
            return inner(x, d)
        except LookupError as e:
            return x * 3, repr(e)
    jit(f, torch.randn(3), {"a": 1.0}, opcodes={"PUSH_EXC_INFO"})


def test_exception_caught_inside_callee(jit):
    def lookup(d, k):
        try:
            return d[k]
        except KeyError:
            return 0

    def f(x):
        return x * lookup({"a": 1}, "b") + 1
    jit(f, torch.randn(3), opcodes={"CALL"})  # (the handler is in lookup)


def test_exceptions_in_a_loop(jit):
    def f(x):
        errors = []
        for i in range(4):
            try:
                if i % 2:
                    raise ValueError(i)
                x = x + i
            except ValueError as e:
                errors.append(e.args[0])
        return x, errors
    jit(f, torch.randn(3), opcodes={"RAISE_VARARGS"})


# ------------------------------------------------------------------ with-blocks
def test_suppress_and_class_manager(jit):
    def f(x, d):
        with contextlib.suppress(KeyError):
            x = x + d["nope"]
        with contextlib.suppress(LookupError):
            [][1]
        s = Suppress(ZeroDivisionError)
        with s:
            x = x / (1 // 0)
        with Suppress(ValueError) as t:
            x = x * 2
        return x, s.exited, t.exited
    jit(f, torch.randn(3), {"a": 1.0}, opcodes={"BEFORE_WITH", "WITH_EXCEPT_START"})


def test_manager_exit_sees_exception_and_propagates(jit):
    def f(x):
        log = []
        try:
            with Logging(log, "a"), Logging(log, "b"):
                x = x + 1
                raise RuntimeError("r")
        except RuntimeError as e:
            log.append(str(e))
        with Logging(log, "c") as tag:
            x = x * len(tag)
        return x, log
    jit(f, torch.randn(3), opcodes={"WITH_EXCEPT_START", "BEFORE_WITH"})


def test_nullcontext_enter_result(jit):
    def f(x):
        with contextlib.nullcontext(x) as t:
            return t * 2
    jit(f, torch.randn(3), opcodes={"BEFORE_WITH"})


def test_contextmanager_generators(jit):
    def f(x):
        log = []
        with tagged(log, "outer") as name:
            log.append("body " + name)
            with swallowing(ZeroDivisionError, log):
                x = x + 1
                1 / 0
            x = x * 2
        try:
            with tagged(log, "inner"):
                raise KeyError("k")
        except KeyError:
            log.append("caught")
        return x, log
    jit(f, torch.randn(3), opcodes={"BEFORE_WITH", "WITH_EXCEPT_START"})


def test_generator_send_and_throw(jit):
    def f(x):
        def gen(log):
            total = 0
            while True:
                try:
                    v = yield total
                except ValueError:
                    log.append("thrown")
                    v = 100
                if v is None:
                    return total
                total += v

        log = []
        g = gen(log)
        next(g)
        a = g.send(2)
        b = g.throw(ValueError)
        try:
            g.send(None)
        except StopIteration as e:
            log.append(("stop", e.value))
        return x + a + b, log
    jit(f, torch.randn(3), opcodes={"YIELD_VALUE"})


def _delegating(log):
    """A generator delegating to a sub-generator with ``yield from``, which
    handles some exceptions thrown into it and returns a value."""
    def sub(n):
        try:
            for i in range(n):
                try:
                    got = yield i
                    log.append(("sub got", got))
                except ValueError as e:
                    log.append(("sub caught", str(e)))
                    yield 100 + i
        except KeyError:
            log.append("sub returns on KeyError")
            return "early"
        finally:
            log.append("sub finally")
        return "done"

    def outer():
        try:
            r = yield from sub(3)
            log.append(("outer got", r))
            r2 = yield from [7, 8]
            log.append(("outer got", r2))
        except TypeError as e:
            log.append(("outer caught", str(e)))
            yield -1
        yield 50
    return outer()


def test_throw_into_a_generator_suspended_in_yield_from(jit):
    """``throw()`` reaches the sub-generator ``yield from`` delegates to: it
    handles it and yields, returns (the ``yield from``'s value), or raises
    (into the delegating generator's handler); the delegate runs item by
    item, interleaved with its caller, and gets what is sent."""
    def f(x):
        log = []
        g = _delegating(log)
        a = next(g)
        log.append(("caller", a))
        b = g.send("s1")
        c = g.throw(ValueError("v"))  # caught in sub, which yields
        d = next(g)
        e = g.throw(KeyError("k"))  # sub returns: the yield from's value; outer goes on
        h = g.throw(TypeError("t"))  # thrown at yield from a list: outer's handler
        i = next(g)
        try:
            next(g)
        except StopIteration:
            log.append("stop")
        return x * a + b + c + d + e + h + i, log
    assert not missing_opcodes(_delegating, {"SEND", "YIELD_VALUE"})
    jit(f, torch.randn(3))


def test_throw_into_yield_from_not_handled_by_the_delegate(jit):
    """An exception the sub-generator does not handle leaves it (its finally
    runs) and is raised at the ``yield from`` in the delegating generator."""
    def f(x):
        log = []
        g = _delegating(log)
        next(g)
        try:
            g.throw(RuntimeError("r"))
        except RuntimeError as e:
            log.append(("caller caught", str(e)))
        try:
            next(g)
        except StopIteration:
            log.append("closed")
        return x + 1, log
    jit(f, torch.randn(3))


def test_for_loop_over_a_generator_interleaves_with_the_body(jit):
    """A for loop resumes the generator for each item: its side effects
    and the loop body's alternate as in Python, and an exception it raises
    after some items reaches the loop's handler after their bodies ran."""
    def f(x):
        log = []

        def gen(n):
            for i in range(n):
                log.append(("gen", i))
                yield x * i
            log.append("gen done")
            raise KeyError(n)

        total = x
        try:
            for v in gen(3):
                log.append("body")
                total = total + v
        except KeyError as e:
            log.append(("caught", e.args[0]))
        return total, log
    jit(f, torch.randn(3), opcodes={"YIELD_VALUE", "FOR_ITER"})


def test_break_in_a_for_loop_over_a_generator():
    def f(x):
        log = []

        def gen():
            for i in range(3):
                log.append(i)
                yield x + i
        out = x
        for v in gen():
            print("break")
            log.append("body")
            out = out * v
        return out, log
    run_both(f, torch.randn(3))


# ------------------------------------------------------------------ leaving the frame
def _raises_escaping(x, d):
    y = x * 2
    with contextlib.suppress(KeyError):
        raise ValueError(f"not suppressed {y.dim()}")
    return y + d["a"]


def _raises_in_callee(x):
    def a(t):
        return b(t) + 1

    def b(t):
        raise LookupError("deep")
    return a(x * 2)


def _assert_fails(x, n):
    assert x.shape[0] == n, "need " + str(n)
    return x + n


@pytest.mark.parametrize("fn,args", [
    (_raises_escaping, (torch.randn(3), {"a": 1.0})),
    (_raises_in_callee, (torch.randn(3),)),
    (_assert_fails, (torch.randn(3), 4)),
])
def test_escaping_exception_same_type_message_and_line(fn, args):
    run_both(fn, *args)


def test_escaping_exception_keeps_the_graph_before_it():
    def f(x, k):
        y = x * 2 + 1
        if k == 1:
            raise MyError(f"call {k}")
        return y
    rec = run_both(f, torch.randn(3), 1, calls=1)
    assert len(rec.graphs) == 1  # the prefix is compiled; the raise runs natively
    run_both(f, torch.randn(3), 2)


# ------------------------------------------------------------------ breaks under handlers
def test_break_in_try_body_resumes_under_the_handler(capsys):
    def f(x):
        y0 = x * 2
        try:
            print("in try")
            y = torch.add(y0, "a")  # TypeError, found on fake tensors: run natively
        except TypeError:
            y = y0 + 1
        return y * 2
    rec = run_both(f, torch.randn(3), calls=1)
    assert len(rec.graphs) == 2  # before the print; the handler and the rest


def test_break_in_suppress_block_is_suppressed(capsys):
    def f(x, d):
        with contextlib.suppress(KeyError):
            print("inside")
            x = x + d["nope"]
        return x * 2
    run_both(f, torch.randn(3), {"a": 1.0})


def test_suppressing_exit_after_a_break_has_the_live_locals(capsys):
    def f(x):
        y = x * 2
        with Suppress(RuntimeError):
            print("break")
            y = y + 1
            raise RuntimeError("r")
        return x + y
    run_both(f, torch.randn(3))


def test_break_in_handler_runs_natively_from_the_raise(capsys):
    def f(x):
        try:
            y = x + 1
            raise ValueError("v")
        except ValueError as e:
            print("handling", e)
            y = y * 3
        return y - 1
    rec = run_both(f, torch.randn(3))
    assert len(rec.graphs) >= 1  # the part before the raise is a graph


def test_contextmanager_body_with_a_break(capsys):
    def f(x):
        log = []
        with tagged(log, "t"):
            x = x + 1
            print("inside")
            x = x * 2
        return x, log
    run_both(f, torch.randn(3))



def _make_local_manager_class():
    log = []

    class Local:  # its methods reach ``log`` through a closure cell only
        def __enter__(self):
            log.append("enter")
            return self

        def __exit__(self, et, ev, tb):
            log.append(("exit", et))
            return False
    return Local, log


def test_manager_methods_writing_a_closure_list_keep_their_writes():
    Local, log = _make_local_manager_class()

    def f(x, cls):
        with cls():
            y = x * 2
        return y
    cf = jf.compile(f, backend="eager")
    for k in range(2):
        y = cf(torch.ones(2), Local)
        assert torch.equal(y, torch.full((2,), 2.0))
        assert log == [("enter"), ("exit", None)] * (k + 1), log


def test_local_exception_class_calling_super_init_after_a_break():
    # the class is made natively (a break); its __init__ then runs as a frame
    # of its own, where ``self`` is a real instance: super().__init__ is the
    # builtin's, not the override found again by name
    def f(x):
        class E(Exception):
            def __init__(self, v):
                super().__init__("E", v)
                self.v = v
        try:
            raise E(3)
        except E as e:
            return x + e.v, e.args
    run_both(f, torch.randn(3))

# ------------------------------------------------------------------ bytecode facts
def test_live_locals_follow_exception_edges():
    def f(x):
        y = x * 2
        with Suppress(RuntimeError):
            raise RuntimeError("r")
        return y
    instrs, _ = load_instructions(f.__code__)
    i = next(k for k, ins in enumerate(instrs) if ins.name == "RAISE_VARARGS")
    assert "y" in live_locals(f.__code__, i)


def test_resume_code_keeps_handler_depths():
    def f(x, d):
        with contextlib.suppress(KeyError):
            print("in")
            x = x + d["nope"]
        return x
    instrs, _ = load_instructions(f.__code__)
    i = next(k for k, ins in enumerate(instrs) if ins.name == "BINARY_SUBSCR")
    h = exception_handlers(f.__code__)[i]
    assert h is not None and h.depth == 1 and h.lasti
    r = resume_code(f.__code__, i, (False,) * 4, ("d", "x"))
    depths = {e.depth for e in dis._parse_exception_table(r)}
    assert depths <= {0, 1, 3}, depths  # as in the original, never unset (32768)
