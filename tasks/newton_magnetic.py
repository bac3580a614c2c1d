"""Newton_Magnetic: a unit charge in the plane, pushed by forces F_t in [-10, 10]^2, in a unit magnetic field.

The field adds the velocity turned by 90 degrees, (-v_y, v_x) (the original's v @ [[0, 1], [-1, 0]] with v a
row vector), to the acceleration. Arrays are int32, shaped (n, 10, 2), as in the original.
"""

import numpy as np

from mips.taskkit import uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, -10, 11, dim=2, dtype=np.int32)
    y, v, p = np.empty_like(x), np.zeros((n, 2), np.int32), np.zeros((n, 2), np.int32)
    for t in range(10):
        v = v + x[:, t] + np.stack([-v[:, 1], v[:, 0]], axis=1)
        p = p + v
        y[:, t] = p
    return x, y


def reference(xs: list) -> list:
    vx, vy, px, py, ys = 0, 0, 0, 0, []
    for fx, fy in xs:
        vx, vy = vx + fx - vy, vy + fy + vx
        px, py = px + vx, py + vy
        ys.append((px, py))
    return ys


TASK = Task(
    name="Newton_Magnetic",
    description="v_t = v_{t-1} + F_t + (-v_{t-1,y}, v_{t-1,x}); y_t = p_t = p_{t-1} + v_t; p, v start at 0",
    input_dim=2, output_dim=2, seq_len=10, input_values=tuple(range(-10, 11)),
    generate=generate, reference=reference,
    split=0.8, steps=10_000, origin="rnn_newton_magnetic_numerical", paper_index=62, column_vector=True,
)
