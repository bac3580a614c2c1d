"""Dithering_10: quantize x_t in [0, 11) to 0/1 so the running totals track S_t / 10 (Dithering with 10)."""

import numpy as np

from mips.taskkit import column, prefix_sum, shift, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 11, dtype=np.int32)
    level = prefix_sum(x[..., 0], np.int32) // 10
    return x, column(level - shift(level, 1))


def reference(xs: list) -> list:
    total, ys = 0, []
    for x in xs:
        ys.append((total + x) // 10 - total // 10)
        total += x
    return ys


TASK = Task(
    name="Dithering_10",
    description="y_t = S_t // 10 - S_{t-1} // 10, with S_t = x_0 + ... + x_t and S_{-1} = 0",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(11)),
    generate=generate, reference=reference, split=0.8, steps=10_000, column_vector=True,
)
