"""Prints its arguments, then fails with an exception from a nested call."""
import sys

import torch


def inner(x):
    y = x * 2
    raise ValueError(f"boom from the script: {y.sum().item()}")


if __name__ == "__main__":
    print("argv:", sys.argv[1:])
    inner(torch.ones(2))
