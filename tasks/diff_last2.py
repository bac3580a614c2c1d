"""Diff_Last2: the current input minus the previous one (x_{-1} = 0), x_t in [-100, 100)."""

import numpy as np

from mips.taskkit import shift, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, -100, 100, dtype=np.int16)
    return x, x - shift(x, 1)


def reference(xs: list) -> list:
    prev, ys = 0, []
    for x in xs:
        ys.append(x - prev)
        prev = x
    return ys


TASK = Task(
    name="Diff_Last2",
    description="y_t = x_t - x_{t-1}, with x_{-1} = 0",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(-100, 100)),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="rnn_diff_last2_numerical", paper_index=31,
)
