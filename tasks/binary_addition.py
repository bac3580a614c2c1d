"""Binary_Addition: add two binary numbers given one bit pair per step, least-significant bit first.

The final carry is dropped, as in the original.
"""

import numpy as np

from mips.taskkit import column, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2, dim=2)
    y, carry = np.empty((n, 10), np.int8), np.zeros(n, np.int8)
    for t in range(10):
        total = x[:, t, 0] + x[:, t, 1] + carry
        y[:, t], carry = total % 2, total // 2
    return x, column(y)


def reference(xs: list) -> list:
    carry, ys = 0, []
    for a, b in xs:
        total = a + b + carry
        ys.append(total % 2)
        carry = total // 2
    return ys


TASK = Task(
    name="Binary_Addition",
    description="y_t = (a_t + b_t + c_t) mod 2 with carry c_{t+1} = (a_t + b_t + c_t) // 2, c_0 = 0",
    input_dim=2, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="bit_addition", paper_index=1,
)
