"""The public activation API: compile, enable, disable, reset.

In: user functions, methods, callables and ``nn.Module`` instances.
Out: wrappers that run them with this thread's frame callback set, so the C
hook compiles the frames they run (see :mod:`janus_frame.hook`); context
managers for global mode and for turning janus_frame off in a region.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import sys
from typing import Any, Callable

from . import _C, hook, torch_compat
from .cache import clear_all
from .hook import reset_stats


def _frame_transform(func, args, ctx):
    """The symbolic interpreter, the frame transform of every compiler made
    here (imported on first use: compiling a plain function imports no torch)."""
    from .frontend.convert import compile_frame

    return compile_frame(func, args, ctx)


# Stand-in transforms for the foundation tests (the hook and the API tested
# on their own, with observable transforms): see frame_transform_override.
_transform_override: list = []


@contextlib.contextmanager
def frame_transform_override(transform):
    """For tests: compilers made by the public API inside this block use
    ``transform(func, args, ctx)`` instead of the symbolic interpreter."""
    _transform_override.append(transform)
    try:
        yield transform
    finally:
        _transform_override.remove(transform)


def get_compiler(backend, fullgraph: bool = False, dynamic=None, global_mode: bool = False,
                 **options):
    """The compiler for a configuration, with the symbolic interpreter as its
    frame transform (see ``hook.get_compiler``)."""
    transform = _transform_override[-1] if _transform_override else _frame_transform
    c = hook.get_compiler(backend, fullgraph, dynamic, global_mode, transform=transform,
                          **options)
    _warm_up()
    _drop_caches_at_exit()
    return c


_exit_registered = False


def _drop_caches_at_exit() -> None:
    """At interpreter exit, after the program's exit handlers registered
    later than the first compiler: every cache entry goes, so module globals
    referenced by guards and replacements are torn down like any others
    (their finalizers run, as in plain Python)."""
    global _exit_registered
    if not _exit_registered:
        _exit_registered = True
        atexit.register(clear_all)


def _warm_up() -> None:
    """Load the interpreter with the compiler (like torch.compile, which loads
    its own when called), not inside the first compiled call. Skipped in
    programs that have not imported torch."""
    if "torch" in sys.modules and "janus_frame.frontend.convert" not in sys.modules:
        from .frontend import convert  # noqa: F401 - loads the interpreter


def _code_of(obj) -> Any:
    """The code object a call of ``obj`` enters first (for explicit compiles)."""
    if inspect.ismethod(obj):
        obj = obj.__func__
    code = getattr(obj, "__code__", None)
    if code is None and not inspect.isfunction(obj) and hasattr(type(obj), "__call__"):
        code = getattr(type(obj).__call__, "__code__", None)
    return code


def _wrapper(fn: Callable, callback) -> Callable:
    """``fn`` run with this thread's callback set to ``callback`` (None: off).

    A C callable (``_C.Wrapper``): no Python frame of its own, so a JIT tracing
    the caller (TorchDynamo) cannot trace through it into ``fn``; binds as a
    method in a class; carries ``fn``'s name, docstring and ``__wrapped__``."""
    w = _C.Wrapper(fn, callback)
    try:
        functools.update_wrapper(w, fn)
    except AttributeError:  # callables without __name__ etc.
        w.__wrapped__ = fn
    return w


def _wrap_function(fn: Callable, compiler) -> Callable:
    code = _code_of(fn)
    if code is not None:
        compiler.forced.add(code)
    w = _wrapper(fn, compiler)
    w._janus_compiler = compiler
    w._janus_original = fn
    return w


def mark_dynamic(t, dim) -> None:
    """Trace dimension ``dim`` (an int or a sequence of ints) of tensor ``t``
    with a symbolic size from the first compile on, so that other sizes reuse
    the compiled code. Sizes 0 and 1 are still specialised; a non-contiguous
    tensor keeps static sizes."""
    import torch

    if not isinstance(t, torch.Tensor):
        raise TypeError(f"mark_dynamic expects a tensor, got {type(t).__name__}")
    dims = [dim] if isinstance(dim, int) else list(dim)
    marked = set(getattr(t, "_jf_dynamic_dims", ()))
    for d in dims:
        if not isinstance(d, int) or isinstance(d, bool):
            raise TypeError(f"mark_dynamic: dimension must be an int, got {d!r}")
        if not -t.dim() <= d < t.dim():
            raise IndexError(f"mark_dynamic: dimension {d} out of range for a "
                             f"{t.dim()}-d tensor")
        marked.add(d % t.dim())
    t._jf_dynamic_dims = marked


def compile(fn_or_module=None, *, backend="default", fullgraph: bool = False,
            dynamic: bool | None = None, **options):
    """Compile a function, method, callable or ``nn.Module`` with janus_frame.

    Usable as ``compile(f)``, ``@compile`` and ``@compile(backend="eager")``.
    ``backend`` is ``"default"`` (the fusing backend), ``"eager"``,
    ``"inductor"`` or a callable ``backend(gm, example_inputs) -> callable``.
    ``fullgraph=True`` raises at the first graph break instead of falling back.
    ``dynamic``: None (default) compiles static sizes first and makes a tensor
    dimension or int argument symbolic once it is seen to change (one
    recompile); True traces every dimension of argument tensors and every int
    argument symbolically from the first compile; False never does (each new
    size compiles again, up to the cache limit). ``mark_dynamic`` applies in
    every mode.
    Other keyword options override :class:`janus_frame.config.Config` fields.
    """
    # Resolve the configuration first: an unknown backend or option is an
    # error at the call, also in the decorator-with-arguments form.
    compiler = get_compiler(backend, fullgraph=fullgraph, dynamic=dynamic, **options)
    if fn_or_module is None:
        return lambda f: compile(f, backend=backend, fullgraph=fullgraph, dynamic=dynamic,
                                 **options)
    # Only an already imported torch can have made an nn.Module: compiling a
    # plain function does not import torch.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(fn_or_module, torch.nn.Module):
        from .module import CompiledModule

        return CompiledModule(fn_or_module, compiler)
    if not callable(fn_or_module):
        raise TypeError(
            f"janus_frame.compile expects a function, callable or nn.Module, "
            f"got {type(fn_or_module).__name__}"
        )
    return _wrap_function(fn_or_module, compiler)


class enable:
    """Global mode: every frame run in this thread inside the block is a
    candidate (standard library, torch internals, janus_frame itself and,
    by default, installed packages are skipped).

    ``with janus_frame.enable(backend="eager"): train()``; also a decorator.
    """

    def __init__(self, *, backend="default", **options):
        self.compiler = get_compiler(backend, global_mode=True, **options)
        self._prev: list = []

    def __enter__(self):
        self._prev.append(_C.set_eval_frame(self.compiler))
        return self

    def __exit__(self, *exc):
        _C.set_eval_frame(self._prev.pop())
        return False

    def __call__(self, fn):
        return _wrapper(fn, self.compiler)


class _Disabled:
    """``with janus_frame.disable():`` -- nothing in the block (including the
    frames it calls) is intercepted; when no other thread needs the hook it
    is uninstalled for the duration, so the block runs at native speed."""

    def __init__(self) -> None:
        self._prev: list = []

    def __enter__(self):
        self._prev.append(_C.set_eval_frame(None))
        return self

    def __exit__(self, *exc):
        _C.set_eval_frame(self._prev.pop())
        return False

    def __call__(self, fn):
        return disable(fn)


def disable(fn=None):
    """Decorator (``@disable``) or context manager (``with disable():``) that
    turns janus_frame off for a function or region and everything it calls.
    When a compiled frame calls a disabled function, the call runs natively."""
    if fn is None:
        return _Disabled()
    if not callable(fn):
        raise TypeError(f"janus_frame.disable expects a callable, got {type(fn).__name__}")

    janus_disabled = _wrapper(fn, None)
    janus_disabled._janus_disabled = True
    janus_disabled._janus_original = fn
    return janus_disabled


def reset() -> None:
    """Drop every compiled entry, code strategy and statistic."""
    clear_all()
    reset_stats()
    torch_compat.clear_fake_tensor_cache()


def enable_process_wide(backend=None) -> None:
    """Global mode for this thread and every thread started later
    (``JANUS_FRAME=1``)."""
    import threading

    comp = get_compiler(backend, global_mode=True)
    _C.set_eval_frame(comp)
    # Registered first, so it runs after the program's own exit handlers:
    # from there on (module teardown, finalizers) everything runs natively.
    atexit.register(_end_process_wide)  # (after _drop_caches_at_exit: runs before it)

    def _start_thread(*_):
        # Runs once at the start of each new thread, then removes itself.
        import sys

        sys.setprofile(None)
        _C.set_eval_frame(comp)

    threading.setprofile(_start_thread)


def _end_process_wide() -> None:
    import threading

    threading.setprofile(None)
    _C.set_eval_frame(None)
    clear_all()
