"""Backend code that torch.compile's frame hook must not trace.

In: functions of ours.  Out: the same functions marked or wrapped so that a
frame-evaluation frontend stands aside while they run: ``not_traced``
(wrapped in ``torch.compiler.disable`` when torch._dynamo is loaded),
``never_traced`` (code objects marked to be skipped, with everything they
call) and ``stand_aside`` (a cheap per-call check, for the run-time path).

Why: the backward graph is compiled lazily and compiled graphs run from
inside user frames that a frontend may be evaluating (``loss.backward()`` in
a compiled step).  Our own frontend skips backend modules by path;
torch.compile's needs to be told.
"""
from __future__ import annotations

import functools
import sys

import torch


def not_traced(fn):
    """``fn`` run with torch.compile's frame hook standing aside, when that hook
    is loaded at all (checked per call, so importing this package never
    imports torch._dynamo)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "torch._dynamo" not in sys.modules:
            return fn(*args, **kwargs)
        return torch.compiler.disable(fn, recursive=True)(*args, **kwargs)

    api = _hook_api()
    if api is not None:
        api[1](wrapper.__code__)  # the check itself is never traced
    return wrapper


def _hook_api():
    """torch.compile's frame-hook controls from torch._C (reading them imports
    nothing): (current callback getter, skip-this-code function), or None
    where torch lacks them."""
    try:
        from ....torch_compat import (FrameAction as _FrameAction,
                                      FrameExecStrategy as _FrameExecStrategy,
                                      get_eval_frame_callback, set_code_exec_strategy)
    except ImportError:
        return None

    def skip(code, callees=False):
        set_code_exec_strategy(code, _FrameExecStrategy(
            _FrameAction.SKIP, _FrameAction.SKIP if callees else _FrameAction.DEFAULT))

    return get_eval_frame_callback, skip


def never_traced(*fns):
    """Mark run-time functions of ours (and everything they call) to be
    skipped by torch.compile's frame hook: the autograd engine runs them from
    inside user frames that torch.compile may be evaluating
    (``loss.backward()`` in a compiled step)."""
    api = _hook_api()
    if api is not None:
        for fn in fns:
            api[1](fn.__code__, callees=True)


def stand_aside(fn):
    """``fn`` for calling at run time, never traced by torch.compile's frame hook.

    A compiled backward runs inside the user's frame (``loss.backward()`` in a
    step passed to ``torch.compile``), where that hook is live: it would trace
    our generated wrapper as user code and replace its ctypes calls and buffer
    handling by graphs of its own, which computed wrong gradients.  Standing
    aside costs ~5 us per call (the hook is swapped out and back), paid once
    per graph call: a TreeLSTM step makes 66.  So the hook's callback is read
    first (40 ns) and ``fn`` runs directly when no torch.compile frame is
    being evaluated (no callback, or run-only mode).  The check itself must
    not be traced either: its code is marked to be skipped by the hook."""
    api = _hook_api()
    if api is None:
        return not_traced(fn)
    callback, skip = api
    disabled = []

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        cb = callback()
        if cb is None or cb is False:
            return fn(*args, **kwargs)
        if not disabled:
            disabled.append(torch.compiler.disable(fn, recursive=True))
        return disabled[0](*args, **kwargs)

    skip(wrapper.__code__)  # (one code object shared by every wrapper; marking is idempotent)
    return wrapper
