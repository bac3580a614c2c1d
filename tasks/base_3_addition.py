"""Base_3_Addition: add two base-3 numbers given one digit pair per step, least-significant digit first.

The final carry is dropped, as in the original.
"""

import numpy as np

from mips.taskkit import column, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 3, dim=2)
    y, carry = np.empty((n, 10), np.int8), np.zeros(n, np.int8)
    for t in range(10):
        total = x[:, t, 0] + x[:, t, 1] + carry
        y[:, t], carry = total % 3, total // 3
    return x, column(y)


def reference(xs: list) -> list:
    carry, ys = 0, []
    for a, b in xs:
        total = a + b + carry
        ys.append(total % 3)
        carry = total // 3
    return ys


TASK = Task(
    name="Base_3_Addition",
    description="y_t = (a_t + b_t + c_t) mod 3 with carry c_{t+1} = (a_t + b_t + c_t) // 3, c_0 = 0",
    input_dim=2, output_dim=1, seq_len=10, input_values=tuple(range(3)),
    generate=generate, reference=reference,
    split=0.9, steps=20_000, origin="rnn_base_3_addition", paper_index=2,
)
