"""Multiple_Of_3_Detector: is the current input, in [0, 20), a multiple of 3?"""

import numpy as np

from mips.taskkit import column, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 20)
    return x, column(x[..., 0] % 3 == 0, np.int8)


def reference(xs: list) -> list:
    return [1 if x % 3 == 0 else 0 for x in xs]


TASK = Task(
    name="Multiple_Of_3_Detector",
    description="y_t = [x_t mod 3 == 0]",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(20)),
    generate=generate, reference=reference, split=0.9, steps=20_000,
)
