"""The workload protocol shared by every benchmark workload.

In:  nothing but a ``quick`` flag (tiny sizes for the smoke test).
Out: a :class:`Workload` describes one benchmark row (name, documented size,
     kind) and makes :class:`Instance` objects: a fresh model/optimizer with
     the workload's fixed initial weights plus the step function to compile.

Every system gets its own instance so compiled state never leaks between
systems, and every instance is built from the same seed so all systems start
from identical weights and see identical data.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Any, Callable

import torch


@dataclasses.dataclass
class Instance:
    """One independent copy of a workload's program state.

    ``step(*args(i))`` is one training step (or one inference call) and
    returns the loss/output that is compared against eager. ``state()``
    returns everything a step may change (parameters, buffers, Python side
    effects) for the correctness check after the first few steps.
    ``var_args`` are the inputs of the variable-size run (None if the
    workload has none).
    """

    step: Callable
    args: Callable[[int], tuple]
    state: Callable[[], dict[str, Any]]
    var_args: list[tuple] | None = None
    # the trained module (training_instance): eager's float64 reference
    # converts it in place (bench/worker.py)
    model: Any = None


class Workload:
    name: str = ""
    title: str = ""
    kind: str = "train"          # train | infer | overhead
    size: str = ""               # documented size, shown in the table
    var_desc: str | None = None  # what the variable-size run varies
    inner: int = 1               # calls per timing sample (tiny calls are batched)
    rtol: float = 1e-4           # correctness tolerance against eager (fp32)
    unit: str = "ms"             # unit of the reported step time (ms or us)
    needs: tuple[str, ...] = ()  # optional Python packages; missing -> n/a
    spelling_of: str | None = None  # a second spelling: the first one's row name

    def __init__(self, quick: bool = False) -> None:
        self.quick = quick

    def instance(self) -> Instance:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_metrics(self, seconds_per_call: float) -> dict[str, float]:
        """Workload-specific figures derived from the median time (e.g. GB/s)."""
        return {}

    def training_instance(self, step: Callable, model: torch.nn.Module) -> Instance:
        """The usual instance: ``step`` (a fresh copy) over ``self.data`` in
        turn, the variable-size run over ``self.var`` when the workload has
        one, and ``model``'s parameters and buffers as the state compared
        against eager."""
        return Instance(step=fresh_function(step),
                        args=lambda i: self.data[i % len(self.data)],
                        state=lambda: params_state(model),
                        var_args=getattr(self, "var", None), model=model)


def fresh_function(fn: Callable) -> Callable:
    """A copy of ``fn`` with its own code object.

    Both janus_frame and Dynamo keep their caches per code object; giving
    each instance its own code keeps one system's cache entries (and its
    recompile-limit counter) from being seen by another system.
    """
    code = fn.__code__.replace()
    new = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__qualname__ = fn.__qualname__
    return new


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def params_state(module: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """Parameters and buffers, detached copies, keyed by name."""
    out = {}
    for n, p in module.named_parameters():
        out[prefix + n] = p.detach().clone()
    for n, b in module.named_buffers():
        out[prefix + "buffer:" + n] = b.detach().clone()
    return out
