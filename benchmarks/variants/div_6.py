"""Div_6: long division of a binary number by 6, fed most-significant bit first, with the quotient bits
one step late as in Div_3/5/7 (y_0 = 0, y_t = q_{t-1})."""

import numpy as np

from mips.taskkit import column, long_division_quotients, shift, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2, dtype=np.int32)
    return x, column(shift(long_division_quotients(x[..., 0], 6), 1))


def reference(xs: list) -> list:
    r, q, ys = 0, 0, []
    for x in xs:
        ys.append(q)
        c = 2 * r + x
        q, r = c // 6, c % 6
    return ys


TASK = Task(
    name="Div_6",
    description="y_0 = 0; y_t = q_{t-1}: c_t = 2 r_{t-1} + x_t, q_t = c_t // 6, r_t = c_t mod 6, r_{-1} = 0",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference, split=0.8, steps=10_000, column_vector=True,
)
