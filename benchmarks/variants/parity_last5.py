"""Parity_Last5: the parity of the last five bits (fewer at the start)."""

import numpy as np

from mips.taskkit import column, uniform, window_sum
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2)
    return x, column(window_sum(x[..., 0], 5) % 2)


def reference(xs: list) -> list:
    return [sum(xs[max(0, t - 4): t + 1]) % 2 for t in range(len(xs))]


TASK = Task(
    name="Parity_Last5",
    description="y_t = (x_{t-4} + ... + x_t) mod 2, counting only steps >= 0",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference, split=0.9, steps=10_000,
)
