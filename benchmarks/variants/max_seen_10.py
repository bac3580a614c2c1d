"""Max_Seen_10: the largest input so far, x_t in [0, 10) (Max_Seen over Min_Seen's alphabet)."""

import numpy as np

from mips.taskkit import uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 10, dtype=np.int16)
    return x, np.maximum.accumulate(x, axis=1)


def reference(xs: list) -> list:
    best, ys = None, []
    for x in xs:
        best = x if best is None else max(best, x)
        ys.append(best)
    return ys


TASK = Task(
    name="Max_Seen_10",
    description="y_t = max(x_0, ..., x_t), x_t in [0, 10)",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(10)),
    generate=generate, reference=reference, split=0.9, steps=20_000,
)
