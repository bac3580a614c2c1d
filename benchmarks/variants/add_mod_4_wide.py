"""Add_Mod_4_Wide: the running sum modulo 4 of inputs from a wider alphabet, x_t in [0, 8)."""

import numpy as np

from mips.taskkit import column, prefix_sum, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 8, dtype=np.int32)
    return x, column(prefix_sum(x[..., 0]) % 4, np.int32)


def reference(xs: list) -> list:
    total, ys = 0, []
    for x in xs:
        total = (total + x) % 4
        ys.append(total)
    return ys


TASK = Task(
    name="Add_Mod_4_Wide",
    description="y_t = (x_0 + ... + x_t) mod 4, x_t in [0, 8)",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(8)),
    generate=generate, reference=reference, split=0.8, steps=10_000, column_vector=True,
)
