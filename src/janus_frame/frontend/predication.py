"""Predication of relaxed branch sites: both sides of an ``if`` on a tensor
traced into the same graph, the results selected with ``torch.where``; a
``while`` on a tensor unrolled a bounded number of times, each iteration
selected by whether the loop is still running (with the bound speculated).

In: a Translator at a forward conditional jump on a one-element tensor whose
site is relaxed (its outcome keeps changing, so speculation does not pay).
Out: the Translator past the join point of the two sides, every value that
differs between them merged with ``torch.where(cond, if_true, if_false)``;
or ``NoPredication`` when the sides are not fit for it, and the frame is
traced again with the site breaking the graph (one resume function per side).

Fit means: both sides only compute (no side effect, no container or tensor
mutation, no random numbers, no return, no loop back-edge, no break of their
own); the values they leave differ only in tensors of the same shape, dtype
and device; and every operation has a finite derivative wherever its inputs
are finite (``where`` backpropagates zero times the unselected side's local
gradient, so a side computing ``sqrt`` or ``log`` of what the other side
guards against would turn gradients into NaN).
"""
from __future__ import annotations

import operator

import torch

from ..torch_compat import c_nn
from .breaks import GraphBreak, NoPredication
from .pyversion import while_loop_test
from .values import Const, SymV, TensorV

# Opcodes a side may run: pure data flow. Everything else (stores to
# attributes/items/globals/cells, deletes, returns, yields, with-blocks,
# imports, raising) makes the side unfit.
_SIDE_OPS = {
    "NOP", "RESUME", "CACHE", "LOAD_FAST", "STORE_FAST", "LOAD_CONST", "LOAD_GLOBAL",
    "LOAD_DEREF", "LOAD_CLOSURE", "LOAD_ATTR", "LOAD_METHOD", "LOAD_NAME", "BINARY_OP",
    "COMPARE_OP", "UNARY_NEGATIVE", "UNARY_POSITIVE", "UNARY_NOT", "UNARY_INVERT",
    "BINARY_SUBSCR", "BUILD_TUPLE", "BUILD_LIST", "BUILD_SLICE", "UNPACK_SEQUENCE",
    "PRECALL", "CALL", "PUSH_NULL", "KW_NAMES", "POP_TOP", "COPY", "SWAP",
    "JUMP_FORWARD", "POP_JUMP_FORWARD_IF_TRUE", "POP_JUMP_FORWARD_IF_FALSE",
    "POP_JUMP_FORWARD_IF_NONE", "POP_JUMP_FORWARD_IF_NOT_NONE", "JUMP_IF_TRUE_OR_POP",
    "JUMP_IF_FALSE_OR_POP", "IS_OP", "CONTAINS_OP", "FORMAT_VALUE", "BUILD_STRING",
    # 3.12 and 3.13 forms of the same data flow
    "LOAD_FAST_CHECK", "BINARY_SLICE", "CALL_INTRINSIC_1", "POP_JUMP_IF_TRUE",
    "POP_JUMP_IF_FALSE", "POP_JUMP_IF_NONE", "POP_JUMP_IF_NOT_NONE", "TO_BOOL",
    "LOAD_FAST_LOAD_FAST", "STORE_FAST_STORE_FAST", "STORE_FAST_LOAD_FAST", "CALL_KW",
    "CONVERT_VALUE", "FORMAT_SIMPLE", "FORMAT_WITH_SPEC",
}

# Operations with a finite derivative wherever their inputs are finite
_SAFE_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.neg, operator.pos, operator.getitem,
    operator.matmul, torch.add, torch.sub,
    torch.mul, torch.neg, torch.tanh, torch.sigmoid, torch.relu, torch.clamp, torch.where,
    torch.matmul, torch.mm, torch.bmm, torch.cat, torch.stack, torch.zeros_like,
    torch.ones_like, torch.maximum, torch.minimum, torch.abs, torch.sum, torch.mean,
    torch.transpose, torch.reshape, torch.flatten, torch.squeeze, torch.unsqueeze,
    torch.nn.functional.linear, torch.nn.functional.relu, torch.nn.functional.leaky_relu,
    torch.nn.functional.hardtanh, torch.nn.functional.gelu, torch.nn.functional.silu,
    c_nn.linear, c_nn.gelu, c_nn.leaky_relu, c_nn.hardtanh,
    # comparisons and sizes carry no gradient
    operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne,
    torch.ops.aten.sym_size.int,
}
_SAFE_METHODS = {
    "add", "sub", "mul", "neg", "tanh", "sigmoid", "relu", "clamp", "clip", "abs", "sum",
    "mean", "view", "reshape", "transpose", "t", "permute", "unsqueeze", "squeeze", "expand",
    "expand_as", "contiguous", "flatten", "matmul", "mm", "bmm", "__getitem__", "clone",
    "detach", "float", "double", "to", "type_as", "maximum", "minimum",
}


def predicate_branch(tx, v: TensorV, ins, when: bool, site) -> None:
    """Trace both sides of the jump ``ins`` (taken when ``bool(v) == when``)
    and merge them; leaves ``tx`` at the join point."""
    out = tx.output
    jump_ip, fall_ip = tx.labels[ins.arg], tx.ip
    stack0, locals0 = list(tx.stack), dict(tx.locals)
    lazy0 = dict(tx.lazy_args)  # arguments not read yet: a side may read them
    nodes0 = len(out.graph.nodes)
    effects0, specs0 = out.effects.version, len(out.speculations)

    # the fall-through side ends where the other starts (no else), or with
    # the jump over the else side (its target is the join point)
    out.predicating = site  # container mutations end the attempt (values.containers)
    try:
        join = _run_side(tx, site, fall_ip, jump_ip, None)
        fall_state = (list(tx.stack), dict(tx.locals))
        tx.stack, tx.locals = list(stack0), dict(locals0)
        lazy_fall, tx.lazy_args = tx.lazy_args, dict(lazy0)
        tx.ip = jump_ip
        if join != jump_ip:
            _run_side(tx, site, jump_ip, join, join)
        jump_state = (list(tx.stack), dict(tx.locals))
    finally:
        out.predicating = None

    if out.effects.version != effects0 or len(out.speculations) != specs0:
        raise NoPredication(site, "a side has side effects")
    new_nodes = set(list(out.graph.nodes)[nodes0:])
    true_state, false_state = (jump_state, fall_state) if when else (fall_state, jump_state)
    cond = _condition(tx, v)
    tx.stack = [_merge(tx, site, cond, a, b) for a, b in _zip(site, true_state[0],
                                                             false_state[0])]
    # an argument read on one side only is the same value on the other
    read = {k for k in lazy0 if k not in lazy_fall or k not in tx.lazy_args}
    for k in read:
        for state in (true_state, false_state):
            if k not in state[1]:
                other = false_state if state is true_state else true_state
                state[1][k] = other[1][k]
    tx.lazy_args = {k: v for k, v in lazy0.items() if k not in read}
    if set(true_state[1]) != set(false_state[1]):
        raise NoPredication(site, "a local is set on one side only")
    tx.locals = {k: _merge(tx, site, cond, true_state[1][k], false_state[1][k])
                 for k in true_state[1]}
    _check_selected(site, out, new_nodes, nodes0)
    tx.ip = join
    site.predicated = True


def is_loop_entry(tx, ins) -> bool:
    """``while cond: body``: a forward jump to the exit, the body, the
    condition again and the jump back to the body's start (its shape per
    version: pyversion.while_loop_test)."""
    return while_loop_test(tx.instrs, tx.labels, tx.ip - 1) is not None


def predicate_loop(tx, v: TensorV, ins, when: bool, site) -> None:
    """A while loop on a tensor condition, unrolled ``site.trip_limit``
    times with every iteration predicated on the loop still running; that
    it has stopped by then is speculated (checked after the segment, a miss
    reruns the frame natively and doubles the limit)."""
    out = tx.output
    jump_ip, body_ip = tx.labels[ins.arg], tx.ip
    # the test at the loop's end, and its polarity: does a true condition stay?
    test_ip, stay = while_loop_test(tx.instrs, tx.labels, tx.ip - 1)
    nodes0 = len(out.graph.nodes)
    effects0, specs0 = out.effects.version, len(out.speculations)
    running = _condition(tx, v)
    if when:  # the entry jump leaves the loop when bool(v) is True
        running = out.call("call_function", torch.logical_not, (running,), {})
    out.predicating = site
    try:
        for _ in range(site.trip_limit):
            stack0, locals0, lazy0 = list(tx.stack), dict(tx.locals), dict(tx.lazy_args)
            _run_side(tx, site, body_ip, test_ip, test_ip)
            again = tx.stack.pop()
            if not isinstance(again, TensorV) or again.fake.numel() != 1:
                raise NoPredication(site, "the loop condition is not a one-element tensor")
            for k in lazy0:
                if k not in tx.lazy_args and k not in locals0:
                    locals0[k] = tx.locals[k]  # read in the body: the same value before
            if set(tx.locals) != set(locals0):
                raise NoPredication(site, "the body sets a local it did not have")
            tx.stack = [_merge(tx, site, running, a, b) for a, b in _zip(site, tx.stack, stack0)]
            tx.locals = {k: _merge(tx, site, running, tx.locals[k], locals0[k])
                         for k in tx.locals}
            again = _condition(tx, again)
            if not stay:
                again = out.call("call_function", torch.logical_not, (again,), {})
            running = out.call("call_function", torch.logical_and, (running, again), {})
    finally:
        out.predicating = None
    if out.effects.version != effects0 or len(out.speculations) != specs0:
        raise NoPredication(site, "the loop body has side effects")
    _check_selected(site, out, set(list(out.graph.nodes)[nodes0:]), nodes0)
    out.speculations.append((running, False, site))  # stopped within the limit
    tx.ip = jump_ip
    site.predicated = True
    site.loop = True


def _check_selected(site, out, new_nodes: set, nodes0: int) -> None:
    """Every operation computing a value that ``where`` selects must have a
    finite derivative (conditions carry no gradient)."""
    todo = [a for n in list(out.graph.nodes)[nodes0:]
            if n.op == "call_function" and n.target is torch.where for a in n.args[1:]]
    seen = set()
    while todo:
        n = todo.pop()
        if not hasattr(n, "op") or n in seen or n not in new_nodes:
            continue
        seen.add(n)
        if not _grad_safe(n):
            raise NoPredication(site, f"{n.target} in a side")
        if n.op == "call_function" and n.target is torch.where:
            todo += list(n.args[1:])
        else:
            todo += [a for a in n.all_input_nodes]


def _run_side(tx, site, start: int, end: int, join: int | None) -> int:
    """Run instructions from ``start`` until ``end`` is reached (the join
    point when known); the fall-through side may instead end with a forward
    jump past ``end``, whose target is returned as the join point."""
    instrs = tx.instrs
    tx.ip = start
    while tx.ip != end:
        if not start <= tx.ip < end:
            raise NoPredication(site, "a side leaves the branch")
        ins = instrs[tx.ip]
        if ins.name not in _SIDE_OPS:
            raise NoPredication(site, f"{ins.name} in a side")
        if join is None and ins.name == "JUMP_FORWARD" and tx.labels[ins.arg] > end:
            tx.ip += 1
            return tx.labels[ins.arg]  # the end of the else side
        index = tx.ip
        tx.ip += 1
        if ins.lineno is not None:
            tx.lineno = ins.lineno
        try:
            tx.step(ins, index)
        except GraphBreak as gb:
            raise NoPredication(site, f"a side breaks the graph: {gb.reason}") from None
    return end


def _zip(site, a: list, b: list):
    if len(a) != len(b):
        raise NoPredication(site, "the sides leave different stacks")
    return zip(a, b)


def _condition(tx, v: TensorV) -> TensorV:
    call = tx.output.call
    if v.fake.dim():
        v = call("call_method", "reshape", (v, Const(())), {})
    if v.fake.dtype is not torch.bool:
        v = call("call_function", operator.ne, (v, Const(0)), {})
    return v


def _merge(tx, site, cond: TensorV, a, b):
    if a is b:
        return a
    if isinstance(a, TensorV) and isinstance(b, TensorV):
        fa, fb = a.fake, b.fake
        if fa.shape != fb.shape or fa.dtype != fb.dtype or fa.device != fb.device:
            raise NoPredication(site, "the sides leave tensors of different shapes or types")
        return tx.output.call("call_function", torch.where, (cond, a, b), {})
    if isinstance(a, Const) and isinstance(b, Const) and not isinstance(a, SymV) and \
            not isinstance(b, SymV):
        x, y = a.value, b.value
        if type(x) is type(y) and (x is y or x == y):
            return a
    raise NoPredication(site, f"the sides leave different {type(a).__name__} values")


def _grad_safe(node) -> bool:
    if node.op == "placeholder" or node.op == "get_attr":
        return True
    if node.op == "call_method":
        return node.target in _SAFE_METHODS
    if node.op != "call_function":
        return False
    if node.target in (operator.truediv, torch.div) and len(node.args) == 2 and \
            not hasattr(node.args[1], "op"):
        return True  # division by a Python number
    return node.target in _SAFE_FUNCTIONS
