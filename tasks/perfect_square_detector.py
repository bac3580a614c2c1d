"""Perfect_Square_Detector: is the current input a perfect square? x_t in [0, 20)."""

import numpy as np

from mips.taskkit import uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 20)
    return x, np.isin(x, [0, 1, 4, 9, 16]).astype(np.int8)


def reference(xs: list) -> list:
    return [1 if any(k * k == x for k in range(x + 1)) else 0 for x in xs]


TASK = Task(
    name="Perfect_Square_Detector",
    description="y_t = [x_t is in {0, 1, 4, 9, 16}]",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(20)),
    generate=generate, reference=reference,
    split=0.9, steps=20_000, origin="rnn_perfect_square_detector_numerical", paper_index=41,
)
