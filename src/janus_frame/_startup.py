"""Process-wide activation, imported by the ``.pth`` start-up file only when
``JANUS_FRAME`` is set to a non-zero value.

In: the environment (``JANUS_FRAME``, ``JANUS_FRAME_BACKEND``, ``JANUS_LOGS``,
``JANUS_PROFILE``). Out: global mode on in every thread of the process.
"""
from __future__ import annotations

from .api import enable_process_wide
from .config import config

enable_process_wide(config.backend)

if config.profile_path:
    from .diagnostics.profiler import start_process_profiler

    start_process_profiler(config.profile_path)
