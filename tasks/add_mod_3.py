"""Add_Mod_3: the running sum of x_t in [0, 3), modulo 3. Arrays are int32 column vectors, as originally."""

import numpy as np

from mips.taskkit import column, prefix_sum, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 3, dtype=np.int32)
    return x, column(prefix_sum(x[..., 0]) % 3, np.int32)


def reference(xs: list) -> list:
    total, ys = 0, []
    for x in xs:
        total = (total + x) % 3
        ys.append(total)
    return ys


TASK = Task(
    name="Add_Mod_3",
    description="y_t = (x_0 + ... + x_t) mod 3",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1, 2),
    generate=generate, reference=reference,
    split=0.8, steps=10_000, origin="rnn_add_mod_3_numerical", paper_index=52, column_vector=True,
)
