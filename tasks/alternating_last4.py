"""Alternating_Last4: do the last four bits alternate (0101 or 1010)? Bits before the start count as 0."""

import numpy as np

from mips.taskkit import column, shift, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2)
    b = x[..., 0]
    b1, b2, b3 = shift(b, 1), shift(b, 2), shift(b, 3)
    return x, column((b != b1) & (b1 != b2) & (b2 != b3), np.int8)


def reference(xs: list) -> list:
    padded = [0, 0, 0] + list(xs)
    return [1 if tuple(padded[t:t + 4]) in ((0, 1, 0, 1), (1, 0, 1, 0)) else 0 for t in range(len(xs))]


TASK = Task(
    name="Alternating_Last4",
    description="y_t = [(x_{t-3}, ..., x_t) is 0101 or 1010], with x_s = 0 for s < 0",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.9, steps=20_000, origin="rnn_alternating_last4_numerical", paper_index=46,
)
