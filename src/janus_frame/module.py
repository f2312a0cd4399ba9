"""``janus_frame.compile(module)``: an ``nn.Module`` wrapper.

In: an ``nn.Module`` and the compiler for its configuration.
Out: a module whose calls run the original module with the frame callback
set, so its ``forward`` (and whatever runs natively below it) is compiled;
for a ``DistributedDataParallel`` module, the forward of the module it wraps.
Parameters, buffers, ``state_dict`` keys, attribute access and
``train()/eval()`` are the original module's.
"""
from __future__ import annotations

import torch

from . import _C


def _compiled_module(mod: torch.nn.Module) -> torch.nn.Module:
    """The module whose forward is compiled. For ``DistributedDataParallel``,
    the module it wraps: DDP's own forward (its reducer's bookkeeping before
    and after the call, buffer broadcasts, unused-parameter search) is
    library code and runs natively; the wrapped module's forward, called
    inside it, is compiled (and split at DDP's gradient buckets,
    frontend/ddp.py)."""
    dist = getattr(torch, "distributed", None)
    if dist is not None and dist.is_available():
        from torch.nn.parallel import DistributedDataParallel

        while isinstance(mod, DistributedDataParallel):
            mod = mod.module
    return mod


class CompiledModule(torch.nn.Module):
    def __init__(self, mod: torch.nn.Module, compiler) -> None:
        super().__init__()
        self._orig_mod = mod  # a registered child: parameters()/train()/to() reach it
        object.__setattr__(self, "_janus_compiler", compiler)
        fwd = getattr(type(_compiled_module(mod)).forward, "__code__", None)
        if fwd is not None:
            compiler.forced.add(fwd)

    def forward(self, *args, **kwargs):
        prev = _C.set_eval_frame(self._janus_compiler)
        try:
            # (``self._orig_mod`` goes through nn.Module.__getattr__: 2 us a call)
            return self._janus_mod(*args, **kwargs)
        finally:
            _C.set_eval_frame(prev)

    # The original's names, not "_orig_mod."-prefixed ones.
    def state_dict(self, *args, **kwargs):
        return self._orig_mod.state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        return self._orig_mod.load_state_dict(*args, **kwargs)

    def named_parameters(self, *args, **kwargs):
        return self._orig_mod.named_parameters(*args, **kwargs)

    def named_buffers(self, *args, **kwargs):
        return self._orig_mod.named_buffers(*args, **kwargs)

    def named_modules(self, *args, **kwargs):
        return self._orig_mod.named_modules(*args, **kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["_orig_mod"], name)

    def __setattr__(self, name, value):
        if name == "_orig_mod":
            # the registered child, and a plain attribute for the call path
            super().__setattr__(name, value)
            object.__setattr__(self, "_janus_mod", value)
            return None
        if name.startswith("_janus"):
            return super().__setattr__(name, value)
        if name == "training":
            # train()/eval() set the wrapper's own flag, then the children's:
            # both must read back the same.
            super().__setattr__(name, value)
        if "_orig_mod" in self.__dict__.get("_modules", {}):
            return setattr(self._modules["_orig_mod"], name, value)
        return super().__setattr__(name, value)

    def __delattr__(self, name):
        if name == "_orig_mod":
            self.__dict__.pop("_janus_mod", None)
        super().__delattr__(name)

    def __repr__(self):
        return f"janus_frame.compile({self._orig_mod!r})"
