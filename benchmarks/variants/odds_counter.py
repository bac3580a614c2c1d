"""Odds_Counter: how many odd inputs so far, x_t in [0, 10) (the mirror of Evens_Counter)."""

import numpy as np

from mips.taskkit import column, prefix_count, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 10)
    return x, column(prefix_count(x[..., 0] % 2 == 1))


def reference(xs: list) -> list:
    count, ys = 0, []
    for x in xs:
        count += x % 2
        ys.append(count)
    return ys


TASK = Task(
    name="Odds_Counter",
    description="y_t = #{s <= t: x_s odd}",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(10)),
    generate=generate, reference=reference, split=0.9, steps=20_000,
)
