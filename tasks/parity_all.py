"""Parity_All: the parity of the number of ones seen so far in a bit sequence."""

import numpy as np

from mips.taskkit import column, prefix_sum, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2)
    return x, column(prefix_sum(x[..., 0]) % 2, np.int8)


def reference(xs: list) -> list:
    ones, ys = 0, []
    for x in xs:
        ones += x
        ys.append(ones % 2)
    return ys


TASK = Task(
    name="Parity_All",
    description="y_t = (x_0 + ... + x_t) mod 2",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="rnn_parity_numerical", paper_index=14,
)
