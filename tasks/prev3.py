"""Prev3: the input 3 steps back (0 for the first 3 steps), x_t in [0, 100)."""

import numpy as np

from mips.taskkit import shift, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 100)
    return x, shift(x, 3)


def reference(xs: list) -> list:
    return [xs[t - 3] if t >= 3 else 0 for t in range(len(xs))]


TASK = Task(
    name="Prev3",
    description="y_t = x_{t-3} if t >= 3 else 0",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(100)),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="rnn_prev3_numerical", paper_index=27,
)
