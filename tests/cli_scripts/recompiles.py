"""One graph break and one recompile (a new input shape), for log tests."""
import torch


def model(x):
    y = x.relu() + 1
    print("between graphs")  # graph break (print)
    return y * 2


if __name__ == "__main__":
    model(torch.ones(3))
    model(torch.ones(3))
    model(torch.ones(5, 2))
