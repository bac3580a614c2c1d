"""Sum_Last2: the sum of the last 2 inputs (fewer at the start), x_t in [0, 100)."""

import numpy as np

from mips.taskkit import column, uniform, window_sum
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 100, dtype=np.int16)
    return x, column(window_sum(x[..., 0], 2), np.int16)


def reference(xs: list) -> list:
    return [sum(xs[max(0, t - 1):t + 1]) for t in range(len(xs))]


TASK = Task(
    name="Sum_Last2",
    description="y_t = x_{t-1} + ... + x_t, over the steps that exist",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(100)),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="rnn_sum_last2_numerical", paper_index=18,
)
