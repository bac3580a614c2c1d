"""Majority_0_4: the most frequent value so far among x_t in {0, ..., 4}; ties go to the smallest value."""

import numpy as np

from mips.taskkit import column, prefix_count, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 5)
    counts = np.stack([prefix_count(x[..., 0] == v, np.int8) for v in range(5)], axis=-1)
    return x, column(counts.argmax(axis=-1), np.int8)


def reference(xs: list) -> list:
    counts, ys = {}, []
    for x in xs:
        counts[x] = counts.get(x, 0) + 1
        best = max(counts.values())
        ys.append(min(v for v, c in counts.items() if c == best))
    return ys


TASK = Task(
    name="Majority_0_4",
    description="y_t = the most frequent value in x_0..x_t, the smallest one on ties",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1, 2, 3, 4),
    generate=generate, reference=reference, split=0.9, steps=20_000,
)
