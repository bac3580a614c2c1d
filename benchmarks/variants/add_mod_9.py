"""Add_Mod_9: the running sum of x_t in [0, 9), modulo 9 (a variant of Add_Mod_3..8 with another modulus)."""

import numpy as np

from mips.taskkit import column, prefix_sum, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 9, dtype=np.int32)
    return x, column(prefix_sum(x[..., 0]) % 9, np.int32)


def reference(xs: list) -> list:
    total, ys = 0, []
    for x in xs:
        total = (total + x) % 9
        ys.append(total)
    return ys


TASK = Task(
    name="Add_Mod_9",
    description="y_t = (x_0 + ... + x_t) mod 9",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(9)),
    generate=generate, reference=reference, split=0.8, steps=10_000, column_vector=True,
)
