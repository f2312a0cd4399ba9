"""Building generated C sources into shared libraries, cached on disk.

In: source text.  Out: a :class:`Build` whose ``lib()`` is the loaded
``ctypes.CDLL``.  The cache key is a SHA-256 of the source, the flags, the
compiler's version and torch's version; the library lives at
``<cache>/<key>.so`` where ``<cache>`` is ``$JANUS_FRAME_CACHE_DIR`` or
``~/.cache/janus_frame/kernels``.  The compiler writes to a unique temporary
name and the result is moved into place with ``os.replace`` (atomic on POSIX),
so concurrent processes building the same key never see a partial file.
Compilation starts in a background process at build time; ``lib()`` waits for
it, so the compiles of a forward and a backward graph overlap.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import subprocess
import tempfile
import threading

import torch

log = logging.getLogger("janus_frame.kernels")

COMPILER = "g++"
# Compiled as C (the generated source is a C/C++ common subset): cc1 starts
# ~3x faster than cc1plus.  No -ffast-math: inf/NaN semantics must hold.
LANG_FLAGS = ["-x", "c", "-std=gnu11"]
FLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp", "-fPIC", "-shared",
         "-fno-math-errno", "-fno-trapping-math", "-fno-semantic-interposition", "-w"]

_loaded: dict[str, ctypes.CDLL] = {}
_lock = threading.Lock()


def cache_dir() -> str:
    d = os.environ.get("JANUS_FRAME_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "janus_frame", "kernels")
    os.makedirs(d, exist_ok=True)
    return d


@functools.lru_cache(maxsize=None)
def compiler_version() -> str:
    try:
        return subprocess.run([COMPILER, "--version"], capture_output=True, text=True,
                              check=True).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"C compiler {COMPILER!r} not usable: {e}") from e


def cache_key(source: str, flags=None) -> str:
    flags = flags or (LANG_FLAGS + FLAGS)
    h = hashlib.sha256()
    for part in (source, " ".join(flags), compiler_version(), torch.__version__):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


class BuildError(RuntimeError):
    pass


class Build:
    """One shared library: found in the cache, or being compiled."""

    def __init__(self, source: str, cpp: bool = False):
        flags = (["-x", "c++", "-std=gnu++17"] if cpp else LANG_FLAGS) + FLAGS
        self.key = cache_key(source, flags)
        d = cache_dir()
        self.path = os.path.join(d, self.key + ".so")
        self.cached = os.path.exists(self.path)
        self._proc = None
        self._lib = None
        if self.cached:
            return
        fd, self._src = tempfile.mkstemp(prefix=self.key[:16] + ".", suffix=".c", dir=d)
        with os.fdopen(fd, "w") as f:
            f.write(source)
        self._tmp_so = self._src[:-2] + ".so"
        self._proc = subprocess.Popen([COMPILER, *flags, self._src, "-o", self._tmp_so],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait(self):
        if self._proc is None:
            return self.path
        _, err = self._proc.communicate()
        rc = self._proc.returncode
        self._proc = None
        try:
            if rc != 0:
                raise BuildError(f"kernel compilation failed ({COMPILER} exit {rc}):\n{err[-4000:]}")
            os.replace(self._tmp_so, self.path)
        finally:
            for p in (self._src, self._tmp_so):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
        return self.path

    def lib(self) -> ctypes.CDLL:
        if self._lib is None:
            path = self.wait()
            with _lock:
                lib = _loaded.get(path)
                if lib is None:
                    lib = ctypes.CDLL(path)
                    _loaded[path] = lib
            self._lib = lib
        return self._lib
