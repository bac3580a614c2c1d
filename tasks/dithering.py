"""Dithering: quantize a brightness stream x_t in [0, 16) to 0/1 so the running totals track S_t / 15.

With S_t = x_0 + ... + x_t (S_{-1} = 0), the output is 1 exactly when S_t passes a multiple of 15.
Arrays are int32 column vectors, as in the original.
"""

import numpy as np

from mips.taskkit import column, prefix_sum, shift, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 16, dtype=np.int32)
    level = prefix_sum(x[..., 0], np.int32) // 15
    return x, column(level - shift(level, 1))


def reference(xs: list) -> list:
    total, ys = 0, []
    for x in xs:
        ys.append((total + x) // 15 - total // 15)
        total += x
    return ys


TASK = Task(
    name="Dithering",
    description="y_t = S_t // 15 - S_{t-1} // 15, with S_t = x_0 + ... + x_t and S_{-1} = 0",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(16)),
    generate=generate, reference=reference,
    split=0.8, steps=10_000, origin="rnn_dithering_numerical", paper_index=58, column_vector=True,
)
