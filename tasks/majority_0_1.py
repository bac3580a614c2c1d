"""Majority_0_1: the most frequent value so far among x_t in {0, 1}; ties go to the smallest value."""

import numpy as np

from mips.taskkit import column, prefix_count, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2)
    counts = np.stack([prefix_count(x[..., 0] == v, np.int8) for v in range(2)], axis=-1)
    return x, column(counts.argmax(axis=-1), np.int8)  # argmax picks the first (smallest) tied value


def reference(xs: list) -> list:
    counts, ys = {}, []
    for x in xs:
        counts[x] = counts.get(x, 0) + 1
        best = max(counts.values())
        ys.append(min(v for v, c in counts.items() if c == best))
    return ys


TASK = Task(
    name="Majority_0_1",
    description="y_t = the most frequent value in x_0..x_t, the smallest one on ties",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.9, steps=20_000, origin="rnn_majority0_1_numerical", paper_index=37,
)
