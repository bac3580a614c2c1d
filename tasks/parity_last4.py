"""Parity_Last4: the parity of the last 4 bits (fewer at the start of the sequence)."""

import numpy as np

from mips.taskkit import column, uniform, window_sum
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2)
    return x, column(window_sum(x[..., 0], 4) % 2, np.int8)


def reference(xs: list) -> list:
    return [sum(xs[max(0, t - 3):t + 1]) % 2 for t in range(len(xs))]


TASK = Task(
    name="Parity_Last4",
    description="y_t = (x_{t-3} + ... + x_t) mod 2, over the steps that exist",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="rnn_parity_last4_numerical", paper_index=13,
)
