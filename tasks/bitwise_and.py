"""Bitwise_And: the AND of two bit streams, step by step."""

import numpy as np

from mips.taskkit import column, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2, dim=2)
    return x, column(x[..., 0] & x[..., 1])


def reference(xs: list) -> list:
    return [a * b for a, b in xs]


TASK = Task(
    name="Bitwise_And",
    description="y_t = a_t * b_t",
    input_dim=2, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="rnn_bitwise_and", paper_index=9,
)
