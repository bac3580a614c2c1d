"""Prev4: the input 4 steps back (0 for the first 4 steps), x_t in [0, 100)."""

import numpy as np

from mips.taskkit import shift, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 100)
    return x, shift(x, 4)


def reference(xs: list) -> list:
    return [xs[t - 4] if t >= 4 else 0 for t in range(len(xs))]


TASK = Task(
    name="Prev4",
    description="y_t = x_{t-4} if t >= 4 else 0",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(100)),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="rnn_prev4_numerical", paper_index=28,
)
