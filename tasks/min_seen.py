"""Min_Seen: the smallest input so far.

Quirk kept: inputs are x_t in [0, 10) here but [0, 100) for Max_Seen.
"""

import numpy as np

from mips.taskkit import uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 10, dtype=np.int16)
    return x, np.minimum.accumulate(x, axis=1)


def reference(xs: list) -> list:
    best, ys = None, []
    for x in xs:
        best = x if best is None or x < best else best
        ys.append(best)
    return ys


TASK = Task(
    name="Min_Seen",
    description="y_t = min(x_0, ..., x_t)",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(10)),
    generate=generate, reference=reference,
    split=0.9, steps=20_000, origin="rnn_min_numerical", paper_index=35,
    quirk="inputs are in [0, 10) while Max_Seen's are in [0, 100)",
)
