"""Evens_Detector: is the current input even? x_t in [0, 10)."""

import numpy as np

from mips.taskkit import uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 10)
    return x, (x % 2 == 0).astype(np.int8)


def reference(xs: list) -> list:
    return [1 if x % 2 == 0 else 0 for x in xs]


TASK = Task(
    name="Evens_Detector",
    description="y_t = [x_t is even]",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(10)),
    generate=generate, reference=reference,
    split=0.9, steps=20_000, origin="rnn_evens_detector_numerical", paper_index=40,
)
