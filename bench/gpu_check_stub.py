"""Backend-only fallback of bench/gpu_check.py (also a pytest plugin: ``-p gpu_check_stub``).

Where janus_frame's C frame hook (``janus_frame._C``) cannot be built for the
machine's Python, the fusing backend can still be checked through Dynamo's
frontend (``torch.compile(fn, backend=janus_frame.backend)``, which is how the
Triton tests compile anyway). ``install()`` puts a stand-in ``_C`` module in
``sys.modules`` so ``import janus_frame`` succeeds; anything that needs the
hook raises a clear error instead. Nothing happens when the real module
imports. The check reports the run as "backend-only" whenever this was used.
"""
from __future__ import annotations

import os
import sys
import types


class _NoHook(types.ModuleType):
    DEFAULT, SKIP, RUN_ONLY = 0, 1, 2  # read by janus_frame.hook at import
    __file__ = __file__  # (tools walking sys.modules read it)

    def __getattr__(self, name):
        # AttributeError, so hasattr() and dunder probes behave as usual
        raise AttributeError(
            f"janus_frame._C.{name}: the frame hook is not built for Python "
            f"{sys.version_info.major}.{sys.version_info.minor}; only the backend "
            "(torch.compile(fn, backend=janus_frame.backend)) runs in this check")


def install(force: bool = False) -> str | None:
    """None if the real frame hook imports (and ``force`` is false); else why
    not, after installing the stand-in. ``force``: the hook imports but does
    not work (the installer's smoke test failed)."""
    if force:
        reason = "the installer found the frame hook unusable (JANUS_GPU_CHECK_STUB=1)"
    else:
        try:
            import janus_frame._C  # noqa: F401
            return None
        except ImportError as e:
            reason = f"{type(e).__name__}: {e}"
    for name in [m for m in sys.modules if m == "janus_frame" or m.startswith("janus_frame.")]:
        del sys.modules[name]  # a half-imported package
    sys.modules["janus_frame._C"] = _NoHook("janus_frame._C")
    import janus_frame  # noqa: F401 -- fails here if something else is missing
    return reason


if os.environ.get("JANUS_GPU_CHECK_STUB") == "1":  # loaded as a pytest plugin
    install(force=True)
