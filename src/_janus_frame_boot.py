"""Start-up hook of janus_frame, imported by ``janus_frame_startup.pth`` at
interpreter start when ``JANUS_FRAME`` is set to a non-zero value.

In: the environment. Out: global mode on (``janus_frame._startup``), or --
when a setting is wrong (an unknown backend, a malformed number) -- one
message naming the problem and exit status 2 before the program runs:
site.py would otherwise print a traceback per site directory and run the
program without janus_frame.
"""
import os
import sys

try:
    import janus_frame._startup  # noqa: F401
except (ValueError, TypeError) as e:
    print(f"janus_frame (JANUS_FRAME=1): {e}", file=sys.stderr, flush=True)
    # SystemExit cannot leave site.py cleanly, and nothing has run yet
    os._exit(2)
