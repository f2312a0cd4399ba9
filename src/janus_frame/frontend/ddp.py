"""DistributedDataParallel: graphs split at gradient-bucket boundaries.

In: a closed fx graph, its real example inputs and the backend, at a time
when a ``DistributedDataParallel`` forward is running (the graph is the
wrapped module's, compiled while DDP's forward runs natively: see
``janus_frame.module`` and ``callees.call_object``).
Out: :func:`compile_bucketed` gives a callable that runs the graph as a
chain of pieces, each compiled by the backend on its own, or None when the
graph stays whole (no active DDP module, symbolic sizes, one bucket, the
``optimize_ddp`` option off).

Why: DDP all-reduces gradients bucket by bucket, from hooks that fire when a
parameter's gradient has been accumulated, so that communication overlaps
the rest of backward. A graph compiled as one autograd node computes every
parameter's gradient in one backward call: every bucket becomes ready only
at its end. Split so that each piece's parameters fill about one bucket, the
pieces' backwards run one after the other (in reverse), and each piece's
buckets are reduced while the earlier pieces' backwards still run -- as in
eager. (TorchDynamo's DDPOptimizer does the same.)

The pieces are contiguous runs of the graph's nodes in their order, so the
graph's operations (mutations included) run in the captured order. Buckets
are filled walking the graph backwards (DDP fills its buckets in reverse
parameter order, the order in which backward produces gradients); a
parameter counts in the piece of its last use; a piece is closed only where
it passes a value on (a piece with no outputs would be dead). Each piece is
compiled on its first call, with the real values reaching it (the outputs of
the pieces before it): the backend sees real inputs, their aliasing and
``requires_grad``, as for a whole graph. Graphs with symbolic sizes are not
split (their pieces would need symbolic example inputs); they compile whole,
and DDP's buckets are then all reduced after the graph's backward.
"""
from __future__ import annotations

import functools
import sys
import threading

import torch
import torch.fx

from .. import torch_compat


@functools.lru_cache(maxsize=None)
def ddp_class():
    """``DistributedDataParallel``, or None where torch.distributed is absent."""
    dist = getattr(torch, "distributed", None)
    if dist is None or not dist.is_available():
        return None
    return torch.nn.parallel.DistributedDataParallel


def is_ddp(obj) -> bool:
    cls = ddp_class()
    return cls is not None and isinstance(obj, cls)


def is_ddp_forward(fn) -> bool:
    """Is ``fn`` ``DistributedDataParallel.forward`` itself (a subclass's
    override is the user's code, and traced as such)?"""
    cls = ddp_class()
    return cls is not None and getattr(fn, "__code__", None) is cls.forward.__code__


def wrapped_forward(ddp):
    """The code of the forward of the module ``ddp`` wraps (through nested
    DDPs), which DDP's forward calls."""
    mod = ddp
    while is_ddp(mod):
        mod = mod.module
    return type(mod).forward.__code__


def active_ddp():
    """The DDP module whose forward is running (DDP sets it around the
    wrapped module's call, for compilers), or None."""
    if "torch.nn.parallel.distributed" not in sys.modules:
        return None
    cls = ddp_class()
    return None if cls is None else cls._get_active_ddp_module()


def bucket_caps(ddp) -> tuple[int, int]:
    """``(first, rest)``: the byte capacities of DDP's first and later buckets."""
    cap = int(ddp.bucket_bytes_cap)
    cfg = getattr(ddp, "_bucket_config", None)
    first = int(getattr(cfg, "first_bucket_bytes_cap", cap)) if cfg is not None else cap
    return first, cap


def reduced_params(ddp) -> dict[int, int]:
    """``id(parameter) -> bytes`` of the parameters whose gradients DDP reduces."""
    ignore = set(getattr(ddp, "parameters_to_ignore", ()) or ())
    return {id(p): p.numel() * p.element_size()
            for name, p in ddp.module.named_parameters()
            if p.requires_grad and name not in ignore}


def partition(gm: torch.fx.GraphModule, example_inputs, sizes: dict[int, int],
              first_cap: int, cap: int) -> list[list[torch.fx.Node]]:
    """The graph's operation nodes (placeholders and the output excluded),
    in order, cut into pieces of about one bucket of parameters each."""
    nbytes = {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for n, x in zip(placeholders, example_inputs):
        if isinstance(x, torch.Tensor) and id(x) in sizes:
            nbytes[n] = sizes[id(x)]
    neutral = _neutral_points(gm)
    pieces: list[list[torch.fx.Node]] = [[]]
    filled = [0]
    members: list[set] = [set()]
    counted: set = set()
    for node in reversed(gm.graph.nodes):
        if node.op in ("placeholder", "output"):
            continue
        limit = first_cap if len(pieces) == 1 else cap
        if filled[0] >= limit and node in neutral and _cuttable(members[0]):
            pieces.insert(0, [])
            filled.insert(0, 0)
            members.insert(0, set())
        for a in node.all_input_nodes:
            if a in nbytes and a not in counted:
                counted.add(a)
                filled[0] += nbytes[a]
        pieces[0].append(node)
        members[0].add(node)
    if len(pieces) > 1 and filled[0] == 0:
        # a preamble using no parameter: part of the piece after it
        pieces[1].extend(pieces.pop(0))
    for p in pieces:
        p.reverse()
    return [p for p in pieces if p]


def _cuttable(members: set) -> bool:
    """May the piece of ``members`` start here? It must pass a value on (a
    piece without outputs would be dead code) and take only tensors from the
    pieces before it (what a backend takes as inputs)."""
    if not any(u not in members for n in members for u in n.users):
        return False
    return all(a.op == "placeholder" or a in members
               or isinstance(a.meta.get("example_value"), torch.Tensor)
               for n in members for a in n.all_input_nodes)


_EXIT_AUTOCAST = torch.amp.autocast_mode._exit_autocast
_ENTER_AUTOCAST = torch.amp.autocast_mode._enter_autocast


def _neutral_points(gm) -> set:
    """The nodes after which the global state is as the graph found it (no
    autocast region open, the grad mode the graph started in): a piece
    boundary elsewhere would end a piece inside a mode switch (each graph
    must leave global state as it found it, output.finish)."""
    grad, depth, out = torch.is_grad_enabled(), 0, set()
    initial = grad
    for n in gm.graph.nodes:
        if n.op == "call_function":
            if n.target is torch_compat.set_grad_enabled_c:
                grad = n.args[0]
            elif n.target is _ENTER_AUTOCAST:
                depth += 1
            elif n.target is _EXIT_AUTOCAST:
                depth -= 1
        if grad == initial and depth == 0:
            out.add(n)
    return out


class _Slot:
    """Where a value of the graph's output is kept while the pieces run."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


class _Piece:
    __slots__ = ("gm", "ins", "outs", "drop", "fn")

    def __init__(self, gm, ins, outs, drop):
        self.gm, self.ins, self.outs, self.drop = gm, ins, outs, drop
        self.fn = None


def split(gm: torch.fx.GraphModule, pieces: list[list[torch.fx.Node]]):
    """What :class:`BucketedGraph` runs: ``(pieces, result, inputs, nslots)``.
    Each value of the graph has a slot (its node's position); a
    :class:`_Piece` holds one GraphModule (its inputs: the values it reads
    from the graph's inputs or from earlier pieces; its outputs: a tuple of
    the values later pieces or the graph's output read), the slots it reads
    and writes, and the slots no later piece reads. ``result`` is the
    graph's output structure over slots, ``inputs`` the slots of its
    placeholders."""
    nodes = list(gm.graph.nodes)
    slot = {n: i for i, n in enumerate(nodes)}
    owner = {n: k for k, p in enumerate(pieces) for n in p}
    out_node = gm.graph.output_node()
    last_use: dict = {}
    for k, p in enumerate(pieces):
        for n in p:
            for a in n.all_input_nodes:
                last_use[a] = k
    out = []
    name = gm.meta.get("janus_name") if hasattr(gm, "meta") else None
    for k, p in enumerate(pieces):
        g = torch.fx.Graph()
        env: dict = {}
        ins = []
        for n in p:  # inputs first, in the order of first use
            for a in n.all_input_nodes:
                if a not in env and owner.get(a) != k:
                    ph = g.placeholder(a.name)
                    ph.meta = dict(a.meta)
                    env[a] = ph
                    ins.append(slot[a])
        for n in p:
            env[n] = g.node_copy(n, lambda a: env[a])
        outs = [n for n in p if any(owner.get(u) != k for u in n.users)]
        g.output(tuple(env[n] for n in outs))
        sub = torch.fx.GraphModule(gm, g)
        sub.meta["janus_name"] = f"{name or 'graph'}.bucket{k}"
        drop = [slot[a] for a, last in last_use.items()
                if last == k and a not in out_node.all_input_nodes]
        out.append(_Piece(sub, ins, [slot[n] for n in outs], drop))
    result = torch.fx.node.map_arg(out_node.args[0], lambda n: _Slot(slot[n]))
    return out, result, [slot[n] for n in nodes if n.op == "placeholder"], len(nodes)


class BucketedGraph:
    """The graph run as its pieces, each compiled by ``backend`` on first use."""

    def __init__(self, gm, pieces, backend):
        self.pieces, self.result, self.inputs, self.nslots = split(gm, pieces)
        self.backend = backend
        self.lock = threading.Lock()

    @property
    def graphs(self) -> list:
        return [p.gm for p in self.pieces]

    def _compiled(self, piece, args):
        with self.lock:
            if piece.fn is None:
                piece.fn = self.backend(piece.gm, list(args))
        return piece.fn

    def __call__(self, *args):
        vals = [None] * self.nslots
        for i, a in zip(self.inputs, args):
            vals[i] = a
        del args
        for piece in self.pieces:
            ins = [vals[i] for i in piece.ins]
            fn = piece.fn or self._compiled(piece, ins)
            res = fn(*ins)
            del ins
            for i, v in zip(piece.outs, res):
                vals[i] = v
            for i in piece.drop:  # values no later piece reads
                vals[i] = None
        return _rebuild(self.result, vals)


def _rebuild(x, vals):
    """The graph's output structure with the pieces' values in it (plain
    tuples, lists and dicts, as the graph's own code returns)."""
    if isinstance(x, _Slot):
        return vals[x.index]
    if isinstance(x, tuple):
        return tuple(_rebuild(v, vals) for v in x)
    if isinstance(x, list):
        return [_rebuild(v, vals) for v in x]
    if isinstance(x, dict):
        return {k: _rebuild(v, vals) for k, v in x.items()}
    return x


def compile_bucketed(gm: torch.fx.GraphModule, example_inputs, backend, output, options):
    """The graph as DDP-bucket pieces (a :class:`BucketedGraph`), or None
    when it stays whole."""
    if not getattr(options, "optimize_ddp", True) or output.sym_inputs:
        return None
    ddp = active_ddp()
    if ddp is None or not torch.is_grad_enabled():
        return None
    sizes = reduced_params(ddp)
    if not sizes:
        return None
    first, cap = bucket_caps(ddp)
    pieces = partition(gm, example_inputs, sizes, first, cap)
    if len(pieces) < 2:
        return None
    gm.meta["janus_ddp_pieces"] = len(pieces)  # for explain()
    return BucketedGraph(gm, pieces, backend)
