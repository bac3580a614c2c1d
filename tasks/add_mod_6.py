"""Add_Mod_6: the running sum of x_t in [0, 6), modulo 6. Arrays are int32 column vectors, as originally."""

import numpy as np

from mips.taskkit import column, prefix_sum, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 6, dtype=np.int32)
    return x, column(prefix_sum(x[..., 0]) % 6, np.int32)


def reference(xs: list) -> list:
    total, ys = 0, []
    for x in xs:
        total = (total + x) % 6
        ys.append(total)
    return ys


TASK = Task(
    name="Add_Mod_6",
    description="y_t = (x_0 + ... + x_t) mod 6",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1, 2, 3, 4, 5),
    generate=generate, reference=reference,
    split=0.8, steps=10_000, origin="rnn_add_mod_6_numerical", paper_index=55, column_vector=True,
)
