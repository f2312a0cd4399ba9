"""Every setting and environment variable of janus_frame, declared in one place.

In: the process environment at import time (``JANUS_*`` variables).
Out: ``config``, a mutable :class:`Config` instance read by the rest of the
package. Per-call options given to ``janus_frame.compile(..., **options)``
override fields of it for that compiled function (see :meth:`Config.merged`).
"""
from __future__ import annotations

import dataclasses
import os


def _env_bool(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    return v.strip().lower() not in ("0", "false", "no", "off")


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    if not v:
        return default
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {v!r}") from None


def _env_list(name: str) -> tuple[str, ...]:
    v = os.environ.get(name, "")
    return tuple(p.strip() for p in v.split(",") if p.strip())


# name -> (environment variable, meaning); the registry doubles as documentation
ENVIRONMENT = {
    "JANUS_FRAME": "1: global mode for the whole process (via the .pth start-up hook)",
    "JANUS_FRAME_BACKEND": "backend for global mode and the default of compile(): default|eager|inductor",
    "JANUS_LOGS": "comma list of log artifacts: graph_breaks,recompiles,guards,graphs,bytecode,"
    "kernels,speculation,perf ('+name' for verbose)",
    "JANUS_STRICT": "1: internal compiler errors and graph breaks raise instead of falling back",
    "JANUS_PROFILE": "path: profile the whole process and write the report there at exit",
    "JANUS_FRAME_CACHE_DIR": "directory of the on-disk kernel cache (default ~/.cache/janus_frame/kernels)",
    "JANUS_RECOMPILE_LIMIT": "cache entries per code object before the frame runs natively (default 8)",
    "JANUS_UNROLL_LIMIT": "iterations a Python loop may be unrolled before the frame falls back",
    "JANUS_INLINE_DEPTH": "maximum depth of inlined user calls (bounds recursion)",
    "JANUS_INLINE_RECURSION": "activations of one function on one receiver a trace may hold "
                              "(deeper recursion runs natively)",
    "JANUS_BATCH_RECURSION": "0: run a recursion's per-node graphs one call each instead of "
                             "batching the calls of one kind at one depth (default 1)",
    "JANUS_COMPILE_MODULES": "comma list of module prefixes compiled in global mode even if installed "
    "in site-packages",
    "JANUS_SKIP_SITE_PACKAGES": "0: in global mode, also compile code in site-packages",
    "JANUS_FRAME_MALLOC_TUNING": "0: leave glibc malloc's mmap/trim thresholds alone when the C "
    "backend first runs (see backends/janus/runtime/graph.py, tune_malloc)",
    "JANUS_FRAME_DEFER_GRADS": "0: parameter gradients of small graphs added per call, not once "
    "per backward pass (backends/janus/runtime/grad_accumulation.py)",
    "JANUS_FRAME_WHOLE_STEP": "0: loss.backward() on a loss computed in the graph runs natively "
    "after it, instead of inside it with the forward and the optimizer step",
    "JANUS_FRAME_CHANNELS_LAST": "0: CPU convolutions keep the captured memory layout "
    "(backends/janus/passes/layout.py)",
    "JANUS_FRAME_LIBMVEC": "0: C kernels use inline polynomial float math instead of glibc's "
    "vector math library (backends/janus/codegen/c/prelude.py)",
    "JANUS_CHECKS": "1: run the internal verifiers at every stage boundary (handlers' stack "
    "effects; the fusing backend's graph, loop IR and schedule); slower compiles, the test suite "
    "turns it on",
    "JANUS_OPTIMIZE_DDP": "0: a graph compiled inside a DistributedDataParallel forward stays "
    "whole instead of split at gradient-bucket boundaries (frontend/ddp.py)",
    "JANUS_FAULT_INJECTION": "testing only: probability with which each internal stage boundary "
    "raises an injected error, optionally ':seed' (e.g. 0.05:7); every such error must end as a "
    "native run, never reach the program (janus_frame/faults.py)",
    "JANUS_FRAME_TRITON_AUTOTUNE": "auto (default): Triton kernels on CUDA time their block-size "
    "list once per size and keep the fastest on disk; always: also in the interpreter; off: "
    "defaults only (backends/janus/codegen/triton.py)",
}


def kernel_cache_dir(cfg: "Config | None" = None) -> str:
    """Where the fusing backend keeps built kernels and generated modules
    (``cache_dir``, or ``~/.cache/janus_frame/kernels``)."""
    return (cfg or config).cache_dir or os.path.join(
        os.path.expanduser("~"), ".cache", "janus_frame", "kernels")


def torch_environment(name: str) -> str | None:
    """A variable of torch's own (e.g. ``TORCHINDUCTOR_CACHE_DIR``), read at
    the time of the call, as torch reads it: this module is the one place
    janus_frame reads the environment."""
    return os.environ.get(name) or None


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    v = (os.environ.get(name) or default).strip().lower()
    if v not in choices:
        raise ValueError(f"environment variable {name} must be one of {', '.join(choices)}, got {v!r}")
    return v


@dataclasses.dataclass
class Config:
    backend: str = dataclasses.field(
        default_factory=lambda: os.environ.get("JANUS_FRAME_BACKEND", "default") or "default"
    )
    strict: bool = dataclasses.field(default_factory=lambda: _env_bool("JANUS_STRICT", False))
    logs: tuple[str, ...] = dataclasses.field(default_factory=lambda: _env_list("JANUS_LOGS"))
    profile_path: str | None = dataclasses.field(
        default_factory=lambda: os.environ.get("JANUS_PROFILE") or None
    )
    recompile_limit: int = dataclasses.field(
        default_factory=lambda: _env_int("JANUS_RECOMPILE_LIMIT", 8)
    )
    # distinct items of one container (``dones[3]``, ``dones[7]``, ...) whose
    # bool or None values may each force a recompile of a frame before it
    # runs natively: per-element data, not a configuration flag
    flag_item_limit: int = dataclasses.field(
        default_factory=lambda: _env_int("JANUS_FLAG_ITEM_LIMIT", 3)
    )
    unroll_limit: int = dataclasses.field(default_factory=lambda: _env_int("JANUS_UNROLL_LIMIT", 1000))
    inline_depth: int = dataclasses.field(default_factory=lambda: _env_int("JANUS_INLINE_DEPTH", 32))
    # activations of one function on one receiver a trace may hold at once
    # (1: no re-entry); recursion deeper than that runs natively
    inline_recursion: int = dataclasses.field(
        default_factory=lambda: _env_int("JANUS_INLINE_RECURSION", 2)
    )
    # the calls of one entry at one depth of a recursion run as one batched
    # graph call (batching.py)
    batch_recursion: bool = dataclasses.field(
        default_factory=lambda: _env_bool("JANUS_BATCH_RECURSION", True)
    )
    compile_modules: tuple[str, ...] = dataclasses.field(
        default_factory=lambda: _env_list("JANUS_COMPILE_MODULES")
    )
    skip_site_packages: bool = dataclasses.field(
        default_factory=lambda: _env_bool("JANUS_SKIP_SITE_PACKAGES", True)
    )
    malloc_tuning: bool = dataclasses.field(
        default_factory=lambda: _env_bool("JANUS_FRAME_MALLOC_TUNING", True)
    )
    # parameter gradients of small graphs summed once at the end of backward
    # (backends/janus/runtime/grad_accumulation.py); False: per call, as autograd does
    defer_grads: bool = dataclasses.field(
        default_factory=lambda: _env_bool("JANUS_FRAME_DEFER_GRADS", True)
    )
    # loss.backward() traced into the graph (frontend/whole_step.py)
    whole_step: bool = dataclasses.field(
        default_factory=lambda: _env_bool("JANUS_FRAME_WHOLE_STEP", True)
    )
    triton_autotune: str = dataclasses.field(
        default_factory=lambda: _env_choice("JANUS_FRAME_TRITON_AUTOTUNE", "auto",
                                            ("auto", "always", "off"))
    )
    # Settings of the fusing backend (backends/janus).  It reads them, and
    # strict, malloc_tuning, defer_grads and triton_autotune, from the options
    # it is given (janus_backend(gm, inputs, options=a Config)), or from this
    # process-wide object when it is given none.
    # checks: the verifiers at its stage boundaries (backends/janus/verify.py)
    checks: bool = dataclasses.field(default_factory=lambda: _env_bool("JANUS_CHECKS", False))
    channels_last: bool = dataclasses.field(
        default_factory=lambda: _env_bool("JANUS_FRAME_CHANNELS_LAST", True)
    )
    libmvec: bool = dataclasses.field(default_factory=lambda: _env_bool("JANUS_FRAME_LIBMVEC", True))
    cache_dir: str | None = dataclasses.field(
        default_factory=lambda: os.environ.get("JANUS_FRAME_CACHE_DIR") or None
    )
    # Triton kernels for CPU tensors too (run by TRITON_INTERPRET=1: the
    # tests of the Triton code generator on machines without a GPU)
    triton_on_cpu: bool = False
    fault_injection: str = dataclasses.field(
        default_factory=lambda: os.environ.get("JANUS_FAULT_INJECTION", "").strip())
    # print/logging calls: False = break the graph where they are; True =
    # defer them to after the segment, in program order.
    reorder_logging: bool = False
    # graphs compiled inside a DistributedDataParallel forward are split at
    # its gradient-bucket boundaries, so its all-reduces overlap backward
    # (frontend/ddp.py); False: one graph, all buckets reduced at its end
    optimize_ddp: bool = dataclasses.field(
        default_factory=lambda: _env_bool("JANUS_OPTIMIZE_DDP", True))

    def merged(self, **options) -> "Config":
        """A copy with ``options`` applied; unknown names are an error."""
        names = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(options) - names)
        if bad:
            raise TypeError(
                f"unknown janus_frame option(s) {', '.join(bad)}; known: {', '.join(sorted(names))}"
            )
        return dataclasses.replace(self, **options)


config = Config()
