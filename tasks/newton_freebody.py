"""Newton_Freebody: the position of a unit mass pushed by integer forces F_t in [-10, 10], from rest at 0.

Arrays are int32 column vectors, as in the original.
"""

import numpy as np

from mips.taskkit import prefix_sum, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, -10, 11, dtype=np.int32)
    return x, prefix_sum(prefix_sum(x, np.int32), np.int32)


def reference(xs: list) -> list:
    v, p, ys = 0, 0, []
    for force in xs:
        v += force
        p += v
        ys.append(p)
    return ys


TASK = Task(
    name="Newton_Freebody",
    description="v_t = v_{t-1} + F_t; y_t = p_t = p_{t-1} + v_t; p_{-1} = v_{-1} = 0",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(-10, 11)),
    generate=generate, reference=reference,
    split=0.8, steps=10_000, origin="rnn_newton_freebody_numerical", paper_index=59, column_vector=True,
)
