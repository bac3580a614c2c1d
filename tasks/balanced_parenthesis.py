"""Balanced_Parenthesis: is the prefix a balanced string of parentheses? 0 is '(' and 1 is ')'.

Quirk kept: the original loop stops at the first step where the balance goes negative, so every later
output is 0 even if the count of '(' and ')' evens out again.
"""

import numpy as np

from mips.taskkit import column, prefix_sum, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2)
    balance = prefix_sum(1 - 2 * x[..., 0])  # '(' adds 1, ')' subtracts 1
    broken = np.logical_or.accumulate(balance < 0, axis=1)
    return x, column((balance == 0) & ~broken, np.int8)


def reference(xs: list) -> list:
    balance, ys = 0, [0] * len(xs)
    for t, x in enumerate(xs):
        balance += 1 if x == 0 else -1
        if balance == 0:
            ys[t] = 1
        if balance < 0:
            break
    return ys


TASK = Task(
    name="Balanced_Parenthesis",
    description="y_t = [#'(' == #')' in x_0..x_t], and 0 from the first step the balance is negative",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.9, steps=20_000, origin="rnn_balanced_parenthesis_numerical", paper_index=43,
    quirk="once the balance goes negative every later output is 0 (the original loop breaks)",
)
