"""Current_Number: the identity map, x_t in [0, 100)."""

import numpy as np

from mips.taskkit import uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 100)
    return x, x.copy()


def reference(xs: list) -> list:
    return list(xs)


TASK = Task(
    name="Current_Number",
    description="y_t = x_t",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(100)),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="rnn_identity_numerical", paper_index=24,
)
