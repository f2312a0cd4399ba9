"""Which conformance tests fail today, and why: one line per test.

Keys are ``"<topic>::<program>"`` (both backends) or
``"<topic>::<program>[<backend>]"`` (one backend: ``eager`` or ``default``).
Values are ``"<class>: <short cause>"`` with ``<class>`` from ``CLASSES``.
Each entry becomes ``pytest.mark.xfail(strict=True)``: when a fix makes a
test pass, strict xfail fails it, and the line is deleted here.
"""
from __future__ import annotations

import pytest

CLASSES = {
    "stale-guard": "a value the trace relied on changed and the cached entry was still used",
    "aliasing": "identity or memory sharing of inputs/outputs differs from eager",
    "strides": "an output's strides or storage offset differ from eager's",
    "exceptions": "an exception eager raises is not raised, or with another type/message/line",
    "context-managers": "with-statements, __exit__ suppression, contextlib, mode stacks",
    "named-tuple": "ops returning torch.return_types / namedtuples lose their type",
    "dict-views": "keys()/values()/items() are snapshots instead of live views",
    "hooks": "nn.Module hooks registered or removed after compiling are ignored",
    "numpy": "numpy interop: values baked in, wrong types, or crashes",
    "recompile-storm": "recompiles on every call (until the limit)",
    "silent-fallback": "a frame silently stays native (never compiled) though it could be",
    "internal-error": "janus_frame failed internally (warning) and ran the frame natively",
    "crash": "the process dies (segfault) or janus_frame raises its own error at the user",
    "wrong-result": "a wrong value, type or side effect without a more specific cause",
    "side-effects": "printed output, globals, closure cells or object state differ from eager",
    "graph-breaks": "more graphs/breaks than torch.compile gets for the same program",
    "global-state": "grad mode, mode stacks or other global torch state left changed",
    "rng": "random number generator state or draws differ from eager",
    "autograd": "requires_grad, grad_fn or .grad differ from eager",
    "backend-fallback": "the fusing backend refused a graph and ran it as captured",
    "process": "process-level behaviour (start-up hook, shutdown, environment)",
    "leak": "memory held after compiled functions are dropped",
}

KNOWN: dict[str, str] = {
}


def _check() -> None:
    for key, val in KNOWN.items():
        cls = val.split(":", 1)[0]
        if cls not in CLASSES:
            raise ValueError(f"known_failures: {key}: unknown class {cls!r}")


_check()


def lookup(test_key: str, backend: str | None) -> str | None:
    if backend is not None and f"{test_key}[{backend}]" in KNOWN:
        return KNOWN[f"{test_key}[{backend}]"]
    return KNOWN.get(test_key)


def marks_for(test_key: str, backend: str | None = None):
    reason = lookup(test_key, backend)
    if reason is None:
        return ()
    return (pytest.mark.xfail(strict=True, reason=reason),)
