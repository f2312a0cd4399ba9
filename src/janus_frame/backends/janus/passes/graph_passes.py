"""Rewrites of a functional aten graph before it is lowered.

In: an ``fx.GraphModule`` of decomposed aten ops with ``meta['val']`` on
every node.  Out: the same module when nothing applies, else a new module over
a rewritten copy of the graph (the caller's graph is never modified: an
inference graph may be the very module the frontend captured), whose
``meta['janus_passes']`` counts what each rewrite did.

First the graph is brought to the canonical form of :mod:`canonical`: every
product an ``mm`` of 2-D operands, every bias an explicit add, view chains
collapsed, one node per view.  ``nn.Linear``, ``F.linear``, ``x @ W.t() +
b``, ``torch.addmm``, ``torch.matmul`` on N-D inputs and ``einsum`` then
give the same graph, and the rewrites below match only that form:

Row products (``_batch_row_products``): ``base[t] @ w`` for every t of a contiguous
``base`` (an RNN's input projection at each step) becomes one product
``base.view(T*M, K) @ w`` whose rows are selected per step.

Shared operands (``_batch_shared_operand``): products ``l_i @ w`` sharing ``w`` whose left
operands do not depend on any of the products (an RNN backward's
``dgates_t @ w_ih.T`` for the input gradient at each step, while the
recurrence runs through ``w_hh``) become one product of the stacked left
operands, placed after the last of them; the nodes reading the products are
moved after it (legal because nothing the operands depend on reads them).

Folding (``_fold``): a sum holding products, ``c + a1 @ b1 + ... + d``,
becomes a chain of ``addmm`` calls accumulating into one addend ``c`` (of
the sum's full shape if one is, else the bias of a lone product, else the
first product), the other addends added after it.  The library then adds each product while writing it,
instead of a separate pass reading two matrices and writing a third.  This
matters where autograd sums per-use gradients of a weight: an LSTM unrolled
over T steps has, per weight, T matrix products summed by T - 1 adds of the
whole gradient; folded, it is one chain of accumulating library calls (and
one live accumulator instead of T products).  The same holds for ``x @ w_ih
+ h @ w_hh + b`` (or ``ih(x) + hh(h)``) in the forward graph.

Merging (``_merge_chains``): such a chain ``c + a1 @ b1 + ... + aT @ bT`` whose
inner dimensions are small (a weight gradient summed over T time steps of a
batch of 16) becomes ``c + cat(a) @ cat(b)``: one well-shaped product
instead of T thin ones each reading and writing the whole accumulator.

``optimize`` runs them in the order: canonical form, row products, shared
operands, fold, merge.  New nodes get fake values from the graph's fake mode
(a fresh one when the graph's values are real tensors).
"""
from __future__ import annotations

import collections

import torch
import torch.fx

from ....torch_compat import OpOverload, detect_fake_mode, statically_known_true

from .canonical import call as _call, normalize

aten = torch.ops.aten


def _val(n):
    return n.meta.get("val") if isinstance(n, torch.fx.Node) else None


def _same_size(a, b) -> bool:
    # statically: comparing symbolic sizes with == would add shape guards
    # from inside the backend, after the frontend has rendered its guards
    return len(a) == len(b) and all(statically_known_true(x == y) for x, y in zip(a, b))


def _broadcasts_to(c, shape) -> bool:
    cs = list(c.shape)
    if len(cs) > len(shape):
        return False
    for x, y in zip(reversed(cs), reversed(list(shape))):
        if not (statically_known_true(x == 1) or statically_known_true(x == y)):
            return False
    return True


_PRODUCTS = (aten.mm.default, aten.addmm.default, aten.bmm.default)


def _copy(gm):
    graph = torch.fx.Graph()
    out, old_output = graph.graph_copy(gm.graph, {}, return_output_node=True)
    graph.output(out).meta = dict(old_output.meta)
    return graph


def _fake_mode(graph):
    from ....torch_compat import FakeTensorMode

    mode = detect_fake_mode([n.meta.get("val") for n in graph.nodes])
    return mode if mode is not None else FakeTensorMode(allow_non_fake_inputs=True)


def optimize(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """The caller's module when nothing applies, else a rewritten copy with
    ``meta['janus_passes']``: a Counter of rewrites by kind."""
    if not any(n.op == "call_function" and n.target in _PRODUCTS for n in gm.graph.nodes):
        return gm
    graph = _copy(gm)
    fake_mode = _fake_mode(graph)
    counts = normalize(graph, fake_mode)
    cats = {}
    counts["row_products"] += _batch_row_products(graph, fake_mode)
    counts["shared_operand"] += _batch_shared_operand(graph, cats, fake_mode)
    _fold(graph, counts, fake_mode)
    counts["merge"] += _merge_chains(graph, cats, fake_mode)
    counts = collections.Counter({k: v for k, v in counts.items() if v})
    if not counts:
        return gm
    graph.lint()
    out = torch.fx.GraphModule(gm, graph)
    out.meta["janus_passes"] = counts
    return out


# -- sums of products become chains of accumulating library calls -----------

def _is_sum(n, dtype):
    v = _val(n)
    return (n.op == "call_function" and n.target is aten.add.Tensor and not n.kwargs
            and len(n.args) == 2 and all(isinstance(a, torch.fx.Node) for a in n.args)
            and isinstance(v, torch.Tensor) and v.dtype == dtype)


def _sum_tree(root):
    """(leaves, inner nodes, root first) of the sum rooted at ``root``: adds
    of two nodes (no alpha) of the root's dtype, each inner one read only by
    its parent."""
    dtype = _val(root).dtype
    leaves, inner, todo = [], [], [root]
    while todo:
        n = todo.pop()
        if _is_sum(n, dtype) and (n is root or len(n.users) == 1):
            inner.append(n)
            todo.extend(reversed(n.args))
        else:
            leaves.append(n)
    return leaves, inner


def _fold_plan(root):
    """(products in graph order, accumulator, other addends, inner nodes) when
    the sum at ``root`` holds a product that can accumulate into a library
    call, else None.  Products: ``mm`` read once, of the sum's shape and
    dtype.  The accumulator (what the first product is added to): an addend
    of the sum's full shape if there is one, else for a lone product one that
    broadcasts to it (a bias), else the first product itself; the other
    addends are added after the chain (where they fuse into the kernel
    reading the sum)."""
    out = _val(root)
    if not isinstance(out, torch.Tensor) or not out.dtype.is_floating_point \
            or not _is_sum(root, out.dtype):
        return None
    leaves, inner = _sum_tree(root)
    products, others = [], []
    for leaf in leaves:
        v = _val(leaf)
        if (_is_mm(leaf) and len(leaf.users) == 1 and leaves.count(leaf) == 1
                and isinstance(v, torch.Tensor) and v.dtype == out.dtype
                and _same_size(v.shape, out.shape)):
            products.append(leaf)
        else:
            others.append(leaf)
    if not products:
        return None
    usable = [c for c in others if isinstance(_val(c), torch.Tensor)
              and _val(c).dtype == out.dtype and _val(c).device == out.device
              and _broadcasts_to(_val(c), out.shape)]
    full = [c for c in usable if _same_size(_val(c).shape, out.shape)]
    # (a lone product takes a bias, as a linear layer's addmm does; several
    # start from the first product and add the biases after, as eager's
    # x @ w + h @ u + b does)
    acc = (full or (usable if len(products) == 1 else []) or [None])[0]
    if acc is not None:
        others.remove(acc)
    elif len(products) == 1:
        return None  # nothing to add the product to
    order = {n: i for i, n in enumerate(root.graph.nodes)}
    products.sort(key=order.__getitem__)
    return products, acc, others, inner


def _fold(graph, counts, fake_mode):
    """Each sum holding products becomes ``addmm(...addmm(acc, a1, b1)...,
    aT, bT)`` plus the other addends: the library adds each product into the
    running sum while writing it, instead of a separate pass reading two
    matrices and writing a third.  Each ``addmm`` stands where its product
    stood (or just after the running sum it reads, when that comes later), so
    a sum of gradients over T steps keeps one live accumulator."""
    for root in list(graph.nodes):
        if getattr(root, "_erased", False) or not isinstance(_val(root), torch.Tensor):
            continue
        if len(root.users) == 1 and _is_sum(next(iter(root.users)), _val(root).dtype):
            continue  # an inner node of a larger sum: planned from its root
        plan = _fold_plan(root)
        if plan is None:
            continue
        products, acc, others, inner = plan
        run = acc
        if run is None:
            run, products = products[0], products[1:]
        order = {n: i for i, n in enumerate(graph.nodes)}
        for p in products:
            where = p if order[run] < order[p] else run.next
            with graph.inserting_before(where):
                run = _call(graph, aten.addmm.default, (run, p.args[0], p.args[1]), fake_mode)
            order[run] = order[where] - 0.5
            counts["fold"] += 1
        with graph.inserting_before(root):
            for c in others:
                run = _call(graph, aten.add.Tensor, (run, c), fake_mode)
        root.replace_all_uses_with(run)
        for n in inner:  # root first: each inner node's only reader goes before it
            graph.erase_node(n)
        for p in products:
            graph.erase_node(p)


# -- merging chains of accumulated products ---------------------------------

MERGE_MIN_TERMS = 3


def _is_mm(n):
    return isinstance(n, torch.fx.Node) and n.op == "call_function" and n.target is aten.mm.default


def _is_plain_addmm(n):
    return (isinstance(n, torch.fx.Node) and n.op == "call_function"
            and n.target is aten.addmm.default and not n.kwargs and len(n.args) == 3)


def _static(*xs):
    return all(isinstance(x, int) for x in xs)


def _merge_plan(tail):
    """(terms [(a, b)], bias or None, chain nodes) for a chain ending at
    ``tail`` worth merging, else None."""
    if not _is_plain_addmm(tail):
        return None
    users = list(tail.users)
    if len(users) == 1 and _is_plain_addmm(users[0]) and users[0].args[0] is tail:
        return None  # not the end of its chain
    terms, nodes, bias, n = [], [], None, tail
    while True:
        nodes.append(n)
        if _is_mm(n):
            terms.append((n.args[0], n.args[1]))
            break
        terms.append((n.args[1], n.args[2]))
        c = n.args[0]
        # the running sum read once: not also an operand of the next product
        # (users counts nodes, not uses: p + p @ w reads p twice)
        if (_is_mm(c) or _is_plain_addmm(c)) and len(c.users) == 1 and c not in n.args[1:]:
            n = c
            continue
        bias = c
        break
    if len(terms) < MERGE_MIN_TERMS:
        return None
    out = _val(tail)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        return None
    m, n_ = out.shape
    ks = []
    for a, b in terms:
        av, bv = _val(a), _val(b)
        if not (isinstance(av, torch.Tensor) and isinstance(bv, torch.Tensor)):
            return None
        if av.dtype != out.dtype or bv.dtype != out.dtype:
            return None
        ks.append(av.shape[1])
    if not _static(m, n_, *ks):
        return None
    # copying the operands side by side costs sum(K) * (M + N) elements; the
    # chain reads and writes the M x N accumulator once per term
    if sum(ks) * (m + n_) >= 2 * len(terms) * m * n_:
        return None
    terms.reverse()
    return terms, bias, nodes


def _cat(graph, cats, parts, dim, fake_mode, before):
    """One cat node per distinct list of parts (the gradients of w_ih and
    w_hh, and the input gradient, all stack the same per-step operand),
    reused when it already stands before ``before`` (the node the caller
    inserts ahead of); else a new one there."""
    key = (tuple(parts), dim)
    cached = cats.get(key)
    if cached is not None and cached.graph is graph:
        order = {n: i for i, n in enumerate(graph.nodes)}
        if cached in order and order[cached] < order[before]:
            return cached
    with graph.inserting_before(before):
        cats[key] = _call(graph, aten.cat.default, (list(parts), dim), fake_mode)
    return cats[key]


def _merge_chains(graph, cats, fake_mode):
    """The number of chains merged."""
    merged = 0
    for tail in list(graph.nodes):
        plan = _merge_plan(tail)
        if plan is None:
            continue
        terms, bias, nodes = plan
        a = _cat(graph, cats, [t[0] for t in terms], 1, fake_mode, tail)
        b = _cat(graph, cats, [t[1] for t in terms], 0, fake_mode, tail)
        with graph.inserting_before(tail):
            if bias is None:
                new = _call(graph, aten.mm.default, (a, b), fake_mode)
            else:
                new = _call(graph, aten.addmm.default, (bias, a, b), fake_mode)
        tail.replace_all_uses_with(new)
        for n in nodes:  # tail first: each node's only user is erased before it
            graph.erase_node(n)
        merged += 1
    return merged


# -- one product for the rows of every step ----------------------------------

def _is_output(n):
    # a graph output must stay a tensor of its own: a view of a shared
    # product would alias the other outputs (AOTAutograd planned them fresh)
    return any(u.op == "output" for u in n.users)


def _row_product_groups(graph):
    """{(base, w): [(t, mm node)]} for products ``select(base, 0, t) @ w``
    covering every t of a contiguous 3-D ``base`` exactly once."""
    groups = {}
    for n in graph.nodes:
        if not _is_mm(n) or not isinstance(n.args[1], torch.fx.Node) or _is_output(n):
            continue
        sel = n.args[0]
        if not (isinstance(sel, torch.fx.Node) and sel.op == "call_function"
                and sel.target is aten.select.int and sel.args[1] == 0):
            continue
        bv = _val(sel.args[0])
        if not isinstance(bv, torch.Tensor) or bv.dim() != 3 or not _static(*bv.shape):
            continue
        if not bv.is_contiguous():
            continue
        groups.setdefault((sel.args[0], n.args[1]), []).append((sel.args[2], n))
    out = {}
    for (base, w), members in groups.items():
        T = _val(base).shape[0]
        ts = [t if t >= 0 else t + T for t, _ in members if isinstance(t, int)]
        if len(ts) == len(members) == T and sorted(ts) == list(range(T)) and T >= 2:
            out[(base, w)] = members
    return out


def _batch_row_products(graph, fake_mode):
    """The number of groups batched."""
    groups = _row_product_groups(graph)
    order = {n: i for i, n in enumerate(graph.nodes)}
    for (base, w), members in groups.items():
        first = min((mm for _, mm in members), key=order.__getitem__)
        T, M, K = _val(base).shape
        with graph.inserting_before(first):
            flat = _call(graph, aten.view.default, (base, [T * M, K]), fake_mode)
            big = _call(graph, aten.mm.default, (flat, w), fake_mode)
            N = _val(big).shape[1]
            rows = _call(graph, aten.view.default, (big, [T, M, N]), fake_mode)
        for t, mm in members:
            with graph.inserting_before(mm):
                sel = _call(graph, aten.select.int, (rows, 0, t), fake_mode)
            mm.replace_all_uses_with(sel)
            graph.erase_node(mm)
    return len(groups)


# -- one product for left operands sharing a right operand --------------------

SHARED_MIN_MEMBERS = 4


def _shared_operand_plans(graph):
    """[(w, members in graph order, node after which the product goes,
    nodes to move after it)] for products sharing right operand ``w``."""
    by_w = {}
    for n in graph.nodes:
        if _is_mm(n) and isinstance(n.args[0], torch.fx.Node) and \
                isinstance(n.args[1], torch.fx.Node) and not _is_output(n):
            by_w.setdefault(n.args[1], []).append(n)
    order = {n: i for i, n in enumerate(graph.nodes)}
    plans = []
    for w, members in by_w.items():
        if len(members) < SHARED_MIN_MEMBERS:
            continue
        vals = [_val(m.args[0]) for m in members]
        if not all(isinstance(v, torch.Tensor) and v.dim() == 2 and _static(*v.shape) for v in vals):
            continue
        if len({v.shape[1] for v in vals}) != 1 or len({v.dtype for v in vals}) != 1:
            continue
        lefts = [m.args[0] for m in members]
        if len(set(lefts)) != len(lefts):
            continue
        # every node from the first product on that depends on a product
        first = order[members[0]]
        # the product goes after the last left operand, or just before the
        # first product when every operand is defined before it
        last = max(max(order[x] for x in lefts), first - 1)
        member_set = set(members)
        dependent = []
        dep = set()
        ok = True
        for n in list(graph.nodes)[first:last + 1]:
            if n in member_set or any(a in dep for a in n.all_input_nodes):
                if n.op != "call_function" or not _movable(n):
                    ok = False
                    break
                dep.add(n)
                dependent.append(n)
        if not ok or any(x in dep for x in lefts):
            continue  # a left operand depends on a product: a recurrence
        plans.append((w, members, list(graph.nodes)[last], dependent))
    return plans


def _movable(n) -> bool:
    """May ``n`` run later than it does?  Not if it mutates, nor if it draws
    random numbers (moving it past another draw changes both results)."""
    t = n.target
    if isinstance(t, OpOverload):
        return not t._schema.is_mutable and torch.Tag.nondeterministic_seeded not in t.tags
    return getattr(t, "__module__", "") == "_operator"  # getitem and friends


def _batch_shared_operand(graph, cats, fake_mode):
    """The number of groups batched."""
    # one group at a time, planned afresh: applying a group moves nodes,
    # which changes where another group's operands are defined
    done = 0
    while True:
        plans = _shared_operand_plans(graph)
        if not plans:
            return done
        done += 1
        w, members, after, dependent = plans[0]
        lefts = [m.args[0] for m in members]
        rows = [_val(x).shape[0] for x in lefts]
        anchor = after.next
        for n in dependent:  # keeps their order, now after the last operand
            anchor.prepend(n)
        here = after.next  # the first moved node, or the first product
        stacked = _cat(graph, cats, lefts, 0, fake_mode, here)
        with graph.inserting_before(here):
            big = _call(graph, aten.mm.default, (stacked, w), fake_mode)
            start = 0
            for m, r in zip(members, rows):
                part = _call(graph, aten.slice.Tensor, (big, 0, start, start + r), fake_mode)
                start += r
                m.replace_all_uses_with(part)
        for m in members:
            graph.erase_node(m)
