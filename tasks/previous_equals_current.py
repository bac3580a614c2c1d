"""Previous_Equals_Current: does the input repeat the previous one? x_t in [0, 8).

Quirks kept:
- the first output compares x_0 with an implicit x_{-1} = 0, so y_0 = [x_0 == 0]. The paper's data shows
  this (its first training rows have y_0 = 1 exactly when x_0 = 0), although the released script sets y_0 = 0;
- rows are de-duplicated and then shuffled, so generate(rng, n) returns slightly fewer than n rows
  (about n^2 / (2 * 8^10) fewer: a few hundred for n = 1e6).
"""

import numpy as np

from mips.taskkit import shift, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 8)
    key = x[..., 0].astype(np.int64) @ (8 ** np.arange(10, dtype=np.int64))  # one int per row, base 8
    _, first = np.unique(key, return_index=True)
    x = x[rng.permutation(first)]
    return x, (x == shift(x, 1)).astype(np.int8)


def reference(xs: list) -> list:
    prev, ys = 0, []
    for x in xs:
        ys.append(1 if x == prev else 0)
        prev = x
    return ys


TASK = Task(
    name="Previous_Equals_Current",
    description="y_t = [x_t == x_{t-1}], with x_{-1} = 0",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(8)),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="rnn_unique2_numerical", paper_index=30,
    quirk="rows are de-duplicated then shuffled (slightly fewer than n); y_0 = [x_0 == 0]",
)
