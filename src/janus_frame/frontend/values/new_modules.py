"""Stateless ``torch.nn`` modules constructed in traced code.

In: ``nn.ReLU()``, ``nn.GELU(approximate="tanh")``, ``nn.Dropout(0.1)``,
``nn.CrossEntropyLoss()`` and the like called inside a compiled frame
(transformers' DistilBERT builds ``nn.ReLU()`` in its forward, its models'
heads build their loss there) with constant arguments; the class exactly one
of torch's parameter-free modules below, its ``__init__`` torch's own.
Out: ``NewModuleV``: the module built for real at trace time (its
``__init__`` only stores the arguments and Module's empty tables), called
like any module (its ``forward`` inlined); rebuilt by calling the class
again with the same arguments if it escapes, so each call of the compiled
frame gets a new object, as Python would. Only its constant attributes can
be read (what those forwards read: ``inplace``, ``p``, ``training``,
``dim``...); storing into it, or reading anything else (its hook tables, a
method that would change it), is a graph break: the symbolic copy and the
object rebuilt could then differ.
"""
from __future__ import annotations

import torch

from ..breaks import GraphBreak
from .base import NO
from .constants import Const
from .objects import ObjV

_nn = torch.nn
STATELESS = frozenset(c for c in (
    _nn.ReLU, _nn.ReLU6, _nn.GELU, _nn.SiLU, _nn.Mish, _nn.Tanh, _nn.Sigmoid, _nn.Hardtanh,
    _nn.Hardsigmoid, _nn.Hardswish, _nn.LeakyReLU, _nn.ELU, _nn.CELU, _nn.SELU, _nn.Softplus,
    _nn.Softsign, _nn.Tanhshrink, _nn.LogSigmoid, _nn.Softmax, _nn.LogSoftmax, _nn.Softmin,
    _nn.Identity, _nn.Dropout, _nn.Dropout1d, _nn.Dropout2d, _nn.Dropout3d, _nn.AlphaDropout,
    _nn.Flatten,
    # losses: their weight buffers (None unless given, and a tensor is not a
    # constant argument) are read as None
    _nn.L1Loss, _nn.MSELoss, _nn.CrossEntropyLoss, _nn.NLLLoss, _nn.BCELoss,
    _nn.BCEWithLogitsLoss, _nn.SmoothL1Loss, _nn.HuberLoss, _nn.KLDivLoss, _nn.SoftMarginLoss,
    _nn.MultiLabelSoftMarginLoss, _nn.PoissonNLLLoss, _nn.GaussianNLLLoss,
    _nn.MarginRankingLoss, _nn.HingeEmbeddingLoss, _nn.CosineEmbeddingLoss))
_ATOMS = (int, float, bool, str, type(None))


def _unwrap_tagging(init):
    """torch.compile, once used in the process, replaces ``Module.__init__``
    by a wrapper that calls the original and tags the new module with a
    generation number (torch._dynamo.mutation_guard). That wrapper changes
    nothing these modules' construction does, so it stands for the
    original; any other replacement does not."""
    if getattr(init, "__module__", None) == "torch._dynamo.mutation_guard" and \
            getattr(init, "__code__", None) is not None and \
            init.__code__.co_freevars == ("init",):
        return init.__closure__[0].cell_contents
    return init


# each class's own __init__ when janus_frame was imported (a patched one is not built here)
_INITS = {c: _unwrap_tagging(next(k.__dict__["__init__"] for k in c.__mro__
                                  if "__init__" in k.__dict__)) for c in STATELESS}


def _constant(v):
    x = v.as_python()
    if type(x) in _ATOMS or type(x) is tuple and all(type(e) in _ATOMS for e in x):
        return x
    return NO


def construct(tx, cls: type, args: list, kwargs: dict, init) -> "NewModuleV | None":
    """The module ``cls(*args, **kwargs)``, or None when this does not apply
    (another class, a patched ``__init__``, an argument that is not a
    constant). ``init``: what the class's ``__init__`` resolves to (guarded
    by the caller's lookup)."""
    if cls not in STATELESS or init is None or _unwrap_tagging(init) is not _INITS[cls]:
        return None
    pargs = [_constant(a) for a in args]
    pkw = {k: _constant(v) for k, v in kwargs.items()}
    if any(x is NO for x in pargs) or any(x is NO for x in pkw.values()):
        return None
    try:
        obj = cls(*pargs, **pkw)
    except Exception:  # noqa: BLE001 - a bad argument: let Python raise it natively
        return None
    return NewModuleV(obj, tuple(pargs), pkw)


class NewModuleV(ObjV):
    __slots__ = ("args", "kwargs")

    def __init__(self, obj, args: tuple, kwargs: dict) -> None:
        super().__init__(obj, None)
        self.args, self.kwargs = args, kwargs

    def get_attr(self, tx, name: str):
        d = self._obj.__dict__
        if name in d and _constant(Const(d[name])) is not NO:
            return Const(d[name])
        if name not in d and d["_buffers"].get(name, 0) is None:
            return Const(None)  # an absent weight (Module.__getattr__ finds the None)
        raise GraphBreak("JF023", f"attribute {name!r} of a {type(self._obj).__name__} "
                         "constructed inside a compiled frame")

    def call_method(self, tx, name: str, args: list, kwargs: dict):
        raise GraphBreak("JF023", f"method {name} of a {type(self._obj).__name__} "
                         "constructed inside a compiled frame")

    def reconstruct(self, rb) -> tuple[str, bool]:
        k = rb.fb.const
        args = "".join(f"{k(a)}, " for a in self.args)
        kw = "".join(f"{n}={k(v)}, " for n, v in self.kwargs.items())
        return f"{k(type(self._obj))}({args}{kw})", True
