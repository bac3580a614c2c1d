"""Bit_Dot_Prod_Mod2: the running dot product of two bit streams, modulo 2."""

import numpy as np

from mips.taskkit import column, prefix_sum, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2, dim=2)
    return x, column(prefix_sum(x[..., 0] * x[..., 1]) % 2, np.int8)


def reference(xs: list) -> list:
    total, ys = 0, []
    for a, b in xs:
        total += a * b
        ys.append(total % 2)
    return ys


TASK = Task(
    name="Bit_Dot_Prod_Mod2",
    description="y_t = (a_0 b_0 + ... + a_t b_t) mod 2",
    input_dim=2, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.9, steps=20_000, origin="rnn_bit_dot_prod_mod2_numerical", paper_index=48,
)
