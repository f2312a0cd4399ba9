"""Aliasing between a graph's inputs and outputs, decided at compile time and
checked per call.

In: the captured ``fx.GraphModule`` and its example inputs.  Out:
:func:`analyse` -> :class:`AliasInfo` (does any output share memory with an
input or with another output, does the graph change an input's data or
metadata, which inputs share storage), and :func:`guarded` -> the compiled
callable wrapped in a per-call check that the inputs' storage relation is
still the one it was compiled for.

Why: our kernels compute functional values.  A graph whose outputs are views
(of an input, or several of one intermediate), which changes an input's
metadata (``x.t_()``), or whose mutated input shares memory with another
input, needs AOTAutograd's runtime epilogue: it regenerates output aliases
from their base after the kernels ran, applies metadata mutations and gives
aliased mutated inputs one synthetic base.  Such a graph is compiled for the
aliasing pattern of its example inputs; a later call with another pattern
(the same tensor twice, overlapping slices, after distinct tensors, or the
reverse) would read stale data, so it runs the captured graph eagerly
instead -- exactly eager's semantics.  The check runs only for graphs that
mutate an input or were compiled for aliased inputs; the common case (no
mutation, distinct inputs) pays nothing.
"""
from __future__ import annotations

import dataclasses
import operator

import torch


@dataclasses.dataclass
class AliasInfo:
    # an output views an input, is an input, shares memory with another, or
    # is a window into a larger intermediate
    outputs_alias: bool
    mutates: tuple  # inputs whose data or metadata the graph changes
    metadata_mutation: bool
    pattern: tuple  # per input: index of the first input sharing its storage (or its own)
    # how many times eager's in-place updates advance each mutated input's
    # autograd version counter: ((input index, count), ...), and the same
    # for tensor attributes ((attribute path, count), ...)
    bumps: tuple = ()
    attr_bumps: tuple = ()

    @property
    def inputs_alias(self) -> bool:
        return any(isinstance(p, tuple) for p in self.pattern)

    @property
    def needs_epilogue(self) -> bool:
        """Needs AOTAutograd's runtime (our kernels compute fresh buffers)."""
        return self.outputs_alias or self.metadata_mutation or (
            bool(self.mutates) and self.inputs_alias)

    @property
    def needs_check(self) -> bool:
        return bool(self.mutates) or self.inputs_alias


def _key(t):
    """What identifies ``t``'s memory: its storage's base address; an empty
    storage is nobody's alias."""
    s = t.untyped_storage()
    return s.data_ptr() if s.nbytes() else None


def pattern_of(args) -> tuple:
    """Per argument: None (not a tensor, or empty storage), its own index
    (memory nobody else passed), else ``(j, same)``: ``j`` the first tensor
    argument with the same storage, ``same`` the first argument that is this
    very tensor, and both tensors' layouts (AOTAutograd dedupes the same tensor twice, and gives
    overlapping views a synthetic base: two different compiled programs)."""
    first, ident = {}, {}
    out = []
    for i, a in enumerate(args):
        if not isinstance(a, torch.Tensor):
            out.append(None)
            continue
        k = _key(a)
        if k is None:
            out.append(None)
            continue
        j = first.setdefault(k, i)
        same = ident.setdefault(id(a), i)
        if j == i:
            out.append(i)
        else:
            # AOTAutograd's synthetic base is built for these views' layout
            # within their storage: another layout is another program
            first_t = args[j]
            out.append((j, same, tuple(a.shape), a.stride(), a.storage_offset(),
                        tuple(first_t.shape), first_t.stride(), first_t.storage_offset()))
    return tuple(out)


def analyse(gm: torch.fx.GraphModule, example_inputs) -> AliasInfo | None:
    """Run ``gm`` on fake copies of ``example_inputs`` (one fake mode: storage
    sharing is kept) and read aliasing off the result; None when the graph
    cannot be run that way (then the caller keeps its usual path)."""
    from torch.multiprocessing.reductions import StorageWeakRef

    from ....torch_compat import FakeTensorMode

    from ..passes.aten import attr, lift_tensor_attrs

    pattern = pattern_of(example_inputs)
    if any(_is_fake(x) for x in example_inputs):
        return None  # no real storages to relate
    # (sizes passed as symbols: their example values; aliasing does not
    # depend on sizes)
    example_inputs = [x.node.hint if isinstance(x, torch.SymInt) else x for x in example_inputs]
    if any(x is None for x in example_inputs):
        return None
    try:
        # tensor attributes (parameters, optimizer state) become inputs: the
        # fake run must not touch the real ones
        lifted, targets = lift_tensor_attrs(gm)
        inputs = [attr(gm, t) for t in targets] + list(example_inputs)
        mode = FakeTensorMode(allow_non_fake_inputs=False)
        with mode:
            fakes = [mode.from_tensor(x) if isinstance(x, torch.Tensor) else x for x in inputs]
            before = [_meta(f) for f in fakes]
            with torch.no_grad() if not torch.is_grad_enabled() else _null():
                outs = lifted(*fakes)
    except Exception:  # noqa: BLE001 -- an analysis, not a compile: the usual path decides
        return None
    after = [_meta(f) for f in fakes]
    k = len(targets)
    mutates, metadata = [], False
    bumps, attr_bumps = [], []
    for i, (b, a) in enumerate(zip(before, after)):
        if b is not None and a is not None and a[2] > b[2]:
            if i < k:
                attr_bumps.append((targets[i], a[2] - b[2]))
            else:
                bumps.append((i - k, a[2] - b[2]))
        if b is None or a is None or i < k:
            continue  # (attributes are read per call, not passed: no pattern to check)
        if b[0] != a[0]:
            mutates.append(i - k)
            metadata = True
        elif b[1] != a[1]:
            mutates.append(i - k)
    ins = {}
    for i, f in enumerate(fakes):
        if isinstance(f, torch.Tensor):
            ins[StorageWeakRef(f.untyped_storage())] = i
    flat = outs if isinstance(outs, (tuple, list)) else (outs,)
    seen, aliased = set(), False
    for o in flat:
        if not isinstance(o, torch.Tensor):
            continue
        ref = StorageWeakRef(o.untyped_storage())
        if ref in ins or ref in seen or not _fills_storage(o):
            aliased = True
        seen.add(ref)
    return AliasInfo(aliased, tuple(mutates), metadata, pattern, tuple(bumps), tuple(attr_bumps))


def _fills_storage(t) -> bool:
    """Does ``t`` fill its storage from offset 0?  An output that is a window
    into a larger intermediate (``(x * 2)[1:]``, a row of a matmul) is a
    view in eager, holding the whole storage at its offset: our kernels
    would hand out a fresh tensor of its own, so it takes the epilogue
    (split_view_outputs regenerates it from its base)."""
    try:
        return t.storage_offset() == 0 and \
            t.untyped_storage().nbytes() == t.numel() * t.element_size()
    except Exception:  # noqa: BLE001 -- no storage (sparse, opaque): nothing to mimic
        return True


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _is_view(n):
    from ....torch_compat import OpOverload

    return (isinstance(n.target, OpOverload) and n.target.is_view and bool(n.args)
            and isinstance(n.args[0], torch.fx.Node))


def _is_fake(x):
    from ....torch_compat import FakeTensor

    return isinstance(x, FakeTensor)


def _meta(t):
    if not isinstance(t, torch.Tensor):
        return None
    return (tuple(t.shape), tuple(t.stride()), t.storage_offset()), t._version, t._version


def guarded(fn, gm, info: AliasInfo):
    """``fn`` behind a check that the call's inputs share storage as the
    example inputs did; another pattern runs the captured graph ``gm``
    eagerly.  Graphs compiled for distinct inputs (the common case) check
    that the tensor inputs' storages are distinct: one storage address per
    tensor, gathered by C iterators (about 0.25 µs a tensor); only when that
    fails is the exact pattern computed."""
    fn = bump_versions(fn, gm, info)
    if not info.needs_check:
        return fn
    want = info.pattern
    eager = gm.forward
    from ..stats import stats

    def other(args):
        if pattern_of(args) == want:
            return fn(*args)
        stats.alias_mismatches += 1
        return eager(*args)

    tens = [i for i, a in enumerate(want) if a is not None]
    if info.inputs_alias or len(tens) < 2:
        def call(*args):
            return other(args)
    else:
        pick = operator.itemgetter(*tens)
        n = len(tens)
        address = torch.UntypedStorage.data_ptr
        storage = torch.Tensor.untyped_storage

        def call(*args):
            try:
                distinct = len(set(map(address, map(storage, pick(args))))) == n
            except (TypeError, IndexError):  # (not tensors where the example had them)
                distinct = False
            return fn(*args) if distinct else other(args)

    call.__dict__.update(getattr(fn, "__dict__", {}))  # (janus_graph(s), janus_lean ...)
    call.janus_alias = info
    return call


def bump_versions(fn, gm, info: AliasInfo):
    """``fn`` advancing the autograd version counter of every input (and
    tensor attribute of ``gm``) the graph updates in place, as eager's
    in-place ops would: our kernels write through raw pointers, which autograd
    cannot see, so a tensor saved for backward and then updated by the graph
    would pass autograd's "modified by an inplace operation" check and the
    backward would read the new values.  Each counter ends ``count`` above its
    value before the call -- eager's count -- whatever part of it the call
    advanced itself (a library call updating the tensor, an eager fallback)."""
    if not info.bumps and not info.attr_bumps:
        return fn
    from ....torch_compat import increment_version as increment
    from ..passes.aten import attr

    bumps, attr_bumps = info.bumps, info.attr_bumps

    def _targets(args):
        ts = [(args[i], n) for i, n in bumps if i < len(args) and isinstance(args[i], torch.Tensor)]
        return ts + [(attr(gm, t), n) for t, n in attr_bumps]

    def call(*args):
        ts = _targets(args)
        try:
            before = [t._version for t, _ in ts]
        except RuntimeError:  # (inference tensors have no version counter)
            return fn(*args)
        out = fn(*args)
        for (t, n), v in zip(ts, before):
            for _ in range(v + n - t._version):
                increment((t,))
        return out

    call.__dict__.update(getattr(fn, "__dict__", {}))  # (janus_graph(s), janus_lean ...)
    return call


def split_view_outputs(g: torch.fx.GraphModule):
    """Outputs of the aten graph ``g`` that are view chains (``aten.slice``,
    ``aten.view``, ``aten.diagonal`` ...) of an intermediate, taken out of the
    compiled graph and replayed eagerly on its result: our kernels write
    every output into a fresh buffer, where eager returns views sharing the
    intermediate's memory (``y = x * 2; return y, y[1:]``).  View ops only
    compute metadata, so the replay costs a few µs per view.

    Returns None when no output is such a view (``g`` is left as it is), else
    ``(g', epilogue)``: ``g'`` returns the outputs kept, the views' bases and
    the sizes their arguments need (as symbols); ``epilogue(inputs, results)``
    gives the original outputs.  Views of inputs are left to AOTAutograd's
    runtime, which regenerates them from the input itself."""
    from torch.fx.node import map_arg

    out_node = g.graph.output_node()
    outs = list(out_node.args[0])
    keep, index, plan = [], {}, []

    def slot(n):
        if n not in index:
            index[n] = len(keep)
            keep.append(n)
        return index[n]

    for o in outs:
        chain, b = [], o
        while isinstance(b, torch.fx.Node) and b.op == "call_function":
            if _is_view(b):
                chain.append((b, None))
                b = b.args[0]
            elif (b.target is operator.getitem and isinstance(b.args[0], torch.fx.Node)
                  and _is_view(b.args[0]) and isinstance(b.args[1], int)):
                chain.append((b.args[0], b.args[1]))  # a part of split / unbind / chunk
                b = b.args[0].args[0]
            else:
                break
        if not chain or not isinstance(b, torch.fx.Node) or b.op == "placeholder":
            plan.append(("out", slot(o) if isinstance(o, torch.fx.Node) else o))
            continue
        base = slot(b)
        steps = []
        for n, part in reversed(chain):
            args = map_arg(n.args[1:], lambda a: ("sym", slot(a)))
            kwargs = map_arg(n.kwargs, lambda a: ("sym", slot(a)))
            steps.append((n.target, args, kwargs, part))
        plan.append(("view", base, steps))
    if all(p[0] == "out" for p in plan):
        return None
    out_node.args = (tuple(keep),)
    g.graph.eliminate_dead_code()
    g.recompile()

    def value(a, res):
        if isinstance(a, tuple) and len(a) == 2 and a[0] == "sym":
            return res[a[1]]
        if isinstance(a, (list, tuple)):
            return type(a)(value(x, res) for x in a)
        if isinstance(a, dict):
            return {k: value(v, res) for k, v in a.items()}
        return a

    def epilogue(res):
        final = []
        for p in plan:
            if p[0] == "out":
                final.append(res[p[1]] if isinstance(p[1], int) else p[1])
                continue
            t = res[p[1]]
            for op, args, kwargs, part in p[2]:
                t = op(t, *value(args, res), **value(kwargs, res))
                if part is not None:
                    t = t[part]
            final.append(t)
        return final

    return g, epilogue
