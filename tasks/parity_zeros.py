"""Parity_Zeros: the parity of the number of zeros seen so far in a bit sequence."""

import numpy as np

from mips.taskkit import column, prefix_count, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2)
    return x, column(prefix_count(x[..., 0] == 0) % 2, np.int8)


def reference(xs: list) -> list:
    zeros, ys = 0, []
    for x in xs:
        if x == 0:
            zeros += 1
        ys.append(zeros % 2)
    return ys


TASK = Task(
    name="Parity_Zeros",
    description="y_t = #{s <= t: x_s = 0} mod 2",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.9, steps=20_000, origin="rnn_parity_of_zeros_numerical", paper_index=15,
)
