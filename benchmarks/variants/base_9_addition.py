"""Base_9_Addition: add two base-9 numbers given one digit pair per step, least-significant digit first;
the final carry is dropped (the family of Base_3..7_Addition)."""

import numpy as np

from mips.taskkit import column, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 9, dim=2)
    y, carry = np.empty((n, 10), np.int8), np.zeros(n, np.int8)
    for t in range(10):
        total = x[:, t, 0] + x[:, t, 1] + carry
        y[:, t], carry = total % 9, total // 9
    return x, column(y)


def reference(xs: list) -> list:
    carry, ys = 0, []
    for a, b in xs:
        total = a + b + carry
        ys.append(total % 9)
        carry = total // 9
    return ys


TASK = Task(
    name="Base_9_Addition",
    description="y_t = (a_t + b_t + c_t) mod 9 with carry c_{t+1} = (a_t + b_t + c_t) // 9, c_0 = 0",
    input_dim=2, output_dim=1, seq_len=10, input_values=tuple(range(9)),
    generate=generate, reference=reference, split=0.9, steps=20_000,
)
