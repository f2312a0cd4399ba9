"""Opcode handlers: jumps, branches, loops, with-blocks and return; and the
native steps of the branches, loops and with-blocks a graph segment can end
at.

Conditions on Python values are decided at trace time (the guards keep the
decision valid). A condition on a tensor is speculated on when its site has
been predictable, predicated (both sides in the graph) when it is relaxed,
and otherwise breaks the graph (JF005); the native step then evaluates it
and records its outcome for speculation. Loops are unrolled, with a cap
(JF007). ``with`` supports grad-mode and autocast context managers, which
become mode switches inside the graph, and managers whose ``__enter__`` and
``__exit__`` are Python code outside torch (user classes,
``contextlib.suppress``, ``@contextmanager`` generators), which run traced;
other managers are entered natively (the cleanups are exceptions.py's).

In/out: the frame's stack and instruction pointer.
"""
from __future__ import annotations

from .. import speculation
from ..breaks import GraphBreak
from ..bytecode_info import original_position
from ..predication import is_loop_entry, predicate_branch, predicate_loop
from ..pyversion import FOR_ITER_EXHAUSTED_PUSHES, is_conditional_back_edge
from ..values import Const, CtxV, ExitV, IterV, TensorV
from ..values.contexts import traced_manager
from ..values.generators import GeneratorV
from ..values.modes import mode_value
from ..values.operators import identical
from .registry import FrameReturn, handler, named, native_step

_SENTINEL = object()  # FOR_ITER's native step: the iterator is exhausted

# -- jumps ---------------------------------------------------------------------------


@handler("JUMP_FORWARD")
def JUMP_FORWARD(tx, ins):
    tx.jump(ins.arg)


def _jump_backward(name: str, **versions):
    def jump_backward(tx, ins):
        tx.backedges += 1
        if tx.backedges > tx.config.unroll_limit:
            raise GraphBreak("JF007", f"more than {tx.config.unroll_limit} iterations")
        tx.jump(ins.arg)
    return handler(name, **versions)(named(jump_backward, name))


JUMP_BACKWARD = _jump_backward("JUMP_BACKWARD")
_jump_backward("JUMP_BACKWARD_NO_INTERRUPT")


@handler("JUMP", since=(3, 12))
def JUMP(tx, ins):
    tx.jump(ins.arg)


@handler("RETURN_VALUE")
def RETURN_VALUE(tx, ins):
    tx.return_value = tx.stack.pop()
    raise FrameReturn()

# -- branches ------------------------------------------------------------------------


def _site(tx):
    """The speculation site of the branch being interpreted."""
    orig, index = original_position(tx.code, tx.ip - 1)
    return speculation.site(tx.output.ctx.speculation, orig, index, tx.lineno,
                            tx.code.co_qualname, is_conditional_back_edge(tx.instrs, tx.ip - 1))


def branch_truth(tx, v) -> bool:
    """Truth of a branch condition; a tensor condition is speculated on
    when its site has been predictable, else it breaks the graph."""
    if not isinstance(v, TensorV):
        return v.truth(tx)
    site = _site(tx)
    tx.output.note_site(site)
    loop_edge = site.loop_edge
    speculated_here = any(s is site for _, _, s in tx.output.speculations)
    # one speculated visit per site and segment: a loop condition predicted
    # to hold would otherwise unroll its loop without end
    if site.form == "speculate" and v.fake.numel() == 1 and not loop_edge and \
            not speculated_here:
        tx.output.speculations.append((v, site.predicted, site))
        return site.predicted
    gb = GraphBreak("JF005", "condition is a tensor")
    gb.spec_site = site if site.form == "observe" else None
    raise gb


def _predicate(tx, v: TensorV, ins, when: bool) -> bool:
    """A relaxed site of a forward branch: both sides into the graph,
    merged with torch.where (predication.py), when they are fit."""
    if is_conditional_back_edge(tx.instrs, tx.ip - 1) or v.fake.numel() != 1 or \
            tx.output.predicating is not None:
        return False
    site = _site(tx)
    loop = is_loop_entry(tx, ins)
    # a loop speculated to be entered is unrolled with predicated
    # iterations; one speculated to be skipped stays a plain speculation;
    # an entry for many sizes predicates what static entries speculate on
    # (an outcome learned on some sizes flipping on the next one would
    # recompile it: speculation.py)
    # (an ``if``: a loop's misses are trip-limit misses once it is predicated)
    generic = not loop and site.form == "speculate" and _size_generic(tx.output)
    if site.predicated is False or site.form != "relaxed" and not generic and not (
            loop and site.form == "speculate" and site.predicted != when):
        return False
    tx.output.note_site(site)
    if loop:
        predicate_loop(tx, v, ins, when, site)
    else:
        predicate_branch(tx, v, ins, when, site)
    return True


def _size_generic(out) -> bool:
    """The trace is for many sizes: symbolic tensor sizes or dynamic ints."""
    return bool(out.dynamic) or bool(out.sym_inputs) or out.dynamic_all is True


def _take(tx, ins) -> None:
    if ins.name.startswith("POP_JUMP_BACKWARD"):
        JUMP_BACKWARD(tx, ins)
    else:
        tx.jump(ins.arg)


def _pop_jump_if(name: str, when: bool, **versions):
    def pop_jump_if(tx, ins):
        v = tx.stack.pop()
        if isinstance(v, TensorV) and _predicate(tx, v, ins, when):
            return
        if branch_truth(tx, v) == when:
            _take(tx, ins)
    handler(name, **versions)(named(pop_jump_if, name))


def _pop_jump_if_none(name: str, when: bool, **versions):
    def pop_jump_if_none(tx, ins):
        if identical(tx, tx.stack.pop(), Const(None)) == when:
            _take(tx, ins)
    handler(name, **versions)(named(pop_jump_if_none, name))


for _direction in ("FORWARD", "BACKWARD"):
    _pop_jump_if(f"POP_JUMP_{_direction}_IF_TRUE", True, until=(3, 12))
    _pop_jump_if(f"POP_JUMP_{_direction}_IF_FALSE", False, until=(3, 12))
    _pop_jump_if_none(f"POP_JUMP_{_direction}_IF_NONE", True, until=(3, 12))
    _pop_jump_if_none(f"POP_JUMP_{_direction}_IF_NOT_NONE", False, until=(3, 12))
_pop_jump_if("POP_JUMP_IF_TRUE", True, since=(3, 12))
_pop_jump_if("POP_JUMP_IF_FALSE", False, since=(3, 12))
_pop_jump_if_none("POP_JUMP_IF_NONE", True, since=(3, 12))
_pop_jump_if_none("POP_JUMP_IF_NOT_NONE", False, since=(3, 12))


@handler("JUMP_IF_TRUE_OR_POP", until=(3, 12))
def JUMP_IF_TRUE_OR_POP(tx, ins):
    if branch_truth(tx, tx.stack[-1]):
        tx.jump(ins.arg)
    else:
        tx.stack.pop()


@handler("JUMP_IF_FALSE_OR_POP", until=(3, 12))
def JUMP_IF_FALSE_OR_POP(tx, ins):
    if not branch_truth(tx, tx.stack[-1]):
        tx.jump(ins.arg)
    else:
        tx.stack.pop()

# -- loops ---------------------------------------------------------------------------


@handler("GET_ITER")
def GET_ITER(tx, ins):
    v = tx.stack[-1]
    if isinstance(v, Const) and type(v._value) is range and v.source is not None and \
            v.source.name() in tx.output.dynamic:
        # the range of a dynamic size handed over by a JF019 break: iterated
        # natively, not unrolled for this one length
        raise GraphBreak("JF019", "iteration over range() of a dynamic size")
    v = tx.stack.pop()
    # a generator is its own iterator: FOR_ITER resumes it item by item
    tx.stack.append(v if isinstance(v, (IterV, GeneratorV)) else IterV(v.iterate(tx)))


@handler("FOR_ITER")
def FOR_ITER(tx, ins):
    it = tx.stack[-1]
    if isinstance(it, GeneratorV):
        item = it.next_item(tx)
        if item is not None:
            tx.stack.append(item)
        else:
            _exhausted(tx.stack)
            tx.jump(ins.arg)
        return
    if not isinstance(it, IterV):
        # a real iterator handed over by a resume function: next() runs
        # natively and each iteration continues in its own segment
        raise GraphBreak("JF017", f"iteration over a run-time {it.python_type().__name__}")
    if it.pos < len(it.items):
        tx.stack.append(it.items[it.pos])
        it.pos += 1
    else:
        _exhausted(tx.stack)
        tx.jump(ins.arg)


def _exhausted(stack: list) -> None:
    """The stack at FOR_ITER's target once the iterator is exhausted."""
    if FOR_ITER_EXHAUSTED_PUSHES:
        stack.append(Const(None))  # END_FOR pops it (and the iterator)
    else:
        stack.pop()

# -- with-blocks ---------------------------------------------------------------------


@handler("BEFORE_WITH")
def BEFORE_WITH(tx, ins):
    mgr = tx.stack[-1]
    if isinstance(mgr, CtxV):
        tx.stack.pop()
        restore = mgr.enter(tx)
        tx.stack.append(ExitV(mgr, restore))
        tx.stack.append(Const(None))
        return
    mode = mode_value(tx, mgr)
    if mode is not None:
        tx.stack.pop()
        ctx = CtxV("tf_mode", mode)
        ctx.enter(tx)
        tx.stack.append(ExitV(ctx, None))
        tx.stack.append(mode)  # TorchFunctionMode.__enter__ returns the mode
        return
    methods = traced_manager(tx, mgr)
    if methods is None:
        # entered natively; the block goes on in a resume function and
        # the manager's own __exit__ runs when the block ends
        raise GraphBreak("JF016", f"context manager of type {mgr.python_type().__name__}")
    tx.stack.pop()
    exit_fn, enter = methods
    # as the interpreter does: __exit__ looked up before __enter__ runs
    tx.stack.append(exit_fn)
    tx.stack.append(enter.call(tx, [], {}))

# -- native steps --------------------------------------------------------------------


def _branch_native(name: str, jump_when: bool, popped: bool, **versions):
    """The native step of a conditional jump: the condition evaluated once
    (and observed at a speculation site), each way continuing in its resume
    function; ``popped``: whether the jump pops the condition too."""
    def step(tx, ins, emit):
        stack = list(tx.stack)
        lines: list[str] = []
        cond = emit.observed(emit.expr(stack[-1]), lines)
        lines.append(f"if {'' if jump_when else 'not '}{cond}:")
        lines += ["    " + x for x in emit.cont(stack[:-1] if popped else stack,
                                                  tx.labels[ins.arg])]
        return lines + emit.cont(stack[:-1], tx.stop_at + 1)
    native_step(name, **versions)(named(step, f"{name}_native"))


for _direction in ("FORWARD", "BACKWARD"):
    _branch_native(f"POP_JUMP_{_direction}_IF_TRUE", True, popped=True, until=(3, 12))
    _branch_native(f"POP_JUMP_{_direction}_IF_FALSE", False, popped=True, until=(3, 12))
_branch_native("JUMP_IF_TRUE_OR_POP", True, popped=False, until=(3, 12))
_branch_native("JUMP_IF_FALSE_OR_POP", False, popped=False, until=(3, 12))
_branch_native("POP_JUMP_IF_TRUE", True, popped=True, since=(3, 12))
_branch_native("POP_JUMP_IF_FALSE", False, popped=True, since=(3, 12))


@native_step("GET_ITER")
def GET_ITER_native(tx, ins, emit):
    stack = list(tx.stack)
    lines = [f"__jf_r = __jf_h_iter({emit.expr(stack[-1])})"]
    return lines + emit.cont(stack[:-1] + [emit.result("__jf_r")], tx.stop_at + 1)


@native_step("FOR_ITER")
def FOR_ITER_native(tx, ins, emit):
    stack = list(tx.stack)
    sentinel = emit.const(_SENTINEL)
    lines = [f"__jf_r = __jf_h_next({emit.expr(stack[-1])}, {sentinel})",
             f"if __jf_r is {sentinel}:"]
    exhausted = list(stack)
    _exhausted(exhausted)
    lines += ["    " + x for x in emit.cont(exhausted, tx.labels[ins.arg])]
    return lines + emit.cont(stack + [emit.result("__jf_r")], tx.stop_at + 1)


@native_step("BEFORE_WITH")
def BEFORE_WITH_native(tx, ins, emit):
    stack = list(tx.stack)
    mgr = emit.expr(stack[-1])
    # as the interpreter does: __exit__ looked up before __enter__ runs
    lines = [f"__jf_x = __jf_h_type({mgr}).__exit__.__get__({mgr})",
             f"__jf_r = __jf_h_type({mgr}).__enter__({mgr})"]
    return lines + emit.cont(stack[:-1] + [emit.result("__jf_x"), emit.result("__jf_r")],
                             tx.stop_at + 1)
