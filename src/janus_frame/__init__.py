"""janus_frame: imperative PyTorch programs compiled into dataflow graphs.

The public API, re-exported; nothing else lives here. ``backend`` (the fusing
backend) is resolved lazily so importing janus_frame stays light.
"""
import importlib.util as _importlib_util

if _importlib_util.find_spec("torch") is None:  # not a dependency on purpose (pyproject.toml)
    raise ImportError("janus_frame needs torch (2.11 to 2.15), installed before it; see the "
                      "README for the exact pairings it is tested with")
# (torch itself is imported where it is first needed, not here: a
# subinterpreter imports janus_frame._C, and with it this package, but
# cannot import torch)
from .torch_compat import check_supported as _check_torch  # noqa: E402

if _check_torch() is not None:  # outside the tested range: it may work, say so once
    import warnings as _warnings

    _warnings.warn(_check_torch(), stacklevel=2)

from .api import compile, disable, enable, mark_dynamic, reset  # noqa: E402
from .diagnostics.logs import set_logs as _set_logs  # noqa: E402
from .config import config as _config  # noqa: E402

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
