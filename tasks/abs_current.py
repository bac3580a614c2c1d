"""Abs_Current: the absolute value of the input, x_t in [-100, 100)."""

import numpy as np

from mips.taskkit import uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, -100, 100)
    return x, np.abs(x)


def reference(xs: list) -> list:
    return [abs(x) for x in xs]


TASK = Task(
    name="Abs_Current",
    description="y_t = |x_t|",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(-100, 100)),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="rnn_abs_value_numerical", paper_index=33,
)
