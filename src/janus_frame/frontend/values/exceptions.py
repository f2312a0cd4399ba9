"""Exception objects while tracing.

In: exception classes the traced code constructs (``ValueError("bad")``, a
user subclass whose ``__init__`` runs traced), exceptions a modelled
operation raises exactly (a missing key of a modelled dict, an operator
folded on constants: ``breaks.would_raise(..., exc=...)`` carries the real
exception), and the state the interpreter gives them when they are raised
(``__context__``, ``__cause__``, an unknown traceback).
Out: ``ExcV`` (an exception object: class, arguments, attributes),
``TracebackV`` (a traceback, not modelled: reading it is a graph break),
``UnknownV`` (what the traced code cannot know, such as the exception the
caller of the compiled frame is handling), ``PrevExcV`` (what
PUSH_EXC_INFO saves on the stack); :func:`construct` (calling an exception
class), :func:`from_real` (a real exception made by a modelled operation),
:func:`exception_type` (the class of any exception value) and
:func:`matches` (``except`` clause matching).

An exception that is raised is never handed back to Python as a rebuilt
object (its traceback is not modelled): JF025, and the frame runs natively.
"""
from __future__ import annotations

import builtins
import inspect
import types

from ..breaks import GraphBreak, would_raise
from ..sources import AttrSource
from .base import NO, Value
from .constants import Const
from .containers import TupleV
from .methods import MethodV
from .objects import ObjV, class_attr

# builtin exception classes whose __init__ is BaseException's: ``args`` is
# the constructor's arguments, nothing else is set (their __str__ may differ:
# it is computed on a real instance)
_PLAIN = frozenset(c for c in vars(builtins).values() if isinstance(c, type) and issubclass(
    c, BaseException) and not issubclass(c, (OSError, ImportError, SyntaxError, UnicodeError,
                                             BaseExceptionGroup, StopIteration, SystemExit,
                                             AttributeError, NameError)))
# attributes every exception has, and their value on a fresh one
_STATE_DEFAULTS = {"__cause__": None, "__context__": None, "__suppress_context__": False,
                   "__traceback__": None}


def _builtin_base(cls: type) -> type:
    return next(k for k in cls.__mro__ if k.__module__ == "builtins")


class UnknownV(Value):
    """A value the trace cannot know (``what`` says which); any use of it is
    a graph break."""

    __slots__ = ("what", "source")

    def __init__(self, what: str) -> None:
        self.what = what
        self.source = None

    def python_type(self) -> type:
        raise self._unsupported("type")

    def _unsupported(self, what: str) -> GraphBreak:
        return GraphBreak("JF012", f"{self.what} is not known while tracing")

    def get_attr(self, tx, name: str) -> Value:
        raise self._unsupported(name)

    def truth(self, tx) -> bool:
        raise self._unsupported("truth")

    def identical(self, tx, other: Value):
        raise self._unsupported("identity")

    def reconstruct(self, rb):
        raise GraphBreak("JF025", f"{self.what} is not known while tracing")


class TracebackV(UnknownV):
    """The traceback of an exception raised while tracing: passed along
    (to ``__exit__``), never looked into."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("the traceback of an exception raised in compiled code")

    def python_type(self) -> type:
        return types.TracebackType

    def truth(self, tx) -> bool:
        return True

    def identical(self, tx, other: Value):
        return other is self


# the exception the caller of the compiled frame may be handling (what an
# exception raised with no handler active in the traced code chains to)
CALLER_EXCEPTION = UnknownV("the exception the caller is handling")


class PrevExcV(Value):
    """What PUSH_EXC_INFO saves below the exception: the exception handled
    before (``prev``, a value or CALLER_EXCEPTION); POP_EXCEPT restores it."""

    __slots__ = ("prev", "source")

    def __init__(self, prev: Value) -> None:
        self.prev = prev
        self.source = None

    def python_type(self) -> type:
        return object

    def reconstruct(self, rb):
        raise GraphBreak("JF025", "the state of an exception handler")


class ExcV(Value):
    """An exception object made while tracing: ``cls``, ``args`` (values, or
    None when not known), ``attrs`` (the instance's attributes: those user
    code set, ``__cause__``/``__context__``/``__suppress_context__``/
    ``__traceback__`` once set). ``model`` is a real instance with the same
    class and arguments (made when they are constants), which answers what
    builtin code computes from them: ``str()``, ``StopIteration.value``."""

    __slots__ = ("cls", "args", "attrs", "model", "raised", "source")

    def __init__(self, cls: type, args: list | None, model: BaseException | None = None) -> None:
        self.cls = cls
        self.args = args
        self.attrs: dict[str, Value] = {}
        self.model = model
        self.raised = False  # raised in the trace: its traceback is not modelled
        self.source = None

    def python_type(self) -> type:
        return self.cls

    def _repr(self) -> str:
        return self.cls.__name__

    def truth(self, tx) -> bool:
        if _python_attr(self.cls, "__bool__") or _python_attr(self.cls, "__len__"):
            raise GraphBreak("JF022", f"truth value of a {self.cls.__name__}")
        return True

    def identical(self, tx, other: Value):
        return other is self

    # -- a real instance answering for builtin behaviour ---------------------------
    def const_args(self):
        if self.args is None:
            return None
        out = []
        for a in self.args:
            x = a.as_python()
            if x is NO:
                return None
            out.append(x)
        return tuple(out)

    def real_model(self) -> BaseException | None:
        """A real instance of the class with the same arguments, made
        without running Python code (None when the arguments are not
        constants)."""
        if self.model is None:
            args = self.const_args()
            if args is None:
                return None
            base = _builtin_base(self.cls)
            try:
                m = base.__new__(self.cls, *args)
                base.__init__(m, *args)
            except Exception:  # noqa: BLE001 - not constructible like this
                return None
            self.model = m
        return self.model

    def as_python(self):
        """The model, for what folds on it (``str(e)``, ``repr(e)``,
        f-strings): only when no Python code of the class decides those."""
        if any(_python_attr(self.cls, n) for n in ("__str__", "__repr__", "__format__")):
            return NO
        m = self.real_model()
        return NO if m is None else m

    # -- attributes ------------------------------------------------------------------
    def get_attr(self, tx, name: str) -> Value:
        if name in self.attrs:
            return self.attrs[name]
        if name == "args":
            if self.args is None:
                raise GraphBreak("JF012", f"the arguments of a {self.cls.__name__} raised by "
                                 "an operation are not known while tracing")
            return TupleV(list(self.args))
        if name == "__class__":
            return ObjV(self.cls)
        if name in _STATE_DEFAULTS:
            return Const(_STATE_DEFAULTS[name])
        try:
            static = inspect.getattr_static(self.cls, name)
        except AttributeError:
            raise would_raise(AttributeError, f"{self.cls.__name__!r} object has no "
                              f"attribute {name!r}") from None
        owner = next(k for k in self.cls.__mro__ if name in k.__dict__)
        if owner.__module__ != "builtins":
            return class_attr(tx, self, self.cls, name, static)
        if isinstance(static, (types.MemberDescriptorType, types.GetSetDescriptorType)):
            m = self.real_model()
            if m is None:
                raise GraphBreak("JF012", f"{self.cls.__name__}.{name} of non-constant "
                                 "arguments")
            return Const(getattr(m, name))
        if name in ("with_traceback", "__str__", "__repr__"):
            return MethodV(self, name)
        raise GraphBreak("JF012", f"{self.cls.__name__}.{name}")

    def store_attr(self, tx, name: str, value: Value) -> None:
        if name == "args":
            self.args = value.iterate(tx)
            self.model = None
            return
        if name in ("__cause__", "__context__") and not (
                isinstance(value, Const) and value.value is None or
                isinstance(value, (ExcV, UnknownV)) or
                isinstance(value, ObjV) and isinstance(value.obj, BaseException)):
            raise would_raise(TypeError, f"exception {name[2:-2]} must be None or derive "
                              "from BaseException")
        self.attrs[name] = value
        if name == "__cause__":  # as the setter does
            self.attrs["__suppress_context__"] = Const(True)

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        if name == "with_traceback" and len(args) == 1 and not kwargs:
            self.attrs["__traceback__"] = args[0]
            return self
        if name == "__init__":  # the builtin base's __init__ (super().__init__(...))
            return self._builtin_init(tx, args, kwargs)
        if name in ("__str__", "__repr__") and not args and not kwargs:
            m = self.as_python()
            if m is not NO:
                return Const(str(m) if name == "__str__" else repr(m))
        return super().call_method(tx, name, args, kwargs)

    def _builtin_init(self, tx, args: list, kwargs: dict) -> Value:
        base = _builtin_base(self.cls)
        if base in _PLAIN:
            if kwargs:
                raise would_raise(TypeError, f"{self.cls.__name__}() takes no keyword "
                                  "arguments", exc=TypeError(f"{self.cls.__name__}() takes "
                                                             "no keyword arguments"))
            self.args = list(args)
            self.model = None
            return Const(None)
        cargs = [a.as_python() for a in args]
        ckw = {k: v.as_python() for k, v in kwargs.items()}
        if NO in cargs or NO in ckw.values():
            raise GraphBreak("JF012", f"{base.__name__}.__init__ of non-constant arguments")
        m = base.__new__(self.cls, *cargs)
        try:
            base.__init__(m, *cargs, **ckw)
        except Exception as e:  # noqa: BLE001 - what the program raises too
            raise would_raise(type(e), str(e), exc=e) from None
        self.args = [Const(a) for a in m.args]
        self.model = m
        return Const(None)

    # -- after the graph ---------------------------------------------------------------
    def reconstruct(self, rb) -> tuple[str, bool]:
        if self.raised:
            raise GraphBreak("JF025", f"a {self.cls.__name__} raised in compiled code (its "
                             "traceback is not modelled)")
        if self.args is None:
            raise GraphBreak("JF025", f"a {self.cls.__name__} of unknown arguments")
        fb = rb.fb
        args = "".join(rb.expr(a) + ", " for a in self.args)
        attrs = ", ".join(f"{k!r}: {rb.expr(v)}" for k, v in self.attrs.items()
                          if k != "__context__")
        return f"{fb.const(rebuild)}({fb.const(self.cls)}, ({args}), {{{attrs}}})", True


def rebuild(cls: type, args: tuple, attrs: dict) -> BaseException:
    """An exception made while tracing, rebuilt after the graph: its class's
    ``__new__`` with the arguments (its ``__init__`` already ran traced, and
    left ``args`` and the attributes given here)."""
    e = cls.__new__(cls, *args)
    e.args = args
    for k, v in attrs.items():
        setattr(e, k, v)
    return e


def _python_attr(cls: type, name: str) -> bool:
    """Is ``cls.name`` defined by a class written in Python?"""
    for k in cls.__mro__:
        if name in k.__dict__:
            return k.__module__ != "builtins"
    return False


def constructible(cls: type) -> bool:
    """Can an instance of the exception class ``cls`` be made while tracing?"""
    return not (_python_attr(cls, "__new__") or type(cls) is not type or
                issubclass(cls, BaseExceptionGroup))


def construct(tx, cls: type, args: list, kwargs: dict) -> Value:
    """``cls(*args, **kwargs)`` for an exception class: its builtin
    ``__new__`` (``args`` set to the arguments), then its ``__init__``, run
    traced when written in Python."""
    if not constructible(cls):
        raise GraphBreak("JF012", f"constructing exception {cls.__name__}")
    exc = ExcV(cls, list(args))
    init = inspect.getattr_static(cls, "__init__")
    if isinstance(init, types.FunctionType):
        tx.inline_function(init, [exc] + list(args), kwargs, None)
    else:
        exc._builtin_init(tx, list(args), kwargs)
    return exc


def from_real(exc: BaseException) -> ExcV:
    """The value of a real exception a modelled operation raised (exact:
    class, arguments)."""
    v = ExcV(type(exc), [Const(a) for a in exc.args], model=exc)
    return v


def exception_type(tx, v: Value) -> Value:
    """``type(v)`` of an exception value, as a value (a real exception read
    from the frame: its class, guarded through its source)."""
    if isinstance(v, ObjV) and v.source is not None:
        return tx.output.wrap(type(v.obj), AttrSource(v.source, "__class__"))
    return ObjV(v.python_type())


def traceback_of(tx, v: Value) -> Value:
    """The ``__traceback__`` of an exception being handled."""
    if isinstance(v, ExcV):
        tb = v.attrs.get("__traceback__")
        return tb if tb is not None else Const(None)
    if isinstance(v, ObjV) and v.source is not None:
        return tx.output.wrap(v.obj.__traceback__, AttrSource(v.source, "__traceback__"))
    return TracebackV()


def matches(tx, exc: Value, spec: Value) -> bool:
    """Does ``except spec`` catch ``exc``?"""
    classes = spec.as_python()
    if classes is NO:
        raise GraphBreak("JF012", f"an except clause on a {spec.python_type().__name__}")
    for c in classes if isinstance(classes, tuple) else (classes,):
        if not (isinstance(c, type) and issubclass(c, BaseException)):
            msg = "catching classes that do not inherit from BaseException is not allowed"
            raise would_raise(TypeError, msg, exc=TypeError(msg))
    return issubclass(exc.python_type(), classes)
