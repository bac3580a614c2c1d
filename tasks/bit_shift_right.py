"""Bit_Shift_Right: the bit stream delayed by one step (0 first)."""

import numpy as np

from mips.taskkit import shift, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2)
    return x, shift(x, 1)


def reference(xs: list) -> list:
    return [0] + list(xs[:-1]) if xs else []


TASK = Task(
    name="Bit_Shift_Right",
    description="y_0 = 0; y_t = x_{t-1}",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.9, steps=20_000, origin="rnn_bit_shift_right_numerical", paper_index=47,
)
