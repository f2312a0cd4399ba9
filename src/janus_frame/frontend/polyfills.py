"""Traceable stand-ins for library calls the interpreter would run natively.

In: a method the interpreter is about to call (see ``ObjV.stand_in`` in
values/objects.py).  Out: :func:`for_call` gives a plain Python function
with the same effect, written in the subset the interpreter traces,
which it inlines in place of the call; or None (the call is handled as
before: ``torch.optim`` code runs natively, a graph break).

Optimizer steps.  ``SGD.step``, ``Adam.step`` and ``AdamW.step`` of torch's own
classes (not subclasses, not a patched ``step``) are replaced by the update
their implementations perform (the math of torch's single-tensor path, the
CPU default, and of its multi-tensor path: the same in-place updates of
parameters and state, the step counter incremented in place, bias
corrections in float64 as eager computes them in Python floats), so the
update joins a graph: one fused kernel per parameter instead of a dozen
library passes over every parameter.  (With a tensor learning rate the
step size is computed in float64 where eager uses the lr's dtype: last-bit
differences.)
Everything the update depends on is read by the traced code, so it is
guarded like any other read: hyper-parameters (a learning rate that changes
every step recompiles every step), the parameter lists, ``.grad`` being None
or not, each parameter's state.  Whatever the stand-in does not reproduce
exactly runs the real step natively instead, decided before anything is
updated: a closure (any argument), step hooks (global or per optimizer),
state not yet created (the first step), sparse or complex gradients, AMP's
grad scaler attributes, and the ``amsgrad``, ``capturable``,
``differentiable`` and ``fused`` options.  That is decided at the call
(``ready``, run natively; a refusal is guarded by calling it again, so the
step is traced once the state exists) and again inside the stand-in, traced,
so that every condition it read is guarded.  What is not reproduced: the profiler range
``Optimizer.step#...`` and the empty ``_optimizer_step_code`` hook point.

``Optimizer.zero_grad()`` without arguments (of any optimizer that does not
override it) is replaced too: ``p.grad = None`` for every parameter, as
torch's does; its profiler range is not reproduced either.
"""
from __future__ import annotations

import inspect

import torch
from torch.optim import SGD, Adam, AdamW
from torch.optim import optimizer as _optimizer


def _native(opt):
    # a call into torch.optim: the interpreter breaks the graph and runs it
    return type(opt).step(opt)


def no_global_hooks():
    """No step hook registered for every optimizer?  (torch.optim's module
    state: read natively, by a guard of its own; see ``ObjV.stand_in``.)"""
    return not (_optimizer._global_optimizer_pre_hooks or _optimizer._global_optimizer_post_hooks)


def _hooked(opt):
    return (not no_global_hooks()
            or len(opt._optimizer_step_pre_hooks) > 0
            or len(opt._optimizer_step_post_hooks) > 0
            or getattr(opt, "grad_scale", None) is not None
            or getattr(opt, "found_inf", None) is not None)


def _plain(group):
    return not (group["differentiable"] or group["fused"])


def _dense_real(p, g):
    return not (g.is_sparse or torch.is_complex(p))


def adam_ready(opt):
    """Can :func:`adam_step` stand in for ``opt.step()`` now?"""
    if _hooked(opt):
        return False
    for group in opt.param_groups:
        if not _plain(group) or group["amsgrad"] or group["capturable"]:
            return False
        for p in group["params"]:
            if p.grad is not None and (not _dense_real(p, p.grad) or p not in opt.state):
                return False
    return True


def adam_step(opt):
    """``Adam.step()`` / ``AdamW.step()`` (decoupled weight decay)."""
    if not adam_ready(opt):  # (traced: what it reads is guarded)
        return _native(opt)
    with torch.no_grad():
        for group in opt.param_groups:
            beta1, beta2 = group["betas"]
            lr = group["lr"]
            wd = group["weight_decay"]
            eps = group["eps"]
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                if group["maximize"]:
                    grad = -grad
                state = opt.state[p]
                step = state["step"]
                exp_avg = state["exp_avg"]
                exp_avg_sq = state["exp_avg_sq"]
                step.add_(1)
                if wd != 0:
                    if group["decoupled_weight_decay"]:
                        p.mul_(1 - lr * wd)
                    else:
                        grad = grad.add(p, alpha=wd)
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2)
                exp_avg_sq.addcmul_(grad, grad, value=1 - beta2)
                # eager takes step.item() and works in Python floats
                t = step.to(torch.float64)
                step_size = (lr / (1 - beta1 ** t)) * -1
                bias_correction2_sqrt = (1 - beta2 ** t) ** 0.5
                denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps
                p.add_(step_size * exp_avg / denom)  # addcdiv's order: value * t1 / t2
    return None


def sgd_ready(opt):
    """Can :func:`sgd_step` stand in for ``opt.step()`` now?  With momentum,
    from the second step on (the first one creates the buffers)."""
    if _hooked(opt):
        return False
    for group in opt.param_groups:
        if not _plain(group):
            return False
        for p in group["params"]:
            if p.grad is not None and not _dense_real(p, p.grad):
                return False
            if p.grad is not None and group["momentum"] != 0 and (
                    p not in opt.state or "momentum_buffer" not in opt.state[p]
                    or opt.state[p]["momentum_buffer"] is None):
                return False
    return True


def sgd_step(opt):
    """``SGD.step()``."""
    if not sgd_ready(opt):
        return _native(opt)
    with torch.no_grad():
        for group in opt.param_groups:
            lr = group["lr"]
            wd = group["weight_decay"]
            momentum = group["momentum"]
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                if group["maximize"]:
                    grad = -grad
                if wd != 0:
                    grad = grad.add(p, alpha=wd)
                if momentum != 0:
                    buf = opt.state[p]["momentum_buffer"]
                    buf.mul_(momentum)
                    buf.add_(grad, alpha=1 - group["dampening"])
                    grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
                p.add_(grad, alpha=-lr)
    return None


def zero_grad(opt):
    """``Optimizer.zero_grad()`` (``set_to_none``, its default): every
    parameter's ``.grad`` becomes None.  (In a traced step the backward that
    follows then stores its gradients instead of adding them to zeros.)"""
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                p.grad = None
    return None


def _always(opt):
    return True


_STEPS = {SGD: (sgd_step, sgd_ready), Adam: (adam_step, adam_ready),
          AdamW: (adam_step, adam_ready)}
_ORIGINAL = {cls: inspect.unwrap(cls.step) for cls in _STEPS}
_ZERO_GRAD = inspect.unwrap(_optimizer.Optimizer.zero_grad)


def for_call(obj, name, func):
    """``(stand_in, ready)`` for calling ``obj.name()`` without arguments,
    which resolves to function ``func``; or None.  ``ready(obj)`` says
    whether the stand-in applies now (else the call runs natively)."""
    cls = type(obj)
    if name == "zero_grad" and isinstance(obj, _optimizer.Optimizer) and func is not None \
            and inspect.unwrap(func) is _ZERO_GRAD and hasattr(obj, "_zero_grad_profile_name"):
        return zero_grad, _always
    if cls not in _STEPS or name != "step" or func is None:
        return None
    if inspect.unwrap(func) is not _ORIGINAL[cls]:
        return None  # step patched on the class
    return _STEPS[cls]
