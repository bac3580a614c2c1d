"""Bit_Palindrome: does the prefix x_0..x_t read the same backwards? (So y_0 = 1 always.)

Quirk kept: the inputs are not uniform. Each row starts with a random palindrome of length L ~ U{2..10}
(its first ceil(L/2) bits are uniform, the rest mirror them) followed by 10 - L uniform bits, so that
palindromic prefixes are common.
"""

import numpy as np

from mips.taskkit import column, uniform
from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = uniform(rng, n, 10, 0, 2)[..., 0]
    length = rng.integers(2, 11, size=n, dtype=np.int8)
    for L in range(2, 11):  # rows with palindrome length L: bits ceil(L/2)..L-1 mirror the first ones
        rows = length == L
        x[rows, (L + 1) // 2 : L] = x[rows, : L // 2][:, ::-1]
    y = np.ones((n, 10), bool)
    for t in range(10):  # x_0..x_t is a palindrome iff x_j == x_{t-j} for every j <= t/2
        for j in range(t // 2 + 1):
            y[:, t] &= x[:, j] == x[:, t - j]
    return column(x), column(y, np.int8)


def reference(xs: list) -> list:
    return [1 if xs[: t + 1] == xs[: t + 1][::-1] else 0 for t in range(len(xs))]


TASK = Task(
    name="Bit_Palindrome",
    description="y_t = [x_0..x_t is a palindrome]",
    input_dim=1, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.9, steps=20_000, origin="rnn_bit_palindromes_numerical", paper_index=42,
    quirk="non-uniform inputs: each row starts with a random palindrome of length 2..10",
)
