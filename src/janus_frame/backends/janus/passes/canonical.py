"""The canonical form of matrix products, which every matmul-shaped pass matches.

In: a copy of a functional aten graph (``fx.Graph``) whose nodes carry fake
values in ``meta['val']``, and its fake mode.  Out: the same graph, rewritten
in place so that spellings of one computation become one graph:

- every product is ``mm(a, b)`` over 2-D operands: ``addmm(c, a, b)``
  becomes ``mm(a, b) + c`` (the bias an explicit, broadcasting add; the fold
  of :mod:`graph_passes` puts one addend back into the library call), and a
  ``bmm`` of one batch (``einsum`` spells products that way) becomes an
  ``mm`` of the two matrices;
- the transpose of a product read by nothing else is the product of the
  transposed operands (``t(mm(t(g), x))`` is ``mm(t(x), g)``);
- chains of view ops collapse: a view whose elements are exactly those of a
  dense value, in the same memory, is ``view(root)`` or
  ``permute(view(root))`` -- so ``W.t().t()`` is ``W``, the product read back
  through einsum's unsqueeze/permute/view chain is the product, and a
  linear layer's weight gradient ``t(t(mm))`` is the ``mm`` whose sums the
  fold can chain;
- identical view nodes are one node (a module called once per time step
  transposes its weight once per call: the batching passes key products by
  their right operand);
- a broadcast addend of a product read through a reshape (``matmul`` on a
  3-D input adds its bias to ``view(mm, [B, T, N])``) is added before the
  reshape, as ``linear`` does, so both reach the fold alike.

Uses by the graph's output node are never redirected: an output stays the
tensor it was (the caller planned outputs as separate tensors).  Each
rewrite is counted in the ``Counter`` returned by :func:`normalize`.
"""
from __future__ import annotations

import collections

import torch
import torch.fx

aten = torch.ops.aten

# ops whose result is a view of their first argument (no data of their own)
VIEW_OPS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default,
            aten.permute.default, aten.t.default, aten.transpose.int, aten.unsqueeze.default,
            aten.squeeze.dim, aten.squeeze.default, aten.squeeze.dims, aten.alias.default,
            torch.ops.prims.squeeze.default, aten.select.int,
            aten.slice.Tensor, aten.expand.default}

# view ops whose result holds every element of their input, in some order
# (chains of them may collapse; select/slice/expand do not qualify)
# (not reshape: it copies when no strides express the result)
_DENSE_VIEWS = {aten.view.default, aten._unsafe_view.default, aten.permute.default, aten.t.default, aten.transpose.int, aten.unsqueeze.default,
                aten.squeeze.dim, aten.squeeze.default, aten.squeeze.dims, aten.alias.default,
                torch.ops.prims.squeeze.default}


def val(n):
    return n.meta.get("val") if isinstance(n, torch.fx.Node) else None


def call(graph, target, args, fake_mode):
    """A new node computing ``target(*args)``, with its fake value."""
    n = graph.call_function(target, args)
    vals = torch.fx.node.map_arg(args, lambda a: a.meta["val"])
    with fake_mode:
        n.meta["val"] = target(*vals)
    return n


def redirect(old, new):
    """Every use of ``old`` except the output's becomes a use of ``new``;
    ``old`` is erased when nothing reads it any more."""
    old.replace_all_uses_with(new, delete_user_cb=lambda u: u.op != "output")
    if not old.users:
        old.graph.erase_node(old)


def _ints(*xs):
    return all(isinstance(x, int) for x in xs)


def _is(n, *targets):
    return isinstance(n, torch.fx.Node) and n.op == "call_function" and n.target in targets


def normalize(graph: torch.fx.Graph, fake_mode) -> collections.Counter:
    counts = collections.Counter()
    _split_addmm(graph, fake_mode, counts)
    _single_batch_bmm(graph, fake_mode, counts)
    _collapse_views(graph, fake_mode, counts)
    if _transposed_products(graph, fake_mode, counts):
        _collapse_views(graph, fake_mode, counts)
    _cse_views(graph, counts)
    _bias_before_reshape(graph, fake_mode, counts)
    return counts


# -- products --------------------------------------------------------------

def _split_addmm(graph, fake_mode, counts):
    for n in list(graph.nodes):
        if not _is(n, aten.addmm.default) or len(n.args) != 3 \
                or any(n.kwargs.get(k, 1) != 1 for k in ("alpha", "beta")):
            continue
        c, a, b = n.args
        if not isinstance(c, torch.fx.Node) or not isinstance(val(c), torch.Tensor):
            continue
        with graph.inserting_before(n):
            mm = call(graph, aten.mm.default, (a, b), fake_mode)
            add = graph.call_function(aten.add.Tensor, (mm, c))
        add.meta = dict(n.meta)
        n.replace_all_uses_with(add)
        graph.erase_node(n)
        counts["addmm_split"] += 1


def _single_batch_bmm(graph, fake_mode, counts):
    """``bmm`` of one matrix pair: ``unsqueeze(mm(a[0], b[0]), 0)``."""
    for n in list(graph.nodes):
        if not _is(n, aten.bmm.default) or n.kwargs:
            continue
        av, bv = val(n.args[0]), val(n.args[1])
        if not (isinstance(av, torch.Tensor) and isinstance(bv, torch.Tensor)) \
                or not (isinstance(av.shape[0], int) and av.shape[0] == 1):
            continue
        with graph.inserting_before(n):
            a = call(graph, aten.select.int, (n.args[0], 0, 0), fake_mode)
            b = call(graph, aten.select.int, (n.args[1], 0, 0), fake_mode)
            mm = call(graph, aten.mm.default, (a, b), fake_mode)
            new = call(graph, aten.unsqueeze.default, (mm, 0), fake_mode)
        n.replace_all_uses_with(new)
        graph.erase_node(n)
        counts["bmm_to_mm"] += 1


def _transposed_products(graph, fake_mode, counts):
    """``mm(a, b).t()`` read by nothing else: ``mm(b.t(), a.t())`` (a
    transposed weight gradient is then a product the fold can sum; the
    operands' double transposes collapse below).  Not for graph outputs,
    whose strides the caller may rely on, nor for a transpose that is only
    transposed back: ``t(t(mm(a, b)))`` is already the product in the layout
    its reader wants (a linear layer's weight gradient returned as an output,
    whose double transpose the view collapse leaves alone); flipping the
    inner product would store it transposed and copy it into the output."""
    for n in list(graph.nodes):
        if not _is_transpose(n) or any(u.op == "output" for u in n.users) \
                or all(_is_transpose(u) for u in n.users):
            continue
        mm = n.args[0]
        if not (_is(mm, aten.mm.default) and len(mm.users) == 1 and not mm.kwargs):
            continue
        a, b = mm.args
        with graph.inserting_before(n):
            bt = call(graph, aten.permute.default, (b, [1, 0]), fake_mode)
            at = call(graph, aten.permute.default, (a, [1, 0]), fake_mode)
            new = call(graph, aten.mm.default, (bt, at), fake_mode)
        n.replace_all_uses_with(new)
        graph.erase_node(n)
        graph.erase_node(mm)
        counts["transposed_products"] += 1
    return counts["transposed_products"]


def _is_transpose(n):
    return _is(n, aten.permute.default) and list(n.args[1]) == [1, 0]


# -- views -----------------------------------------------------------------

def _dense_view(n):
    """Is ``n`` a view op keeping every element of its input?  (Selecting
    from a dimension of size 1 only drops it.)"""
    if _is(n, *_DENSE_VIEWS):
        return isinstance(n.args[0], torch.fx.Node)
    if _is(n, aten.select.int) and isinstance(n.args[0], torch.fx.Node):
        v = val(n.args[0])
        return isinstance(v, torch.Tensor) and isinstance(v.shape[n.args[1]], int) \
            and v.shape[n.args[1]] == 1
    return False


def _chain(n):
    """(root, length): the first node above ``n`` through dense view ops,
    and how many view ops lead from it to ``n``."""
    k = 0
    while _dense_view(n):
        n = n.args[0]
        k += 1
    return n, k


def _contiguous_strides(shape):
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= s
    return out[::-1]


def _dense_order(v):
    """The dims of ``v`` other than size-1 ones, outermost first, when ``v``
    is a dense (gap-free) permutation of row-major memory, else None."""
    shape, strides = list(v.shape), list(v.stride())
    if not _ints(*shape, *strides):
        return None
    big = [d for d in range(len(shape)) if shape[d] != 1]
    order = sorted(big, key=lambda d: -strides[d])
    if [strides[d] for d in order] != _contiguous_strides([shape[d] for d in order]):
        return None
    return order


def _collapse_views(graph, fake_mode, counts):
    """A chain of two or more view ops (or one that changes nothing) whose
    result covers a dense root value exactly becomes at most
    ``permute(view(root))``.  (The ops are all true views, so the result's
    strides and offset say which elements of the root's memory it reads.)"""
    for n in list(graph.nodes):
        if not _dense_view(n):
            continue
        root, k = _chain(n)
        v, rv = val(n), val(root)
        if not (isinstance(v, torch.Tensor) and isinstance(rv, torch.Tensor)) or k == 0:
            continue
        if not _ints(*rv.shape, *v.shape) or v.numel() != rv.numel() or v.numel() == 0:
            continue
        if not (rv.is_contiguous() and v.storage_offset() == rv.storage_offset()):
            continue
        order = _dense_order(v)
        if order is None:
            continue
        big = [d for d in range(v.dim()) if v.shape[d] != 1]
        if order == big:  # row-major already: a reshape of the root
            shape, perm = list(v.shape), None
        else:
            ones = [d for d in range(v.dim()) if v.shape[d] == 1]
            shape = [v.shape[d] for d in order + ones]
            perm = [(order + ones).index(d) for d in range(v.dim())]
        same = list(rv.shape) == shape
        if (0 if same else 1) + (0 if perm is None else 1) >= k:
            continue  # no shorter than it is
        with graph.inserting_before(n):
            new = root if same else call(graph, aten.view.default, (root, shape), fake_mode)
            if perm is not None:
                new = call(graph, aten.permute.default, (new, perm), fake_mode)
        redirect(n, new)
        counts["views_collapsed"] += 1
    _erase_dead_views(graph)


def _erase_dead_views(graph):
    for n in reversed(list(graph.nodes)):
        if _is(n, *VIEW_OPS) and not n.users:
            graph.erase_node(n)


def _key(n):
    def norm(a):
        if isinstance(a, (list, tuple)):
            return tuple(norm(x) for x in a)
        return a

    return (n.target, norm(n.args), tuple(sorted((k, norm(v)) for k, v in n.kwargs.items())))


def _cse_views(graph, counts):
    """One node per distinct view of the same value (outputs excepted)."""
    seen = {}
    for n in list(graph.nodes):
        if not _is(n, *VIEW_OPS) or any(u.op == "output" for u in n.users):
            continue
        try:
            key = _key(n)
            hash(key)
        except TypeError:
            continue
        first = seen.get(key)
        if first is None:
            seen[key] = n
            continue
        n.replace_all_uses_with(first)
        graph.erase_node(n)
        counts["views_shared"] += 1


# -- bias addends ------------------------------------------------------------

def _bias_before_reshape(graph, fake_mode, counts):
    """``add(view(P, [..., N]), c)`` with ``P`` an [M, N] product (possibly
    with addends already) and ``c`` broadcast over every leading dim:
    ``view(add(P, c'), [..., N])``, ``c'`` the [N] (or [1]) vector of ``c``."""
    for n in list(graph.nodes):
        if not _is(n, aten.add.Tensor) or len(n.args) != 2 or n.kwargs:
            continue
        for r, c in ((n.args[0], n.args[1]), (n.args[1], n.args[0])):
            if not (_is(r, aten.view.default, aten._unsafe_view.default) and len(r.users) == 1):
                continue
            p = r.args[0]
            pv, rv, cv, out = val(p), val(r), val(c), val(n)
            if not all(isinstance(x, torch.Tensor) for x in (pv, rv, cv, out)):
                continue
            if pv.dim() != 2 or not _is_product_sum(p) or cv.dtype != pv.dtype \
                    or out.dtype != pv.dtype or list(out.shape) != list(rv.shape):
                continue
            cs = list(cv.shape)
            if not _ints(*cs, *rv.shape) or not cs or any(s != 1 for s in cs[:-1]) \
                    or cs[-1] not in (1, rv.shape[-1]) or rv.shape[-1] != pv.shape[-1]:
                continue
            with graph.inserting_before(n):
                c1 = c if cv.dim() == 1 else call(graph, aten.view.default, (c, [cs[-1]]), fake_mode)
                add = call(graph, aten.add.Tensor, (p, c1), fake_mode)
                new = call(graph, r.target, (add, list(rv.shape)), fake_mode)
            new.meta = dict(n.meta)
            n.replace_all_uses_with(new)
            graph.erase_node(n)
            graph.erase_node(r)
            counts["bias_before_reshape"] += 1
            break


def _is_product_sum(n):
    """``n`` is a product, or a sum of which one addend is a product."""
    seen = 0
    while seen < 64:
        if _is(n, aten.mm.default):
            return True
        if not (_is(n, aten.add.Tensor) and len(n.args) == 2):
            return False
        a, b = n.args
        if _is(b, aten.mm.default):
            return True
        n = a
        seen += 1
    return False
