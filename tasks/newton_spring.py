"""Newton_Spring: a unit mass on a unit spring, pushed by forces F_t in [-10, 10]: acceleration F_t - p_{t-1}.

Arrays are int32 column vectors, as in the original.
"""

import numpy as np

from mips.taskkit import column, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, -10, 11, dtype=np.int32)
    y, v, p = np.empty((n, 10), np.int32), np.zeros(n, np.int32), np.zeros(n, np.int32)
    for t in range(10):
        v = v + x[:, t, 0] - p
        p = p + v
        y[:, t] = p
    return x, column(y)


def reference(xs: list) -> list:
    v, p, ys = 0, 0, []
    for force in xs:
        v += force - p
        p += v
        ys.append(p)
    return ys


TASK = Task(
    name="Newton_Spring",
    description="v_t = v_{t-1} + F_t - p_{t-1}; y_t = p_t = p_{t-1} + v_t; p_{-1} = v_{-1} = 0",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(-10, 11)),
    generate=generate, reference=reference,
    split=0.8, steps=10_000, origin="rnn_newton_spring_numerical", paper_index=61, column_vector=True,
)
