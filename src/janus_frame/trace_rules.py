"""Which code janus_frame compiles, and which files are never shown to a user.

In: a code object's file name, whether the hook runs in global mode, and the
configuration (``compile_modules``, ``skip_site_packages``).
Out: :func:`skip_reason` (why a code object is not a compilation candidate,
or None) and :func:`is_internal_file` (janus_frame itself, torch and friends,
the standard library: where a graph break is never located).

A leaf module: the hook and the frontend import it; it imports neither.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig

from .config import Config, kernel_cache_dir, torch_environment



def _dirs_of(*names: str) -> tuple[str, ...]:
    out = []
    for n in names:
        spec = importlib.util.find_spec(n)
        if spec and spec.submodule_search_locations:
            out.extend(os.path.realpath(p) + os.sep for p in spec.submodule_search_locations)
    return tuple(out)


_OWN_DIR = os.path.realpath(os.path.dirname(__file__)) + os.sep
_STDLIB_DIRS = tuple(
    {os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "platstdlib")}
)
_SITE_DIRS = tuple(
    {os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in ("purelib", "platlib")}
)
_LIB_DIRS: tuple[str, ...] | None = None  # torch and friends; resolved lazily


def _library_dirs() -> tuple[str, ...]:
    global _LIB_DIRS
    if _LIB_DIRS is None:
        _LIB_DIRS = _dirs_of("torch", "triton", "numpy", "bytecode", "sympy", "_pytest",
                             "pytest") + (_inductor_cache_dir(),)
    return _LIB_DIRS


def _inductor_cache_dir() -> str:
    """Where Inductor writes the modules it generates (their ``call`` runs
    a compiled backward lazily, inside ``loss.backward()`` of user code).
    The same rule as torch's ``cache_dir_utils.default_cache_dir``, which is
    not imported: it would pull in torch._inductor and torch._dynamo."""
    import getpass
    import re
    import tempfile

    d = torch_environment("TORCHINDUCTOR_CACHE_DIR")
    if not d:
        try:
            user = re.sub(r'[\\/:*?"<>|]', "_", getpass.getuser())
        except Exception:  # noqa: BLE001 - no user name (containers)
            user = "unknown"
        d = os.path.join(tempfile.gettempdir(), "torchinductor_" + user)
    return os.path.realpath(d) + os.sep


_realpath_cache: dict[str, str] = {}


def _real(filename: str) -> str:
    r = _realpath_cache.get(filename)
    if r is None:
        r = os.path.realpath(filename) if not filename.startswith("<") else filename
        _realpath_cache[filename] = r
    return r


def is_internal_file(filename: str) -> bool:
    """janus_frame's own code, torch and friends, or the standard library:
    never the place to show a user."""
    if filename.startswith("<frozen"):
        return True
    path = _real(filename)
    if path.startswith(_OWN_DIR) or path.startswith(_library_dirs()):
        return True
    return not path.startswith(_SITE_DIRS) and path.startswith(_STDLIB_DIRS)


def is_own_or_library(filename: str) -> bool:
    """janus_frame's own code or a library it never compiles (torch, ...)."""
    path = _real(filename)
    return path.startswith(_OWN_DIR) or path.startswith(_library_dirs())


# Handlers torch calls from inside its dispatch (a torch-function or dispatch
# mode, a tensor subclass): they run with the mode popped, in the middle of an
# operator's dispatch, where a graph compiled and run in their place would be
# traced and executed under that dispatch state. They run natively, and so do
# the frames they call (see ``skips_callees``).
DISPATCH_HANDLERS = frozenset({"__torch_function__", "__torch_dispatch__"})


def skips_callees(code) -> bool:
    """Do the frames this code calls run natively as well?"""
    return code.co_name in DISPATCH_HANDLERS


def skip_reason(code, global_mode: bool, cfg: Config) -> str | None:
    """Why a code object is not a compilation candidate, or None if it is."""
    if code.co_name in DISPATCH_HANDLERS:
        return "torch-function or dispatch handler (runs inside an operator's dispatch)"
    fn = code.co_filename
    if fn.startswith("<"):
        # exec'd, interactive or generated code (fx graphs, guards): only
        # when compiled explicitly, which bypasses these rules
        return "generated code"
    path = _real(fn)
    if path.startswith(_OWN_DIR):
        return "janus_frame itself"
    if path.startswith(_library_dirs()):
        return "library internals (torch, triton, numpy, ...)"
    if path.startswith(_real(kernel_cache_dir(cfg)) + os.sep):
        # modules the fusing backend generated (Triton launchers, kernels)
        return "janus_frame's generated kernels"
    in_site = path.startswith(_SITE_DIRS)
    if not in_site and path.startswith(_STDLIB_DIRS):
        return "standard library"
    if not global_mode and not in_site:
        return None
    cwd = os.getcwd() + os.sep
    if (path.startswith(cwd) or _main_dir() and path.startswith(_main_dir())) and not in_site:
        return None  # the user's code: the working directory, and the script's own
    if cfg.compile_modules:
        mod = _module_of(path)
        if mod and any(mod == p or mod.startswith(p + ".") for p in cfg.compile_modules):
            return None
    if in_site:
        mod = _module_of(path) or ""
        top = mod.split(".", 1)[0]
        if top in _INFRASTRUCTURE or top.startswith("_editable"):
            return "packaging and import machinery"
        if not global_mode:
            return None  # like torch.compile: library model code is compiled
        if cfg.skip_site_packages:
            return "installed package (set JANUS_COMPILE_MODULES to compile it)"
        return None
    if not global_mode:
        return None
    return "outside the working directory (set JANUS_COMPILE_MODULES to compile it)"


# installed packages that never hold model code: import hooks, packaging
_INFRASTRUCTURE = frozenset({
    "_editable_skbc_janus_frame", "_distutils_hack", "setuptools", "pkg_resources", "pip",
    "importlib_metadata", "importlib_resources", "typing_extensions", "packaging",
    "filelock", "fsspec", "tqdm", "huggingface_hub", "safetensors", "tokenizers", "regex",
    # compiler libraries (reached when a backend compiles lazily, e.g. the
    # backward graph inside loss.backward())
    "sympy", "mpmath", "networkx", "jinja2", "markupsafe", "triton",
})


def _main_dir() -> str | None:
    """The directory of the program's main script (``python dir/train.py``
    from anywhere): its code, and code beside it, is the user's."""
    main = sys.modules.get("__main__")
    f = getattr(main, "__file__", None)
    if not f:
        return None
    d = _real(os.path.dirname(os.path.abspath(f))) + os.sep
    if d.startswith(_SITE_DIRS) or d.startswith(_STDLIB_DIRS) or d.startswith(_OWN_DIR):
        return None
    return d


def _module_of(path: str) -> str | None:
    for base in _SITE_DIRS + tuple(os.path.realpath(p) + os.sep for p in sys.path if p):
        if path.startswith(base):
            rel = path[len(base):]
            rel = rel[:-3] if rel.endswith(".py") else rel
            parts = rel.split(os.sep)
            if parts and parts[-1] == "__init__":
                parts = parts[:-1]
            return ".".join(parts)
    return None
