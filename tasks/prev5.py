"""Prev5: the input 5 steps back (0 for the first 5 steps), x_t in [0, 100).

Quirk kept: sequences have length 20 here (10 for Prev1-4), as in the original.
"""

import numpy as np

from mips.taskkit import shift, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 20, 0, 100)
    return x, shift(x, 5)


def reference(xs: list) -> list:
    return [xs[t - 5] if t >= 5 else 0 for t in range(len(xs))]


TASK = Task(
    name="Prev5",
    description="y_t = x_{t-5} if t >= 5 else 0",
    input_dim=1, output_dim=1, seq_len=20, input_values=tuple(range(100)),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="rnn_prev5_numerical", paper_index=29,
    quirk="sequence length 20 (Prev1-4 use 10)",
)
