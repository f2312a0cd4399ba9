"""Side effects: mutations of Python state recorded while tracing, replayed
after the graph segment ran.

In: mutations the opcode handlers report -- list/dict changes on containers
read from the frame, attribute stores and deletions on objects and modules,
global stores, stores to closure cells of enclosing functions.
Out: Python statements (for the generated replacement) that leave Python
state exactly as eager execution would, plus the bookkeeping that lets later
reads in the same trace see the written values.

Replay happens after every value the replacement hands back has been
evaluated (so a value read before a write keeps its old value), in program
order. How a container's changes are replayed is its kind's business
(``replay_mutation``, values/): appends to a list that the trace never
looked into are replayed as appends, so the list's length is never guarded
and a list that grows every step (losses.append(...)) costs no recompile.
"""
from __future__ import annotations

import torch

from .breaks import GraphBreak
from .sources import ClosureSource, Source
from .values import CellV, ObjV, Value
from .values.objects import DELETED, builtin_entry

_module_setattr = torch.nn.Module.__setattr__
_module_delattr = torch.nn.Module.__delattr__


def _generic(impl, module_impl) -> bool:
    """Is ``impl`` (a class's ``__setattr__`` or ``__delattr__``) the generic
    store: object's, nn.Module's (``module_impl``), or a builtin type's
    entry that is the generic one (types.SimpleNamespace lists it in its own
    dict on 3.11, inherits object's on 3.12+)?"""
    return impl is module_impl or impl is getattr(object, module_impl.__name__) or \
        builtin_entry(impl)


class SideEffects:
    def __init__(self) -> None:
        self._order: list[tuple] = []  # (kind, key) in program order of first effect
        self._containers: dict[int, Value] = {}
        # id(real object) -> (the object, its source, {name: value written})
        self._attrs: dict[int, tuple[object, Source, dict[str, Value]]] = {}
        # (id(object), name) whose last write was object.__setattr__'s
        self._generic_writes: set[tuple[int, str]] = set()
        self._globals: dict[str, Value] = {}
        self._cells: dict[int, CellV] = {}
        self._calls: list[tuple] = []  # deferred (fn, args, kwargs)
        self.version = 0  # counts recordings (predication checks a side records none)

    def __bool__(self) -> bool:
        return bool(self._order)

    # -- recording ---------------------------------------------------------------
    def container_mutated(self, v: Value) -> None:
        """A container read from the frame changed (realised or pending ops)."""
        self.version += 1
        if id(v) not in self._containers:
            self._containers[id(v)] = v
            self._order.append(("container", id(v)))

    def store_attr(self, real, source: Source, name: str, value: Value,
                   through_descriptor: bool = False, generic: bool = False) -> None:
        """``real.name = value`` on an object read from ``source``;
        ``through_descriptor``: the caller knows the descriptor's setter is
        a plain store (Tensor.grad); ``generic``: ``object.__setattr__``
        itself (a class's own ``__setattr__`` calling it), replayed as such."""
        self.version += 1
        cls = type(real)
        if not generic and not _generic(cls.__setattr__, _module_setattr):
            raise GraphBreak("JF011", f"{cls.__name__} customises attribute assignment")
        descr = getattr(cls, name, None)
        if descr is not None and hasattr(type(descr), "__set__") and not through_descriptor:
            raise GraphBreak("JF011", f"assignment through the descriptor {cls.__name__}.{name}")
        if isinstance(real, torch.nn.Module) and isinstance(value, ObjV) and isinstance(
                value.obj, torch.nn.Module):
            raise GraphBreak("JF011", "assigning a submodule")
        entry = self._attrs.get(id(real))
        if entry is None:
            entry = self._attrs[id(real)] = (real, source, {})
        entry[2][name] = value
        (self._generic_writes.add if generic else self._generic_writes.discard)((id(real), name))
        self._order.append(("attr", (id(real), name)))

    def delete_attr(self, real, source: Source, name: str) -> None:
        """``del real.name`` on an object read from ``source`` (the caller
        checked that the attribute is there to delete)."""
        cls = type(real)
        if not _generic(cls.__delattr__, _module_delattr) or isinstance(real, torch.nn.Module):
            raise GraphBreak("JF011", f"{cls.__name__} customises attribute deletion")
        descr = getattr(cls, name, None)
        if descr is not None and hasattr(type(descr), "__delete__"):
            raise GraphBreak("JF011", f"deletion through the descriptor {cls.__name__}.{name}")
        self.version += 1
        entry = self._attrs.get(id(real))
        if entry is None:
            entry = self._attrs[id(real)] = (real, source, {})
        entry[2][name] = DELETED
        self._order.append(("attr", (id(real), name)))

    def pending_attrs_of(self, real) -> bool:
        """Was an attribute of ``real`` written or deleted in this trace?"""
        entry = self._attrs.get(id(real))
        return entry is not None and entry[0] is real and bool(entry[2])

    def pending_attr(self, real, name: str) -> Value | None:
        entry = self._attrs.get(id(real))
        if entry is not None and entry[0] is real:
            return entry[2].get(name)
        return None

    def store_global(self, name: str, value: Value) -> None:
        self.version += 1
        self._globals[name] = value
        self._order.append(("global", name))

    def pending_global(self, name: str) -> Value | None:
        return self._globals.get(name)

    @property
    def deferred_calls(self) -> bool:
        return bool(self._calls)

    def defer_call(self, fn: Value, args: list, kwargs: dict) -> None:
        """A call (print, logging) moved to after the graph (reorder_logging)."""
        self.version += 1
        self._calls.append((fn, args, kwargs))
        self._order.append(("call", len(self._calls) - 1))

    def store_cell(self, cell: CellV) -> None:
        self.version += 1
        if id(cell) not in self._cells:
            self._cells[id(cell)] = cell
        self._order.append(("cell", id(cell)))

    # -- replay ---------------------------------------------------------------------
    def replay(self, rb) -> list[str]:
        """Statements leaving Python state as eager leaves it. Values are
        evaluated through ``rb`` first (into temporaries), writes follow."""
        stmts: list[str] = []
        done_attrs: set = set()
        for kind, key in _first_occurrences(self._order):
            if kind == "container":
                stmts += self._containers[key].replay_mutation(rb)
            elif kind == "attr":
                if key in done_attrs:
                    continue
                done_attrs.add(key)
                _, source, writes = self._attrs[key[0]]
                last = writes[key[1]]
                if last is DELETED:
                    # the generic deletion (delete_attr checked the class),
                    # also where the trace stored the attribute first on an
                    # object that lacked it: then there is nothing to delete
                    stmts.append(f"__jf_h_vars({source.expr()}).pop({key[1]!r}, None)")
                    continue
                val = rb.snapshot(last)
                store = rb.fb.const(object.__setattr__) if key in self._generic_writes \
                    else "__jf_h_setattr"
                stmts.append(f"{store}({source.expr()}, {key[1]!r}, {val})")
            elif kind == "global":
                val = rb.snapshot(self._globals[key])
                stmts.append(f"__jf_h_globals()[{key!r}] = {val}")
            elif kind == "call":
                fn, args, kwargs = self._calls[key]
                parts = [rb.snapshot(a) for a in args]
                parts += [f"{k}={rb.snapshot(a)}" for k, a in kwargs.items()]
                stmts.append(f"{rb.snapshot(fn)}({', '.join(parts)})")
            elif kind == "cell":
                cell = self._cells[key]
                val = rb.snapshot(cell.contents)
                target = cell.write_target
                if isinstance(target, ClosureSource):
                    stmts.append(f"__jf_c_{target.var} = {val}")
                else:
                    stmts.append(f"{target.expr()} = {val}")
        return stmts


def _first_occurrences(order):
    """Program order of effects, each (kind, key) once at its first place."""
    seen = set()
    out = []
    for item in order:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


