"""Sum_All: the running sum of all inputs so far, x_t in [0, 100)."""

import numpy as np

from mips.taskkit import column, prefix_sum, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 100, dtype=np.int16)
    return x, column(prefix_sum(x[..., 0]), np.int16)


def reference(xs: list) -> list:
    total, ys = 0, []
    for x in xs:
        total += x
        ys.append(total)
    return ys


TASK = Task(
    name="Sum_All",
    description="y_t = x_0 + x_1 + ... + x_t",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(100)),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="rnn_sum_numerical", paper_index=17,
)
