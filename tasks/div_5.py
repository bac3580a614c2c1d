"""Div_5: long division of a binary number by 5, fed most-significant bit first.

Long division keeps a remainder r (r = 0 before the first bit); at step t it forms c_t = 2 r + x_t, emits
the quotient bit q_t = c_t // 5 and keeps r = c_t mod 5.

Quirks kept from the original dataset:
- bits arrive MSB first (the original docstring says "reverse order", but its worked example is MSB first);
- the outputs lag one step: y_0 = 0 and y_t = q_{t-1}, so the last quotient bit is never shown. The original
  script stacks a zero column in front of the ten quotient bits and keeps the first ten columns; the paper's
  GPT-4 prompt rows (the first training rows) show this shifted output.
Arrays are int32 column vectors, as in the original.
"""

import numpy as np

from mips.taskkit import column, long_division_quotients, shift, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2, dtype=np.int32)
    return x, column(shift(long_division_quotients(x[..., 0], 5), 1))


def reference(xs: list) -> list:
    r, q, ys = 0, 0, []
    for x in xs:
        ys.append(q)  # the quotient bit of the previous step
        c = 2 * r + x
        q, r = c // 5, c % 5
    return ys


TASK = Task(
    name="Div_5",
    description="y_0 = 0; y_t = q_{t-1}: c_t = 2 r_{t-1} + x_t, q_t = c_t // 5, r_t = c_t mod 5, r_{-1} = 0",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.8, steps=10_000, origin="rnn_div_5_numerical", paper_index=50, column_vector=True,
    quirk="MSB first, and the quotient bits lag one step (y_0 = 0, the last quotient bit is dropped)",
)
