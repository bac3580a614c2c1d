"""Ones_Mod_3: how many ones so far, modulo 3 (Parity_All with three instead of two)."""

import numpy as np

from mips.taskkit import column, prefix_count, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2)
    return x, column(prefix_count(x[..., 0] == 1) % 3, np.int8)


def reference(xs: list) -> list:
    count, ys = 0, []
    for x in xs:
        count = (count + x) % 3
        ys.append(count)
    return ys


TASK = Task(
    name="Ones_Mod_3",
    description="y_t = #{s <= t: x_s = 1} mod 3",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference, split=0.9, steps=10_000,
)
