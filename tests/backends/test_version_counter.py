"""In-place updates by compiled graphs advance autograd's version counters.

Kernels write inputs through raw pointers; eager's in-place ops advance the
tensor's ``_version``, which is how autograd notices that a tensor saved for
backward was modified ("one of the variables needed for gradient computation
has been modified by an inplace operation").  Differential: the same
programs, eager and compiled (torch.compile with the fusing backend, and
``jf.compile``), give the same version counts and the same autograd error."""
import pytest
import torch

from conftest import jcompile


def _two_updates(x):
    x.mul_(2)
    x.add_(1)
    return x.sum()


def _view_update(x):
    x[1:].add_(1)
    return x * 2


def _update_with_grad_input(x, w):
    x.add_(1)
    return (x * w).sum()


def _no_update(x):
    return x * 2


def _compilers():
    import janus_frame as jf

    return [("backend", jcompile), ("backend-dynamic", lambda f: jcompile(f, dynamic=True)),
            ("frame", jf.compile)]


def _saved_then_updated(fn, extra=()):
    """Save ``b`` for backward, update it with ``fn``, then backward: the
    autograd error (or None) and how far ``b``'s version moved."""
    a = torch.randn(6, requires_grad=True)
    b = torch.randn(6)
    y = a * b  # saves b
    v0 = b._version
    fn(b, *extra)
    fn(b, *extra)
    moved = b._version - v0
    try:
        y.sum().backward()
    except RuntimeError as e:
        return str(e).split(":")[0], moved
    return None, moved


@pytest.mark.parametrize("name,comp", _compilers(), ids=[c[0] for c in _compilers()])
@pytest.mark.parametrize("fn", [_two_updates, _view_update, _no_update],
                         ids=["two_updates", "view_update", "no_update"])
def test_saved_tensor_updated_in_graph_fails_backward_as_in_eager(name, comp, fn):
    want = _saved_then_updated(fn)
    got = _saved_then_updated(comp(fn))
    assert got == want
    if fn is not _no_update:
        assert want[0] is not None and "modified by an inplace operation" in want[0]


@pytest.mark.parametrize("name,comp", _compilers(), ids=[c[0] for c in _compilers()])
def test_version_advances_in_a_training_graph(name, comp):
    w = torch.randn(6, requires_grad=True)
    want = _saved_then_updated(_update_with_grad_input, (w,))
    got = _saved_then_updated(comp(_update_with_grad_input), (w,))
    assert got == want and want[0] is not None


class _Counter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("seen", torch.zeros(4))

    def forward(self, x):
        self.seen.add_(x.sum(0))
        self.seen.mul_(0.5)
        return x * 2


def test_version_of_a_mutated_module_buffer():
    m, ref = _Counter(), _Counter()
    x = torch.randn(8, 4)
    cm = jcompile(m)
    v0, r0 = m.seen._version, ref.seen._version
    cm(x)
    ref(x)
    assert m.seen._version - v0 == ref.seen._version - r0 == 2
    assert torch.equal(m.seen, ref.seen)
