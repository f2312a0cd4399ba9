"""Slices of a ``ModuleList`` or ``Sequential`` while tracing.

In: the modules of ``container[a:b]`` (already wrapped), the container's
value and the slice.  Out: :class:`ModuleSliceV`, iterated and indexed as a
list of modules, rebuilt after the graph by slicing the real container again.
"""
from __future__ import annotations

from ..breaks import would_raise
from .base import Value


class ModuleSliceV(Value):
    """``modules[a:b]`` of a ModuleList or Sequential: its modules, iterated
    and indexed while tracing; rebuilt by slicing the real container again
    (a new container, as Python makes one)."""

    __slots__ = ("items", "parent", "key", "source")

    def __init__(self, items: list, parent: Value, key: slice) -> None:
        self.items = items
        self.parent = parent
        self.key = key
        self.source = None

    def python_type(self) -> type:
        return self.parent.python_type()

    def truth(self, tx) -> bool:
        return bool(self.items)

    def length(self, tx) -> int:
        return len(self.items)

    def iterate(self, tx) -> list[Value]:
        return list(self.items)

    def get_item(self, tx, key: Value) -> Value:
        k = key.as_python()
        if isinstance(k, slice):
            return ModuleSliceV(self.items[k], self, k)
        if isinstance(k, int) and not isinstance(k, bool):
            try:
                return self.items[k]
            except IndexError:
                raise would_raise(IndexError, "index out of range") from None
        return super().get_item(tx, key)

    def reconstruct(self, rb) -> tuple[str, bool]:
        return f"{rb.expr(self.parent)}[{rb.fb.const(self.key)}]", True
