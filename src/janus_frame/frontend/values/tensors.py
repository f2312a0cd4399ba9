"""Tensors: values in the graph.

In: fx nodes with their fake tensors (graph inputs read from the frame,
results of recorded operations).
Out: ``TensorV`` and ``ItemV`` and what Python does with them while tracing:
operators, subscripts, iteration and method calls become graph operations;
metadata (shape, dtype, ``size()``) is answered from the fake tensor; what
needs the tensor's data in Python (``bool(t)``, ``.item()``, ``.tolist()``)
is a graph break, except ``t.item()`` compared for a branch, which becomes a
speculation site like a branch on the tensor itself.
"""
from __future__ import annotations

import operator
import types

import torch

from ... import _C
from ...torch_compat import TensorBase
from ..breaks import GraphBreak, LeafRowWritten, RowAliased, would_raise
from ..sources import AttrSource
from .base import Value, read_before_effects
from .constants import Const, DerivedConst, DynInt, fold
from .attr_protocol import lookup
from .methods import MethodV

# Tensor attributes that are metadata (constants under the static-shape guards)
_TENSOR_META = {
    "shape", "dtype", "device", "ndim", "is_cuda", "is_cpu", "is_sparse", "is_quantized",
    "is_meta", "layout", "requires_grad", "is_leaf", "is_mkldnn", "is_nested",
}
# Tensor attributes that are tensors derived from the tensor (views)
_TENSOR_VIEWS = {"T", "mT", "H", "mH", "real", "imag", "data"}
# Tensor methods that need the tensor's data in Python
_DATA_DEPENDENT = {"item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__",
                   "data_ptr", "__array__", "__len__"}
# Tensor methods answered from metadata
_TENSOR_META_METHODS = {"size", "dim", "ndimension", "numel", "nelement", "stride",
                        "is_contiguous", "element_size", "is_floating_point", "is_complex",
                        "get_device", "storage_offset", "is_signed", "has_names",
                        "is_inference"}
# Tensor methods that run outside any graph
# (requires_grad_ makes a leaf of autograd's graph: a compiled graph would
# hand it back as the output of its backward node instead)
_AUTOGRAD_METHODS = {"backward", "register_hook", "retain_grad", "requires_grad_",
                     "register_post_accumulate_grad_hook"}
# conversions of a tensor to another kind that the kind's module models,
# registered there (numpy.py: Tensor.numpy()): name -> fn(tx, t, args, kwargs)
CONVERSIONS: dict = {}
# in-place operators: the dunder Python looks for on the left operand's type
_INPLACE = {operator.iadd: "__iadd__", operator.iand: "__iand__",
            operator.ifloordiv: "__ifloordiv__", operator.ilshift: "__ilshift__",
            operator.imatmul: "__imatmul__", operator.imul: "__imul__",
            operator.imod: "__imod__", operator.ior: "__ior__", operator.ipow: "__ipow__",
            operator.irshift: "__irshift__", operator.isub: "__isub__",
            operator.itruediv: "__itruediv__", operator.ixor: "__ixor__"}
# ... and what it falls back to when that type has none
_INPLACE_TO_PLAIN = {fn: getattr(operator, dunder[3:-2]) if dunder[3:-2] not in ("and", "or")
                     else getattr(operator, dunder[3:-2] + "_")
                     for fn, dunder in _INPLACE.items()}
_ORDER = (operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne)


class TensorV(Value):
    """A tensor in the graph: ``node`` is an fx.Node, ``fake`` its fake tensor."""

    __slots__ = ("node", "fake", "source", "cls")
    operand_rank = 3  # any operator with a tensor operand is a graph operation

    def __init__(self, node, fake, source=None, cls: type | None = None) -> None:
        self.node = node
        self.fake = fake
        self.source = source
        self.cls = cls  # the real class of an input (Parameter, Buffer, Tensor)

    def python_type(self) -> type:
        return self.cls or torch.Tensor

    def _repr(self) -> str:
        return f"{self.node.name}: {tuple(self.fake.shape)} {self.fake.dtype}"

    def real_tensor(self, tx) -> torch.Tensor:
        """The real tensor of a graph input."""
        for v, real in tx.output.inputs:
            if v is self:
                return real
        raise GraphBreak("JF009", "tensor input not found")

    # -- Python semantics -----------------------------------------------------
    def truth(self, tx) -> bool:
        raise GraphBreak("JF005", "condition is a tensor")

    def logical_not(self, tx) -> bool:
        raise GraphBreak("JF004", "`not` on a tensor needs its value")

    def length(self, tx) -> int:
        if tx.output.tf_modes:
            n = self.call_method(tx, "__len__", [], {}).as_python()
            if not isinstance(n, int):
                raise GraphBreak("JF016", "len() of a tensor inside a torch-function mode")
            return n
        if self.fake.dim() == 0:
            raise would_raise(TypeError, "len() of a 0-d tensor")
        return int(self.fake.shape[0])  # a dynamic size is specialised

    def iterate(self, tx) -> list[Value]:
        if tx.output.tf_modes:  # Tensor.__iter__ and what it returns: run natively
            raise GraphBreak("JF016", "iteration over a tensor inside a torch-function mode")
        if self.fake.dim() == 0:
            raise would_raise(TypeError, "iteration over a 0-d tensor")
        n = int(self.fake.shape[0])  # unrolled: a dynamic size is specialised
        return [tx.output.call("call_function", operator.getitem, (self, Const(i)), {})
                for i in range(n)]

    def get_item(self, tx, key: Value) -> Value:
        return tx.through_modes(operator.getitem, [self, key], {},
                                lambda: self._get_item(tx, key))

    def _get_item(self, tx, key: Value) -> Value:
        out = tx.output
        if isinstance(key, DynInt) and key._guard is not None and key._value >= 0 \
                and self.fake.dim() > 0:
            # an int that varies between calls indexes through a graph input:
            # a narrow at that offset, a view as x[i] is (a gather would copy,
            # and in-place updates through the row would not reach x)
            src = key.source
            out.guards.add(f"{src.expr()} >= 0", f"{src.name()} >= 0")
            if self.fake.requires_grad and self.fake.is_leaf and out.grad_enabled \
                    and tx.code not in LeafRowWritten.codes:
                # a row of a parameter with grad mode on (an embedding lookup):
                # gathered, which recursion batching can stack.  Writing
                # through it raises in eager (a view of a leaf that requires
                # grad), and one that escapes the graph must alias the
                # parameter: then the frame is traced again with a view here.
                idx = out.int_input(key, vector=True)
                sel = out.call("call_function", torch.index_select, (self, Const(0), idx), {})
                row = out.call("call_method", "squeeze", (sel, Const(0)), {})
                # (marked on both: a view of the row has the gathered tensor as base)
                row.fake._janus_leaf_row = sel.fake._janus_leaf_row = tx.code
                return row
            if tx.code not in RowAliased.codes:
                # any other tensor's row: gathered too (narrow with a tensor
                # offset reads its value: a break on every call), a copy
                # whose uses the segment checks when it closes (see
                # segment.aliased_row); where eager's view shows, the frame
                # is traced again with the narrow
                sel = out.call("call_function", torch.index_select,
                               (self, Const(0), out.int_input(key, vector=True)), {})
                sel.fake._janus_row_of = (self.fake, tx.code)
                return out.call("call_method", "squeeze", (sel, Const(0)), {})
            idx = out.int_input(key)
            sel = out.call("call_function", torch.narrow, (self, Const(0), idx, Const(1)), {})
            return out.call("call_method", "squeeze", (sel, Const(0)), {})
        window = _varying_window(key)
        if window is not None and self.fake.dim() > 0 and isinstance(self.fake.shape[0], int) \
                and 0 <= window[0]._value <= self.fake.shape[0] - window[1]:
            # x[i:i + k] with an int that varies between calls: a narrow at
            # that offset (guarded in range, where it is the slice exactly),
            # not a new constant slice per value of i
            start, k = window
            src, last = start.source, self.fake.shape[0] - k
            out.guards.add(f"0 <= {src.expr()} <= {last}", f"0 <= {src.name()} <= {last}")
            if k == 1 and self.fake.requires_grad and self.fake.is_leaf and out.grad_enabled \
                    and tx.code not in LeafRowWritten.codes:
                # a parameter's row: gathered, as x[i] is above
                sel = out.call("call_function", torch.index_select,
                               (self, Const(0), out.int_input(start, vector=True)), {})
                sel.fake._janus_leaf_row = tx.code
                return sel
            if k >= 1 and tx.code not in RowAliased.codes:
                # any other tensor's window: row i of its windows of k rows
                # (views), gathered as x[i] is above, the window's rows put
                # back first
                wins = out.call("call_method", "unfold", (self, Const(0), Const(k), Const(1)), {})
                sel = out.call("call_function", torch.index_select,
                               (wins, Const(0), out.int_input(start, vector=True)), {})
                sel.fake._janus_row_of = (self.fake, tx.code)
                row = out.call("call_method", "squeeze", (sel, Const(0)), {})
                return out.call("call_method", "movedim", (row, Const(-1), Const(0)), {})
            return out.call("call_function", torch.narrow,
                            (self, Const(0), out.int_input(start), Const(k)), {})
        return out.call("call_function", operator.getitem, (self, key), {})

    def store_item(self, tx, key: Value, value: Value) -> None:
        tx.through_modes(operator.setitem, [self, key, value], {}, lambda: tx.output.call(
            "call_function", operator.setitem, (self, key, value), {}))

    def get_attr(self, tx, name: str) -> Value:
        return tx.through_modes(_getter(name), [self], {}, lambda: self._get_attr(tx, name))

    def _get_attr(self, tx, name: str) -> Value:
        if name in _TENSOR_META:
            if name == "shape":
                check_static(self)
                return tx.output.size_of(self)
            if name == "requires_grad" and self.node.op != "placeholder":
                return Const(self.fake.requires_grad)
            return Const(getattr(self.fake, name))
        if name in _TENSOR_VIEWS:
            return tx.output.call("call_function", getattr, (self, Const(name)), {})
        if name == "grad":
            if self.source is not None and self.node.op == "placeholder":
                real = self.real_tensor(tx)
                pending = tx.output.effects.pending_attr(real, "grad")
                if pending is not None:  # assigned earlier in this trace
                    return pending
                return tx.output.wrap(real.grad, AttrSource(self.source, "grad"))
            raise GraphBreak("JF022", ".grad of a tensor computed in the graph")
        if name in ("grad_fn", "_version", "_base"):
            raise GraphBreak("JF022", f"tensor attribute {name}")
        attr = getattr(torch.Tensor, name, None)
        if attr is None:
            raise would_raise(AttributeError, f"Tensor has no attribute {name!r}")
        if callable(attr) or isinstance(attr, types.MethodDescriptorType):
            # the resolution is guarded (a method replaced after this trace
            # recompiles); one the program replaced is what it calls
            entry = lookup(tx, torch.Tensor, name)
            if torch_own(entry):
                return MethodV(self, name)
            if isinstance(entry, types.FunctionType):
                return MethodV(self, name, entry)
            raise GraphBreak("JF022", f"torch.Tensor.{name} replaced by a "
                             f"{type(entry).__name__}")
        raise GraphBreak("JF022", f"tensor attribute {name}")

    def store_attr(self, tx, name: str, value: Value) -> None:
        if name == "grad" and self.source is not None and self.node.op == "placeholder":
            # `p.grad = None` / `p.grad = g` on an input (optimizers): replayed
            tx.output.effects.store_attr(self.real_tensor(tx), self.source, name, value,
                                         through_descriptor=True)
            return
        super().store_attr(tx, name, value)

    def call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        return tx.through_modes(_method(name), [self, *args], kwargs,
                                lambda: self._call_method(tx, name, args, kwargs))

    def _call_method(self, tx, name: str, args: list, kwargs: dict) -> Value:
        out = tx.output
        if name in _DATA_DEPENDENT:
            if name == "__len__":
                return out.size_of(self, 0) if self.fake.dim() else Const(self.length(tx))
            if name in CONVERSIONS:
                return CONVERSIONS[name](tx, self, args, kwargs)
            if name == "item" and not args and not kwargs and _compared_for_branch(tx) and \
                    self.fake.numel() == 1 and not self.fake.is_complex():
                return ItemV(self)
            raise GraphBreak("JF004", f"Tensor.{name}()")
        if name.endswith("_") and not name.endswith("__") and leaf_row(self.fake) \
                and out.grad_enabled:
            raise LeafRowWritten(leaf_row(self.fake))
        if name in _AUTOGRAD_METHODS:
            if name == "backward":
                done = tx.trace_backward(self, args, kwargs)
                if done is not None:
                    return done
            raise GraphBreak("JF002", f"Tensor.{name}() runs outside any graph")
        if name in _TENSOR_META_METHODS:
            return self._metadata(tx, name, args, kwargs)
        result = out.call("call_method", name, (self, *args), kwargs)
        if name.endswith("_") and not name.endswith("__") and isinstance(result, TensorV):
            return self  # in-place: the result is the receiver itself
        return result

    def _metadata(self, tx, name: str, args: list, kwargs: dict) -> Value:
        check_static(self)
        fake = self.fake
        fake_args = [a.as_python() for a in args]
        if name == "size" and not kwargs and len(fake_args) <= 1 and \
                all(isinstance(a, int) for a in fake_args):
            if fake_args and not -fake.dim() <= fake_args[0] < max(fake.dim(), 1):
                raise would_raise(IndexError, "Tensor.size(): dimension out of range")
            return tx.output.size_of(self, fake_args[0] if fake_args else None)
        if name in ("numel", "nelement") and not args and not kwargs:
            graph = tx.output.graph
            return tx.output.sym_value(fake.numel(), lambda: graph.call_function(
                torch.ops.aten.sym_numel.default, (self.node,)))
        out = fold(getattr(fake, name), *fake_args)
        if isinstance(out.value, torch.SymInt) or isinstance(out.value, tuple) and any(
                isinstance(x, torch.SymInt) for x in out.value):
            # strides and offsets of dynamic tensors: specialised
            out = Const(_specialise(out.value))
        return out

    # -- operands -----------------------------------------------------------------
    def unary_op(self, tx, fn) -> Value:
        return tx.through_modes(fn, [self], {}, lambda: tx.output.call(
            "call_function", fn, (self,), {}))

    def binary_op(self, tx, fn, a: Value, b: Value):
        if fn in _INPLACE and not isinstance(a, TensorV) and tx.output.tf_modes:
            # the left operand's own in-place method (a list extending
            # itself by iterating the tensor): not one tensor operation
            raise GraphBreak("JF016", "an in-place operator on a non-tensor with a tensor "
                             "operand inside a torch-function mode")
        # (dispatched, ``x += y`` binds x to what the handler returns: the
        # in-place method returns x itself)
        return tx.through_modes(fn, [a, b], {}, lambda: self._binary_op(tx, fn, a, b))

    def _binary_op(self, tx, fn, a: Value, b: Value):
        if fn in _INPLACE and not isinstance(a, TensorV):
            # `acc += t` where acc is not a tensor: Python calls acc's own
            # in-place method when its type has one (a list extends), else
            # the plain operator (an int, float, tuple: ``acc = acc + t``)
            # (the type of a constant read from the frame, without specialising it)
            left = type(a._value) if isinstance(a, Const) else a.python_type()
            # objects.lookup, spelled out here (objects.py imports this module):
            # the MRO's entry, guarded, as a class may change
            found = _C.type_lookup(left, _INPLACE[fn], None)
            tx.output.guards.class_attr(left, _INPLACE[fn], found)
            if found is not _C.MISSING:
                return NotImplemented
            fn = _INPLACE_TO_PLAIN[fn]
        out = tx.output.call("call_function", fn, (a, b), {})
        if fn in _INPLACE and isinstance(out, TensorV):
            return a  # `x += y` on a tensor updates x itself: same object after
        return out

    def compare_op(self, tx, fn, a: Value, b: Value):
        if fn in (operator.eq, operator.ne) and (_is_none(a) or _is_none(b)):
            return Const(fn is operator.ne)
        return tx.through_modes(fn, [a, b], {}, lambda: tx.output.call(
            "call_function", fn, (a, b), {}))

    def identical(self, tx, other: Value):
        if isinstance(other, TensorV):
            return self.node is other.node
        return NotImplemented

    def reconstruct(self, rb) -> tuple[str, bool]:
        if self.node.op == "placeholder" and self.source is not None:
            # the input object itself, read before side effects are
            # replayed (``x = lst[0]; lst.clear()``: lst[0] is gone after)
            return self.source.expr(), read_before_effects(self.source)
        i = rb._out_index.get(self.node)
        if i is None:
            i = rb._out_index[self.node] = len(rb.outputs)
            rb.outputs.append(self)
        return f"__jf_o[{i}]", False


class ItemV(Value):
    """``t.item()`` of a one-element tensor about to be compared for a branch
    (``if loss.item() > 0``): the comparison is made on the tensor, so the
    branch is a speculation site like ``if loss > 0``; any other use needs
    the number and breaks the graph there (the value is read after it)."""

    __slots__ = ("tensor",)
    operand_rank = 4  # compared as the tensor, whatever the other operand

    def __init__(self, tensor: TensorV) -> None:
        self.tensor = tensor

    def python_type(self) -> type:
        dt = self.tensor.fake.dtype
        if dt is torch.bool:
            return bool
        return float if dt.is_floating_point else int

    def _repr(self) -> str:
        return f"{self.tensor.node.name}.item()"

    def compare_op(self, tx, fn, a: Value, b: Value):
        x = a.tensor if isinstance(a, ItemV) else a
        y = b.tensor if isinstance(b, ItemV) else b
        if fn in _ORDER and all(isinstance(v, TensorV) or isinstance(v, Const) and
                                type(v._value) in (int, float, bool) for v in (x, y)):
            return tx.output.call("call_function", fn, (x, y), {})
        raise GraphBreak("JF004", "Tensor.item() compared with a non-number")

    def reconstruct(self, rb) -> tuple[str, bool]:
        return f"{rb.expr(self.tensor)}.item()", True  # the number, read after the graph


def _getter(name: str):
    """``t.name`` as an operation (what torch hands a torch-function mode)."""
    return lambda t: getattr(t, name)


def _method(name: str):
    """``t.name(*args, **kwargs)`` as an operation."""
    return lambda t, *args, **kwargs: getattr(t, name)(*args, **kwargs)


def _varying_window(key):
    """``(i, k)`` for the slice ``i:i + k`` (no step) where ``i`` is an int
    that varies between calls, read from the frame, and ``k`` a literal
    count; else None."""
    if key.python_type() is not slice or not (isinstance(key.step, Const) and key.step._guard is None
                                           and key.step._value in (None, 1)):
        return None
    start, stop = key.start, key.stop
    if not (isinstance(start, DynInt) and start._guard is not None and start.source is not None
            and type(start._value) is int):
        return None
    if not (isinstance(stop, DerivedConst) and stop._guard is not None and
            stop.fn in (operator.add, operator.iadd) and len(stop.args) == 2):
        return None
    name = start.source.name()
    same = [isinstance(a, DynInt) and a.source is not None and a.source.name() == name
            for a in stop.args]
    if sum(same) != 1:
        return None
    k = stop.args[same.index(False)]
    if not (isinstance(k, Const) and k._guard is None and type(k._value) is int and k._value >= 0):
        return None
    return start, k._value


def leaf_row(fake):
    """The code that gathered ``fake`` (or the tensor it views) as a
    parameter's row for a varying index (``TensorV._get_item``), or None."""
    return getattr(fake, "_janus_leaf_row", None) or \
        getattr(getattr(fake, "_base", None), "_janus_leaf_row", None)


def check_static(t: TensorV) -> None:
    """Sizes read into Python must be known numbers or sizes of dynamic
    dimensions (backed by the inputs' sizes), not data-dependent."""
    if any(not isinstance(d, int) and not d.node.has_hint() for d in t.fake.shape):
        raise GraphBreak("JF006", "reading the size of a tensor whose shape depends on data")


def _compared_for_branch(tx) -> bool:
    """Do the next instructions compare the value just computed with a
    loaded operand and branch on the result (``if t.item() > 0:``)?"""
    nxt = [ins.name for ins in tx.instrs[tx.ip:tx.ip + 3]]
    return len(nxt) == 3 and nxt[0] in ("LOAD_CONST", "LOAD_FAST", "LOAD_GLOBAL",
                                         "LOAD_DEREF") and nxt[1] == "COMPARE_OP" and \
        nxt[2] in ("POP_JUMP_FORWARD_IF_TRUE", "POP_JUMP_FORWARD_IF_FALSE",
                   "POP_JUMP_IF_TRUE", "POP_JUMP_IF_FALSE")  # 3.11; 3.12+


def _specialise(x):
    """A metadata result as plain ints (SymInts are guarded to their value)."""
    if isinstance(x, torch.SymInt):
        return int(x)
    if type(x) in (tuple, torch.Size):
        return type(x)(_specialise(y) for y in x)
    return x


def _is_none(v: Value) -> bool:
    return isinstance(v, Const) and v.value is None


def torch_own(entry) -> bool:
    """``entry`` (a raw class-dict entry of torch.Tensor's MRO) is torch's
    own: a method of the C tensor base, or a function, property or
    classmethod defined in torch; anything else the program put there."""
    objclass = getattr(entry, "__objclass__", None)
    if isinstance(objclass, type) and issubclass(TensorBase, objclass):
        return True
    fn = entry.fget if isinstance(entry, property) else getattr(entry, "__func__", entry)
    mod = getattr(fn, "__module__", None) or ""
    return mod == "torch" or mod.startswith("torch.")
