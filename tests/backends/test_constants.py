"""Real tensor constants inside compiled graphs (built by model code at trace
time, lifted by AOTAutograd as attributes) are lowered, in training too."""
import torch

from conftest import jcompile


def test_tensor_constant_built_by_the_model_in_a_training_graph():
    w = torch.randn(4, 3, requires_grad=True)

    def f(x):
        empty = torch.tensor([])  # a constant of the graph
        y = torch.cat([x @ w, empty.reshape(x.shape[0], 0)], dim=1)
        return torch.tanh(y).sum()

    x = torch.randn(2, 4)
    got = jcompile(f)(x)
    g1, = torch.autograd.grad(got, [w])
    want = f(x)
    g2, = torch.autograd.grad(want, [w])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(g1, g2)
