"""Prev6: the input six steps back (0 before the start), over sequences of length 20."""

import numpy as np

from mips.taskkit import shift, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 20, 0, 100)
    return x, shift(x, 6)


def reference(xs: list) -> list:
    return [xs[t - 6] if t >= 6 else 0 for t in range(len(xs))]


TASK = Task(
    name="Prev6",
    description="y_t = x_{t-6} for t >= 6, else 0",
    input_dim=1, output_dim=1, seq_len=20, input_values=tuple(range(100)),
    generate=generate, reference=reference, split=0.9, steps=10_000,
)
