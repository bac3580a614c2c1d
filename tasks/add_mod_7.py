"""Add_Mod_7: the running sum of x_t in [0, 7), modulo 7. Arrays are int32 column vectors, as originally."""

import numpy as np

from mips.taskkit import column, prefix_sum, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 7, dtype=np.int32)
    return x, column(prefix_sum(x[..., 0]) % 7, np.int32)


def reference(xs: list) -> list:
    total, ys = 0, []
    for x in xs:
        total = (total + x) % 7
        ys.append(total)
    return ys


TASK = Task(
    name="Add_Mod_7",
    description="y_t = (x_0 + ... + x_t) mod 7",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1, 2, 3, 4, 5, 6),
    generate=generate, reference=reference,
    split=0.8, steps=10_000, origin="rnn_add_mod_7_numerical", paper_index=56, column_vector=True,
)
