"""Exits with the status given as argv[1] (or the message, if not a number)."""
import sys

import torch


def work(x):
    return (x + 1).sum()


if __name__ == "__main__":
    work(torch.ones(3))
    arg = sys.argv[1]
    sys.exit(int(arg) if arg.lstrip("-").isdigit() else arg)
