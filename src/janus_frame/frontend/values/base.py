"""The protocol every kind of symbolic value follows.

In: nothing but the graph-break registry and sources: every kind of value
builds on this module.
Out: :class:`Value`, whose methods are what Python can do with a value
while tracing -- truth, ``len``, iteration, membership, items, attributes,
calls, its constant Python value, its part in operators (see
operators.py), how it is rebuilt after the graph (``reconstruct``) and how
its recorded mutations are replayed (``replay_mutation``). The defaults are
graph breaks: each kind overrides what it models. Also :data:`NO` (no
constant value), :class:`NullV` and :func:`read_before_effects`.

Methods take ``tx``, the frame being interpreted (interpreter.Translator):
its state (stack, locals, instructions), ``tx.output`` (the graph, guards,
side effects, the wrapping of real objects), ``tx.config``, and the three
ways a kind reaches the interpreter above it: ``tx.call_object`` (what
calling a real Python object means, callees.py), ``tx.inline_function`` and
``tx.inline_code`` (run Python code in a child frame). So this package
imports nothing of the interpreter, and the import graph stays acyclic.

Adding a kind of value: a module in this package with the subclass and
everything it overrides, imported by ``__init__``.
"""
from __future__ import annotations

from ..breaks import GraphBreak
from ..sources import ArgSource, ClosureSource, GlobalSource, Source


class _NoValue:
    def __repr__(self) -> str:
        return "<no constant value>"


NO = _NoValue()  # as_python() of a value that is not made of constants


class Value:
    source: Source | None = None
    # the graph break for an operation this kind of value does not model
    unsupported_id = "JF022"
    # binary operators and comparisons: the operand of higher rank decides
    # first (a tensor operand makes a graph operation whatever the other is)
    operand_rank = 0

    def python_type(self) -> type:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._repr()})"

    def _repr(self) -> str:
        return ""

    def _unsupported(self, what: str) -> GraphBreak:
        return GraphBreak(self.unsupported_id, what)

    # -- Python semantics -----------------------------------------------------
    def as_python(self):
        """The Python value of a value made only of constants, else NO."""
        return NO

    def truth(self, tx) -> bool:
        raise self._unsupported(f"truth value of {self.python_type().__name__}")

    def logical_not(self, tx) -> bool:
        return not self.truth(tx)

    def length(self, tx) -> int:
        raise self._unsupported(f"len() of {self.python_type().__name__}")

    def iterate(self, tx) -> list[Value]:
        """The items an iteration over the value produces, materialised."""
        raise self._unsupported(f"iteration over {self.python_type().__name__}")

    def contains(self, tx, item: Value) -> bool:
        raise self._unsupported(f"membership test on {self.python_type().__name__}")

    def get_item(self, tx, key: Value) -> Value:
        raise self._unsupported(f"subscript of {self.python_type().__name__} with "
                                f"{key.python_type().__name__}")

    def store_item(self, tx, key: Value, value: Value) -> None:
        raise GraphBreak("JF011", f"item assignment on {self.python_type().__name__}")

    def delete_item(self, tx, key: Value) -> None:
        raise GraphBreak("JF011", f"item deletion on {self.python_type().__name__}")

    def get_attr(self, tx, name: str) -> Value:
        raise self._unsupported(f"attribute {name!r} of {self.python_type().__name__}")

    def store_attr(self, tx, name: str, value: Value) -> None:
        raise GraphBreak("JF011", f"attribute assignment {name!r} on "
                         f"{self.python_type().__name__}")

    def delete_attr(self, tx, name: str) -> None:
        raise GraphBreak("JF011", f"attribute deletion {name!r}")

    def call(self, tx, args: list, kwargs: dict) -> Value:
        raise GraphBreak("JF023", f"call of {self.python_type().__name__}")

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        """``self.name(*args, **kwargs)`` for a method the kind models itself
        (a tensor's, a container's); methods that are Python functions are
        inlined by MethodV."""
        raise GraphBreak("JF023", f"method {name} of {self.python_type().__name__}")

    def stand_in(self, tx, name: str, func) -> Value | None:
        """The traced stand-in for calling method ``name`` (resolved to
        ``func``) without arguments, or None (only real objects have them,
        see ObjV and polyfills.py)."""
        return None

    def dict_items(self, tx) -> dict:
        """The items of a mapping (``**kwargs``, ``dict.update``)."""
        raise GraphBreak("JF021", f"dict update from {self.python_type().__name__}")

    def unary_op(self, tx, fn) -> Value:
        raise GraphBreak("JF024", f"{fn.__name__} of {self.python_type().__name__}")

    # -- operands (operators.py asks the operands in rank order) -------------
    def binary_op(self, tx, fn, a: Value, b: Value):
        """``fn(a, b)`` where ``self`` is ``a`` or ``b``; NotImplemented
        when this kind does not decide it."""
        return NotImplemented

    def compare_op(self, tx, fn, a: Value, b: Value):
        return NotImplemented

    def identical(self, tx, other: Value):
        """``self is other`` (True/False), or NotImplemented to let the
        other operand decide."""
        return NotImplemented

    # -- after the graph ------------------------------------------------------
    def reconstruct(self, rb) -> tuple[str, bool]:
        """Python source rebuilding the value in the replacement, and whether
        it needs a temporary (its identity matters, or it must be read
        before side effects are replayed); ``rb`` is rebuild.Rebuilder."""
        raise GraphBreak("JF025", f"a {self.python_type().__name__} built while tracing "
                         "cannot be handed back to Python")

    def replay_mutation(self, rb) -> list[str]:
        """Statements applying the recorded changes of a container read from
        the frame (effects.py)."""
        raise AssertionError(type(self))


class NullV(Value):
    """The NULL that 3.11 pushes below callables."""

    def python_type(self) -> type:
        return type(None)

    def truth(self, tx) -> bool:
        return False

    def identical(self, tx, other: Value):
        return False


NULL = NullV()


def read_before_effects(source: Source) -> bool:
    """Is ``source`` read through an item or attribute (which replayed side
    effects may change), so that a value read from it needs a temporary?"""
    return not isinstance(source, (ArgSource, ClosureSource, GlobalSource))
