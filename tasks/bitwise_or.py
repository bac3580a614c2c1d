"""Bitwise_Or: the OR of two bit streams, step by step."""

import numpy as np

from mips.taskkit import column, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2, dim=2)
    return x, column(x[..., 0] | x[..., 1])


def reference(xs: list) -> list:
    return [1 if a + b > 0 else 0 for a, b in xs]


TASK = Task(
    name="Bitwise_Or",
    description="y_t = [a_t + b_t > 0]",
    input_dim=2, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="rnn_bitwise_or", paper_index=8,
)
