"""Alternating_Last5: do the last five bits alternate (01010 or 10101)? Bits before the start count as 0."""

import numpy as np

from mips.taskkit import column, shift, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2)
    b = [shift(x[..., 0], k) for k in range(5)]
    return x, column(np.logical_and.reduce([b[k] != b[k + 1] for k in range(4)]), np.int8)


def reference(xs: list) -> list:
    padded = [0, 0, 0, 0] + list(xs)
    return [1 if tuple(padded[t:t + 5]) in ((0, 1, 0, 1, 0), (1, 0, 1, 0, 1)) else 0 for t in range(len(xs))]


TASK = Task(
    name="Alternating_Last5",
    description="y_t = [(x_{t-4}, ..., x_t) is 01010 or 10101], with x_s = 0 for s < 0",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference, split=0.9, steps=20_000,
)
