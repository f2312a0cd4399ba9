"""Private torch APIs janus_frame relies on, in one place.

In: the installed torch (2.11 to 2.15).
Out: small functions over torch internals, with the version differences
handled here, so the rest of the package never reaches into ``torch._*``
for these.

- :func:`fx_source_keys` / :func:`forget_fx_sources`: torch.fx registers the
  source of every GraphModule it generates in ``linecache`` and in its own
  loader (for tracebacks), and never forgets it: a process compiling and
  dropping many functions would keep every graph's source. janus_frame
  forgets the sources its compiles registered once their cache entry dies.
- :func:`bound_fake_tensor_cache` / :func:`clear_fake_tensor_cache`:
  FakeTensorMode's dispatch cache is process-wide and unbounded (one entry
  per operator and argument metadata, constants included); it is cleared
  when it grows past a bound, and by ``janus_frame.reset()``.
"""
from __future__ import annotations

import linecache
import sys

FAKE_CACHE_LIMIT = 1024


def _fx_loader():
    """torch.fx's source loader if fx is loaded (never imports)."""
    return getattr(sys.modules.get("torch.fx.graph_module"), "_loader", None)


def fx_source_keys() -> frozenset:
    """The fx sources registered so far (their pseudo file names)."""
    loader = _fx_loader()
    cache = getattr(loader, "eval_cache", None)
    return frozenset(cache) if cache is not None else frozenset()


def forget_fx_sources(keys) -> None:
    """Forget the registered sources ``keys`` (their graphs are gone)."""
    loader = _fx_loader()
    cache = getattr(loader, "eval_cache", None)
    for k in keys:
        if cache is not None:
            cache.pop(k, None)
        linecache.cache.pop(k, None)


def _fake_mode_class():
    """FakeTensorMode if torch's fake tensors are loaded (never imports)."""
    mod = sys.modules.get("torch._subclasses.fake_tensor")
    return getattr(mod, "FakeTensorMode", None)


def bound_fake_tensor_cache(limit: int = FAKE_CACHE_LIMIT) -> None:
    cls = _fake_mode_class()
    cache = getattr(cls, "cache", None)
    if cache is not None and len(cache) > limit:
        cls.cache_clear()


def clear_fake_tensor_cache() -> None:
    cls = _fake_mode_class()
    if hasattr(cls, "cache_clear"):
        cls.cache_clear()
