"""Function transforms traced into sub-graphs: ``torch.vmap`` (``torch.func.vmap``).

In: ``torch.vmap(func, in_dims, out_dims, randomness, chunk_size=...)``
called while tracing (``func`` any value the trace can call: a function, a
closure, a partial, another vmap), then the vmapped function called on
symbolic arguments.
Out: ``VmapV`` (the vmapped function); calling it traces ``func`` once on
per-example stand-ins of the batched arguments into a sub-graph
(OutputGraph.subgraph: what it reads from the frame becomes inputs of the
root graph, guarded as usual), lifts every value of an enclosing graph that
it uses (closure tensors, arguments with in_dim None) to extra sub-graph
inputs with in_dim None, and records one ``call_function`` node whose target
(``VmapCall``) applies ``torch.vmap`` to the sub-graph module with the
call's dims. Fake-tensor propagation and make_fx/AOTAutograd run that
through functorch (batched aten ops), so every backend sees plain ops.

What the function must not do inside (the sub-graph could not hold it):
speculate on a tensor, switch grad mode or autocast, record a Python side
effect; each is a graph break at the vmap call, which then runs natively.
Pytree-structured in_dims (nested containers of arguments) are a break too.
"""
from __future__ import annotations

import torch
import torch.fx as fx

from ..breaks import GraphBreak, would_raise
from .base import NO, Value
from .containers import ListV, TupleV
from .tensors import TensorV

VMAP_FUNCTIONS = (torch.vmap,)


class VmapCall:
    """The target of a vmap node: ``torch.vmap(gm, ...)(*args)``."""

    __name__ = "vmap_call"
    __qualname__ = "VmapCall"

    def __init__(self, gm: fx.GraphModule, in_dims: tuple, out_dims, randomness: str,
                 chunk_size) -> None:
        self.gm = gm
        self.in_dims = in_dims
        self.out_dims = out_dims
        self.randomness = randomness
        self.chunk_size = chunk_size

    def __call__(self, *args):
        return torch.vmap(self.gm, in_dims=self.in_dims, out_dims=self.out_dims,
                          randomness=self.randomness, chunk_size=self.chunk_size)(*args)

    def __repr__(self) -> str:
        return f"vmap(in_dims={self.in_dims}, out_dims={self.out_dims})"


VmapCall.__module__ = __name__


def make_vmap(tx, args: list, kwargs: dict) -> Value:
    """``torch.vmap(...)``: the vmapped function, its options as constants."""
    names = ("func", "in_dims", "out_dims", "randomness")
    if len(args) > len(names) or set(kwargs) - set(names[len(args):]) - {"chunk_size"}:
        raise would_raise(TypeError, "vmap() got unexpected arguments")
    bound = dict(zip(names, args))
    bound.update(kwargs)
    if "func" not in bound:
        raise would_raise(TypeError, "vmap() missing its func")
    opts = {}
    for name, default in (("in_dims", 0), ("out_dims", 0), ("randomness", "error"),
                          ("chunk_size", None)):
        v = bound.get(name)
        opts[name] = default if v is None else v.as_python()
        if opts[name] is NO:
            raise GraphBreak("JF015", f"vmap {name} that is not a constant")
    return VmapV(bound["func"], **opts)


class VmapV(Value):
    """``torch.vmap(func, ...)`` made while tracing."""

    __slots__ = ("func", "in_dims", "out_dims", "randomness", "chunk_size", "source")

    def __init__(self, func: Value, in_dims, out_dims, randomness, chunk_size) -> None:
        self.func = func
        self.in_dims = in_dims
        self.out_dims = out_dims
        self.randomness = randomness
        self.chunk_size = chunk_size
        self.source = None

    def python_type(self) -> type:
        return type(lambda: None)

    def truth(self, tx) -> bool:
        return True

    def call(self, tx, args: list, kwargs: dict) -> Value:
        out = tx.output
        dims = self.in_dims
        if dims is None or isinstance(dims, int):
            dims = [dims] * len(args)
        elif isinstance(dims, (tuple, list)) and len(dims) == len(args) and \
                all(d is None or type(d) is int for d in dims):
            dims = list(dims)
        else:
            raise GraphBreak("JF002", f"vmap with in_dims {self.in_dims!r} (nested in_dims are "
                             "not traced)")
        mark = (out.effects.version, len(out.speculations), out.grad_enabled,
                len(out.autocast), len(out.tf_modes))
        batched: list[tuple[TensorV, int]] = []
        with out.subgraph() as sub:
            inner = []
            for i, (a, d) in enumerate(zip(args, dims)):
                if d is None:
                    inner.append(a)  # whole, like a closure value: lifted below
                    continue
                if not isinstance(a, TensorV):
                    # torch.vmap raises for this; natively, with its message
                    raise GraphBreak("JF002", "vmap of a non-tensor argument with an in_dim")
                nd = a.fake.dim()
                if not -nd <= d < nd:
                    raise GraphBreak("JF002", "vmap in_dim out of range (torch raises)")
                d %= nd
                inner.append(_per_example(out, sub, a, d, f"vmap_arg{i}"))
                batched.append((a, d))
            if not batched:
                raise GraphBreak("JF002", "vmap with no batched argument (torch raises)")
            result = self.func.call(tx, inner, dict(kwargs))
            if (out.effects.version, len(out.speculations), out.grad_enabled,
                    len(out.autocast), len(out.tf_modes)) != mark:
                raise GraphBreak("JF002", "a vmapped function with Python side effects, "
                                 "speculation or a mode switch")
            outputs = _outputs(result)
            sub.output(outputs[0] if isinstance(result, TensorV) else tuple(outputs))
            lifted = _lift(sub)
        sub.lint()
        gm = fx.GraphModule(torch.nn.Module(), sub)
        target = VmapCall(gm, tuple(d for _, d in batched) + (None,) * len(lifted),
                          self.out_dims, self.randomness, self.chunk_size)
        call_args = [a for a, _ in batched] + [TensorV(n, n.meta["example_value"])
                                               for n in lifted]
        out.tf_bypass += 1  # the modes' handlers ran on the function's operations
        try:
            res = out.call("call_function", target, tuple(call_args), {})
        finally:
            out.tf_bypass -= 1
        if isinstance(result, ListV) and isinstance(res, TupleV):
            return ListV(list(res.items))
        return res


def _per_example(out, sub: fx.Graph, a: TensorV, d: int, name: str) -> TensorV:
    """A placeholder of ``sub`` for what the function sees of ``a``: one
    slice along dim ``d``."""
    f = a.fake
    shape = [s for i, s in enumerate(f.shape) if i != d]
    with out.fake_mode:
        fake = torch.empty(shape, dtype=f.dtype, device=f.device,
                           requires_grad=f.requires_grad)
    node = sub.placeholder(name)
    node.meta["example_value"] = fake
    return TensorV(node, fake)


def _outputs(result: Value) -> list[fx.Node]:
    if isinstance(result, TensorV):
        return [result.node]
    if isinstance(result, (TupleV, ListV)) and type(result) in (TupleV, ListV) and \
            all(isinstance(x, TensorV) for x in result.items) and result.items:
        return [x.node for x in result.items]
    raise GraphBreak("JF002", f"a vmapped function returning {result.python_type().__name__}")


def _lift(sub: fx.Graph) -> list[fx.Node]:
    """Make every node of an enclosing graph that ``sub`` uses an input of
    ``sub`` (after its own inputs); returns those nodes, in order."""
    lifted: dict[fx.Node, fx.Node] = {}
    first_op = next((n for n in sub.nodes if n.op != "placeholder"), None)

    def lift(a):
        if not isinstance(a, fx.Node) or a.graph is sub:
            return a
        ph = lifted.get(a)
        if ph is None:
            if not isinstance(a.meta.get("example_value"), torch.Tensor):
                raise GraphBreak("JF002", "a vmapped function using a size of an outer value")
            with sub.inserting_before(first_op):
                ph = sub.placeholder(f"lifted_{a.name}")
            ph.meta["example_value"] = a.meta["example_value"]
            lifted[a] = ph
        return ph

    for node in list(sub.nodes):
        if node.op == "placeholder" and node in lifted.values():
            continue
        node.args = fx.node.map_arg(node.args, lift)
        node.kwargs = fx.node.map_arg(node.kwargs, lift)
    return list(lifted)
