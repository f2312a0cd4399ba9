"""Slices and selects whose bounds are symbolic, against eager over three
sizes of one dynamic graph, in C++ and in Triton-interpreter mode.

torch normalises a slice bound before use: a negative one counts from the
end, then it is clamped to the dimension.  With a symbolic size the bound
``-s0`` of a dimension ``s0`` must become 0 (T5's relative position bias is
sliced ``bias[:, :, -n:, :]``); left as it is, the kernel reads ``s0``
elements before the data.  The same holds for a negative symbolic select
index, for a bound past the end (clamped to the size) and for a tail of a
size taken from another input."""
import contextlib

import pytest
import torch

import janus_frame as jf
from conftest import assert_close


def _bias_tail(x, w):
    # the shape of T5's attention: scores += position bias[..., -n:, :]
    n = x.shape[2]
    b = w.permute(2, 0, 1).unsqueeze(0)[:, :, -n:, :]
    y = x @ x.transpose(-1, -2)
    y += b
    return y.softmax(-1)


def _tail_of_other(x, k):
    # start = s0 - s1: a tail whose length is another input's size
    return x[:, -k.shape[0]:] * 2 + 1


def _end_past_size(x, k):
    # end = s1 > s0: clamped to the dimension
    return x[:, :k.shape[0]].exp()


def _select_from_end(x):
    # index -s0 of a dimension s0 is its first element
    return x[:, -x.shape[1]] + x[:, -1]


CASES = [
    ("bias tail", _bias_tail, lambda n: (torch.randn(2, 2, n, 4), torch.randn(n, n, 2))),
    ("tail of other", _tail_of_other, lambda n: (torch.randn(3, n), torch.randn(n // 2))),
    ("end past size", _end_past_size, lambda n: (torch.randn(3, n), torch.randn(n + 3))),
    ("select from end", _select_from_end, lambda n: (torch.randn(3, n, 2),)),
]


@pytest.mark.parametrize("triton", [False, True], ids=["cpp", "triton"])
@pytest.mark.parametrize("name,f,make", CASES, ids=[c[0] for c in CASES])
def test_symbolic_slice_bounds(name, f, make, triton):
    from janus_frame.backends.janus import force_triton, stats

    jf.reset()  # the frontend's cache outlives the per-test reset of dynamo's
    cf = jf.compile(f, dynamic=True)
    with force_triton() if triton else contextlib.nullcontext():
        for n in (6, 10, 14):
            args = make(n)
            before = [a.clone() for a in args]
            assert_close(cf(*args), f(*args))
            assert_close(list(args), before)
    assert stats.graphs, "nothing was compiled"
