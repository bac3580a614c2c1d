"""Bitwise_Not: flip every bit."""

import numpy as np

from mips.taskkit import uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2)
    return x, 1 - x


def reference(xs: list) -> list:
    return [1 - x for x in xs]


TASK = Task(
    name="Bitwise_Not",
    description="y_t = 1 - x_t",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="rnn_bitwise_not", paper_index=10,
)
