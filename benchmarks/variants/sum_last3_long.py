"""Sum_Last3_Long: the sum of the last three inputs, over sequences of length 20 instead of 10."""

import numpy as np

from mips.taskkit import uniform, window_sum
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 20, 0, 100, dtype=np.int16)
    return x, window_sum(x, 3)


def reference(xs: list) -> list:
    return [sum(xs[max(0, t - 2): t + 1]) for t in range(len(xs))]


TASK = Task(
    name="Sum_Last3_Long",
    description="y_t = x_{t-2} + x_{t-1} + x_t, counting only steps >= 0; T = 20",
    input_dim=1, output_dim=1, seq_len=20, input_values=tuple(range(100)),
    generate=generate, reference=reference, split=0.9, steps=10_000,
)
