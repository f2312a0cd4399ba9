"""Conformance: exceptions and context managers -- try/except/else/finally,
raise, raise from, re-raise, exceptions in callees, custom exceptions,
contextlib.suppress, __exit__ that suppresses, @contextmanager generators,
several managers in one with; exceptions raised on purpose (type, message,
line).

PYTEST_DONT_REWRITE"""
from __future__ import annotations

import contextlib
import types

import torch

from harness import Registry, T

P = Registry("exceptions")
x1 = lambda k: (T(3),)  # noqa: E731


class MyError(Exception):
    pass


class MyValueError(ValueError):
    def __init__(self, msg, code):
        super().__init__(msg)
        self.code = code


class Suppress:
    """A class-based manager whose __exit__ suppresses (returns True)."""

    def __init__(self):
        self.entered = self.exited = 0
        self.seen = None

    def __enter__(self):
        self.entered += 1
        return self

    def __exit__(self, et, ev, tb):
        self.exited += 1
        self.seen = et
        return True


class Recording:
    def __init__(self, log, tag):
        self.log, self.tag = log, tag

    def __enter__(self):
        self.log.append(f"enter {self.tag}")
        return self.tag

    def __exit__(self, et, ev, tb):
        self.log.append(f"exit {self.tag} {et.__name__ if et else None}")
        return False


@contextlib.contextmanager
def scaled(log, s):
    log.append("before")
    try:
        yield s
    finally:
        log.append("after")


@contextlib.contextmanager
def swallow(exc_type):
    try:
        yield
    except exc_type:
        pass


# ---------------------------------------------------------------- try/except without a raise
@P(args=x1)
def try_except_no_raise(x):
    try:
        y = x + 1
    except ValueError:
        y = x - 1
    return y


@P(args=x1)
def try_except_else_finally_no_raise(x):
    log = []
    try:
        y = x * 2
    except Exception:
        log.append("except")
    else:
        log.append("else")
        y = y + 1
    finally:
        log.append("finally")
    return y, log


@P(args=x1)
def try_finally_return_in_try(x):
    log = []
    try:
        return x + 1, log
    finally:
        log.append("finally")


# ---------------------------------------------------------------- raise and catch inside the program
@P(args=x1)
def raise_and_catch_builtin(x):
    try:
        raise ValueError("bad")
    except ValueError as e:
        return x + len(str(e))


@P(args=x1, graphs=None, breaks=None, why='torch.compile skips this frame (0 graphs); janus_frame may compile it')
def raise_and_catch_custom(x):
    try:
        raise MyValueError("custom", 7)
    except MyValueError as e:
        return x * e.code, e.args


@P(args=x1, graphs=None, breaks=None, why='torch.compile skips this frame (0 graphs); janus_frame may compile it')
def catch_by_base_class(x):
    try:
        raise MyValueError("m", 1)
    except ValueError as e:
        return x + 1, type(e).__name__


@P(args=x1)
def catch_tuple_of_types(x):
    try:
        {}["k"]
    except (ValueError, KeyError) as e:
        return x - 1, repr(e)


@P(args=x1)
def except_order_first_match(x):
    log = []
    try:
        raise KeyError("k")
    except LookupError:
        log.append("lookup")
    except KeyError:
        log.append("key")
    return x + len(log), log


@P(args=x1)
def exception_in_callee_caught(x):
    def inner(t):
        if t.dim() == 1:
            raise RuntimeError("one-d")
        return t
    try:
        return inner(x)
    except RuntimeError as e:
        return x * 3, str(e)


@P(args=x1)
def finally_runs_on_exception(x):
    log = []
    try:
        try:
            raise IndexError("i")
        finally:
            log.append("inner finally")
    except IndexError:
        log.append("caught")
    return x + 1, log


@P(args=x1)
def reraise_bare(x):
    try:
        try:
            raise TypeError("t")
        except TypeError:
            raise
    except TypeError as e:
        return x + 2, str(e)


@P(args=x1, graphs=0, breaks=0)
def raise_from_caught(x):
    try:
        try:
            1 / 0
        except ZeroDivisionError as e:
            raise ValueError("wrapped") from e
    except ValueError as e:
        return x, type(e.__cause__).__name__, e.__suppress_context__


@P(args=x1)
def exception_context_implicit(x):
    try:
        try:
            raise KeyError("a")
        except KeyError:
            raise ValueError("b")
    except ValueError as e:
        return x + 1, type(e.__context__).__name__


@P(args=x1)
def exception_variable_cleared(x):
    e = 5
    try:
        raise ValueError
    except ValueError as e:  # noqa: F841
        pass
    return x + ("e" in locals())


@P(args=x1)
def stopiteration_from_next(x):
    it = iter([])
    try:
        next(it)
    except StopIteration:
        return x + 1
    return x


@P(args=x1, graphs=0, breaks=0)
def zero_division_in_python(x):
    try:
        return x / (1 // 0)
    except ZeroDivisionError as e:
        return x, str(e)


@P(args=x1)
def exception_group_like_loop(x):
    errors = []
    for i in range(3):
        try:
            if i == 1:
                raise ValueError(i)
            x = x + i
        except ValueError as e:
            errors.append(e.args[0])
    return x, errors


# ---------------------------------------------------------------- exceptions that escape (eager raises, so must compiled)
@P(args=x1)
def raises_keyerror(x):
    d = {"a": x}
    return d["b"] + x


@P(args=x1)
def raises_custom_after_compute(x):
    y = x * 2
    if y.dim() == 1:
        raise MyError(f"bad dim {y.dim()}")
    return y


@P(args=x1, graphs=0, breaks=None, why="raises before any tensor op")
def raises_value_error_first_line(x):
    raise ValueError("no")


@P(args=x1)
def raises_from(x):
    try:
        [][0]
    except IndexError as e:
        raise RuntimeError("converted") from e


@P(args=lambda k: (T(3), T(4)))
def raises_shape_mismatch(a, b):
    c = a * 2
    return c + b


@P(args=lambda k: (T(3),))
def raises_invalid_view(x):
    return x.view(2, 2)


@P(args=lambda k: (T(3),))
def raises_index_out_of_range(x):
    return x[5]


@P(args=lambda k: (T(3),))
def raises_attribute_error(x):
    return x.no_such_attribute


@P(args=lambda k: (T(3),))
def raises_type_error_call(x):
    return torch.add(x, "a")


@P(args=lambda k: (T(3), k))
def raises_on_second_call_only(x, k):
    if k == 1:
        raise ValueError(f"call {k}")
    return x + k


@P(args=lambda k: (T(3),))
def raise_in_nested_callee_escapes(x):
    def a(t):
        return b(t) + 1

    def b(t):
        raise LookupError("deep")
    return a(x)


@P(args=lambda k: (T(3), [1]))
def side_effect_before_raise_kept(x, lst):
    lst.append(2)
    y = x + 1
    raise MyError(str(len(lst)))


@P(args=lambda k: (T(3),))
def assert_false_escapes(x):
    assert x.shape[0] == 4, "need 4"
    return x


# ---------------------------------------------------------------- context managers
@P(args=x1)
def with_suppress_keyerror(x):
    d = {}
    with contextlib.suppress(KeyError):
        d["a"]
        x = x * 100
    return x + 1


@P(args=x1)
def with_suppress_multiple_types(x):
    with contextlib.suppress(IndexError, ZeroDivisionError):
        y = [1][3]
    return x * 2


@P(args=x1)
def with_suppress_nothing_raised(x):
    with contextlib.suppress(ValueError):
        x = x + 1
    return x


@P(args=x1, subprocess=True)
def class_exit_suppresses(x):
    cm = Suppress()
    with cm:
        raise ValueError("swallowed")
    return x + cm.exited, cm.seen.__name__


@P(args=x1, subprocess=True)
def class_exit_suppresses_tensor_before(x):
    s = Suppress()
    with s:
        y = x * 2
        raise KeyError("k")
    return y + 1


@P(args=x1, subprocess=True)
def class_exit_suppresses_in_callee(x):
    def risky(t):
        with Suppress():
            raise IndexError("i")
        return t + 5
    return risky(x)


@P(args=x1)
def class_exit_no_exception(x):
    cm = Suppress()
    with cm as c:
        y = x + c.entered
    return y, cm.exited


@P(args=x1)
def class_manager_logs_order(x):
    log = []
    with Recording(log, "a") as a, Recording(log, "b") as b:
        y = x + len(a + b)
    return y, log


@P(args=x1)
def class_manager_exception_propagates(x):
    log = []
    try:
        with Recording(log, "z"):
            raise ValueError("inside")
    except ValueError:
        pass
    return x + 1, log


@P(args=x1)
def contextmanager_generator(x):
    log = []
    with scaled(log, 3) as s:
        y = x * s
    return y, log


@P(args=x1)
def contextmanager_swallows(x):
    with swallow(ZeroDivisionError):
        1 / 0
    return x + 1


@P(args=x1, graphs=0, breaks=0)
def contextmanager_finally_on_exception(x):
    log = []
    try:
        with scaled(log, 2):
            raise KeyError("x")
    except KeyError:
        log.append("caught")
    return x, log


@P(args=x1)
def exitstack_callbacks(x):
    log = []
    with contextlib.ExitStack() as st:
        st.callback(log.append, "cb1")
        st.enter_context(Recording(log, "r"))
        y = x + 1
    return y, log


@P(args=x1)
def nullcontext_usage(x):
    with contextlib.nullcontext(x) as t:
        return t * 2


@P(args=x1)
def nested_with_inner_raises_outer_suppresses(x):
    log = []
    with contextlib.suppress(RuntimeError):
        with Recording(log, "inner"):
            raise RuntimeError("r")
    return x + 1, log


@P(args=x1)
def return_inside_with(x):
    log = []

    def g(t):
        with Recording(log, "w"):
            return t * 3
    return g(x), log


@P(args=x1)
def break_inside_with_in_loop(x):
    log = []
    for i in range(3):
        with Recording(log, str(i)):
            if i == 1:
                break
            x = x + i
    return x, log


@P(args=x1, graphs=None, breaks=None, why='torch.compile cannot break inside try and skips the frame')
def print_inside_try(x):
    try:
        print("in try", x.shape)
        y = x + 1
    except Exception:
        y = x
    return y


def _world_counter_cm():
    class Counted:
        def __init__(self):
            self.n = 0

        def __enter__(self):
            self.n += 1

        def __exit__(self, *a):
            return None
    c = Counted()

    def fn(x):
        with c:
            return x + c.n
    return types.SimpleNamespace(fn=fn, c=c)


P(name="manager_object_state_across_calls", build=_world_counter_cm, args=lambda k: (T(3),),
  graphs=None, breaks=None, why='torch.compile skips this frame (0 graphs); janus_frame may compile it')


test_program = P.tests()
