"""Evens_Counter: how many even numbers have been seen so far, x_t in [0, 10).

Quirk kept: the labels are int64 (the original took a cumulative sum of booleans), the inputs int8.
"""

import numpy as np

from mips.taskkit import column, prefix_count, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 10)
    return x, column(prefix_count(x[..., 0] % 2 == 0, np.int64))


def reference(xs: list) -> list:
    evens, ys = 0, []
    for x in xs:
        if x % 2 == 0:
            evens += 1
        ys.append(evens)
    return ys


TASK = Task(
    name="Evens_Counter",
    description="y_t = #{s <= t: x_s even}",
    input_dim=1, output_dim=1, seq_len=10, input_values=tuple(range(10)),
    generate=generate, reference=reference,
    split=0.9, steps=20_000, origin="rnn_evens_counter_numerical", paper_index=16,
    quirk="labels are int64, unlike the other tasks' small integer types",
)
