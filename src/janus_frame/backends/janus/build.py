"""Building generated C sources into shared libraries, cached on disk.

In: source text.  Out: a :class:`Build` whose ``lib()`` is the loaded
``ctypes.CDLL``.  The cache key is a SHA-256 of the source, the flags, the
compiler's version and torch's version; the library lives at
``<cache>/<key>.so`` where ``<cache>`` is the ``cache_dir`` option
(``JANUS_FRAME_CACHE_DIR``) or ``~/.cache/janus_frame/kernels``.  The compiler writes to a unique temporary
name and the result is moved into place with ``os.replace`` (atomic on POSIX),
so concurrent processes building the same key never see a partial file.
Compilation starts in a background process at build time; ``lib()`` waits for
it, so the compiles of a forward and a backward graph overlap.

Where glibc's vector math library is usable (:func:`libmvec_available`), the
sources are compiled with ``-DJF_LIBMVEC`` and linked with ``-lmvec`` (see
:mod:`codegen.c.prelude`), unless the ``libmvec`` option is off
(``JANUS_FRAME_LIBMVEC=0``): that keeps the inline polynomials.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading

import torch

from ...config import kernel_cache_dir

log = logging.getLogger("janus_frame.kernels")

COMPILER = "g++"
# Compiled as C (the generated source is a C/C++ common subset): cc1 starts
# ~3x faster than cc1plus.  No -ffast-math: inf/NaN semantics must hold.
LANG_FLAGS = ["-x", "c", "-std=gnu11"]
FLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp", "-fPIC", "-shared",
         "-fno-math-errno", "-fno-trapping-math", "-fno-semantic-interposition", "-w"]

MVEC_FLAGS = ["-DJF_LIBMVEC"]
MVEC_LIBS = ["-lmvec", "-lm"]
MVEC_MIN_GLIBC = (2, 35)  # vector tanh, erf, log1p, expm1 ... (expf and logf since 2.22)

_loaded: dict[str, ctypes.CDLL] = {}
_lock = threading.Lock()


def cache_dir(options=None) -> str:
    """The kernel cache directory of ``options`` (a Config; None: the
    process-wide one), created if absent."""
    d = kernel_cache_dir(options)
    os.makedirs(d, exist_ok=True)
    return d


@functools.lru_cache(maxsize=None)
def compiler_version() -> str:
    try:
        return subprocess.run([COMPILER, "--version"], capture_output=True, text=True,
                              check=True).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"C compiler {COMPILER!r} not usable: {e}") from e


def _glibc_version() -> tuple:
    try:
        name, ver = os.confstr("CS_GNU_LIBC_VERSION").split()
        return tuple(int(p) for p in ver.split(".")[:2]) if name == "glibc" else ()
    except (ValueError, OSError, AttributeError):
        return ()


_PROBE = r"""
#include <math.h>
__attribute__((simd("notinbranch"), nothrow, const)) float tanhf(float);
__attribute__((simd("notinbranch"), nothrow, const)) float erff(float);
void probe(const float* x, float* y, long n) {
  #pragma omp simd
  for (long i = 0; i < n; ++i) y[i] = tanhf(x[i]) + erff(x[i]);
}
"""


@functools.lru_cache(maxsize=None)
def libmvec_available() -> bool:
    """Whether kernels may call glibc's vector math (libmvec): x86-64, glibc
    2.35 or newer, and a probe library that declares two of its functions
    ``simd`` compiles, calls their vector variants and loads.  A positive
    verdict is remembered on disk per compiler, flags, machine and glibc
    version; a failed probe is retried by the next process (it may have
    failed for a passing reason: a full disk, a killed compiler)."""
    glibc = _glibc_version()
    if not glibc or glibc < MVEC_MIN_GLIBC or not sys.platform.startswith("linux") \
            or platform.machine() not in ("x86_64", "AMD64"):
        return False
    key = hashlib.sha256(" ".join([compiler_version(), *FLAGS, *MVEC_LIBS, platform.machine(),
                                   ".".join(map(str, glibc))]).encode()).hexdigest()[:24]
    marker = os.path.join(cache_dir(), f"libmvec-{key}.yes")
    if os.path.exists(marker):
        return True
    ok = False
    with tempfile.TemporaryDirectory() as d:
        src, so = os.path.join(d, "probe.c"), os.path.join(d, "probe.so")
        with open(src, "w") as f:
            f.write(_PROBE)
        try:
            r = subprocess.run([COMPILER, *LANG_FLAGS, *FLAGS, src, "-o", so, *MVEC_LIBS],
                               capture_output=True, text=True)
            if r.returncode != 0:
                log.info("glibc's vector math not usable (probe build failed), inline "
                         "polynomials instead: %s", r.stderr[-2000:])
            else:
                with open(so, "rb") as f:
                    vectorised = b"_ZGV" in f.read()  # the vector variants are called
                ctypes.CDLL(so)
                ok = vectorised
                if not ok:
                    log.info("the compiler does not call glibc's vector math: inline polynomials")
        except OSError as e:
            log.info("glibc's vector math not usable (%s): inline polynomials", e)
    if ok:
        try:
            open(marker, "w").close()
        except OSError:
            pass
    return ok


def build_flags(cpp: bool = False, libmvec: bool = True) -> tuple[list, list]:
    """(compile flags, libraries to link) for a generated source; ``libmvec``:
    use glibc's vector math where it is available."""
    flags = (["-x", "c++", "-std=gnu++17"] if cpp else LANG_FLAGS) + FLAGS
    if libmvec and libmvec_available():
        return flags + MVEC_FLAGS, list(MVEC_LIBS)
    return flags, []


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
    """One shared library: found in the cache ``directory`` (default:
    :func:`cache_dir`), or being compiled."""

    def __init__(self, source: str, cpp: bool = False, directory: str | None = None,
                 libmvec: bool = True):
        flags, libs = build_flags(cpp, libmvec)
        self.key = cache_key(source, flags + libs)
        d = directory or cache_dir()
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
        self._proc = subprocess.Popen([COMPILER, *flags, self._src, "-o", self._tmp_so, *libs],
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

    def __del__(self):
        # dropped while compiling (the compile failed after the backend
        # returned, so its graph is never run): stop the compiler and remove
        # its files, instead of leaving a zombie, a ResourceWarning in the
        # user's program and half-written files in the cache directory
        proc = getattr(self, "_proc", None)
        if proc is None:
            return
        self._proc = None
        try:
            proc.kill()
            proc.communicate()
        except Exception:  # noqa: BLE001 -- a finalizer must not raise
            pass
        for p in (self._src, self._tmp_so):
            try:
                os.unlink(p)
            except OSError:
                pass

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
