"""Binary_Addition: add two binary numbers given least-significant bit first; the final carry is dropped."""

import numpy as np

from mips.tasks import Task


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(0, 2, size=(n, 10, 2), dtype=np.int8)
    a = x[..., 0].astype(np.int64) @ (1 << np.arange(10))
    b = x[..., 1].astype(np.int64) @ (1 << np.arange(10))
    y = ((a + b)[:, None] >> np.arange(10)) & 1
    return x, y[..., None].astype(np.int8)


def reference(xs: list) -> list:
    carry, ys = 0, []
    for a, b in xs:
        total = a + b + carry
        ys.append(total % 2)
        carry = total // 2
    return ys


TASK = Task(
    name="Binary_Addition",
    description="y_t = (a_t + b_t + c_t) mod 2 with carry c_{t+1} = (a_t + b_t + c_t) // 2, c_0 = 0",
    input_dim=2, output_dim=1, seq_len=10, input_values=(0, 1),
    generate=generate, reference=reference,
    split=0.9, steps=10_000, origin="bit_addition", paper_index=1,
)
