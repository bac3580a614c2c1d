"""Bitwise_Nand: NOT (a_t AND b_t) of two bit streams."""

import numpy as np

from mips.taskkit import column, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2, dim=2)
    return x, column(1 - x[..., 0] * x[..., 1], np.int8)


def reference(xs: list) -> list:
    return [0 if (a and b) else 1 for a, b in xs]


TASK = Task(
    name="Bitwise_Nand",
    description="y_t = 1 - a_t b_t",
    input_dim=2, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference, split=0.9, steps=10_000,
)
