"""Parity_Bits_Mod2: the parity of the step index, 0, 1, 0, 1, ...

Quirk kept: the output ignores the input bits entirely (the original folder is rnn_parity_of_index).
"""

import numpy as np

from mips.taskkit import uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2)
    y = np.broadcast_to((np.arange(10) % 2).astype(np.int8)[None, :, None], x.shape)
    return x, y.copy()


def reference(xs: list) -> list:
    return [t % 2 for t in range(len(xs))]


TASK = Task(
    name="Parity_Bits_Mod2",
    description="y_t = t mod 2 (independent of x)",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.9, steps=20_000, origin="rnn_parity_of_index_numerical", paper_index=44,
    quirk="the output ignores the input",
)
