"""janus_frame: imperative PyTorch programs compiled into dataflow graphs.

The public API, re-exported; nothing else lives here. ``backend`` (the fusing
backend) is resolved lazily so importing janus_frame stays light.
"""
from .api import compile, disable, enable, mark_dynamic, reset
from .diagnostics.logs import set_logs as _set_logs
from .config import config as _config

__all__ = ["compile", "enable", "disable", "reset", "mark_dynamic", "explain", "profile",
           "backend"]
__version__ = "0.1.0"

if _config.logs:
    _set_logs(_config.logs)


def __getattr__(name):
    if name == "backend":
        from .backends import default

        return default
    if name == "explain":
        from .diagnostics.explain import explain

        return explain
    if name == "profile":
        from .diagnostics.profiler import profile

        return profile
    raise AttributeError(f"module 'janus_frame' has no attribute {name!r}")
