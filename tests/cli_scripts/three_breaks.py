"""Three graph breaks of known, different cost: natively run sleeps of 1, 5
and 20 ms, each executed once per step. argv[1]: number of steps."""
import sys
import time

import torch


def step(x):
    x = x + 1
    time.sleep(0.001)  # cheap break
    x = x * 2
    time.sleep(0.020)  # expensive break
    x = x - 1
    time.sleep(0.005)  # middle break
    return x.sum()


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    x = torch.ones(8)
    total = 0.0
    for _ in range(steps):
        total += float(step(x))
    print(f"steps={steps} total={total}")


if __name__ == "__main__":
    main()
