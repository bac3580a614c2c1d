"""Small vectorized helpers for task files: uniform inputs, time shifts, windows and prefix counts.

Every helper works along the time axis (axis 1) of arrays shaped (n, T) or (n, T, dim). Task generators
use them; task references do not (a reference is plain Python written from the definition).
"""

from __future__ import annotations

import numpy as np


def uniform(rng: np.random.Generator, n: int, seq_len: int, low: int, high: int, dim: int = 1,
            dtype=np.int8) -> np.ndarray:
    """i.i.d. integers in [low, high) shaped (n, seq_len, dim), like ``torch.randint(low, high, ...)``."""
    return rng.integers(low, high, size=(n, seq_len, dim), dtype=dtype)


def shift(a: np.ndarray, k: int, fill: int = 0) -> np.ndarray:
    """``a`` delayed by k steps along time: out[:, t] = a[:, t - k], and ``fill`` for t < k."""
    out = np.full_like(a, fill)
    out[:, k:] = a[:, : a.shape[1] - k]
    return out


def prefix_sum(a: np.ndarray, dtype=None) -> np.ndarray:
    """Running sum over time, out[:, t] = a[:, 0] + ... + a[:, t], in a's dtype unless given (it must fit)."""
    return np.cumsum(a, axis=1, dtype=dtype or a.dtype)


def window_sum(a: np.ndarray, k: int, dtype=None) -> np.ndarray:
    """Sum of the last k steps (fewer at the start): out[:, t] = a[:, max(0, t-k+1)] + ... + a[:, t]."""
    c = prefix_sum(a, dtype)
    return c - shift(c, k)


def prefix_count(mask: np.ndarray, dtype=np.int16) -> np.ndarray:
    """How many steps so far satisfy ``mask``: out[:, t] = #{s <= t: mask[:, s]}."""
    return np.cumsum(mask, axis=1, dtype=dtype)


def column(a: np.ndarray, dtype=None) -> np.ndarray:
    """(n, T) -> (n, T, 1), optionally cast: the shape every task returns for one-dimensional outputs."""
    return (a if dtype is None else a.astype(dtype))[..., None]


def long_division_quotients(bits: np.ndarray, m: int) -> np.ndarray:
    """Quotient bits of dividing the MSB-first binary number ``bits`` (n, T) by m: q_t = (2 r + x_t) // m."""
    q, r = np.empty(bits.shape, np.int32), np.zeros(bits.shape[0], np.int32)
    for t in range(bits.shape[1]):
        c = 2 * r + bits[:, t]
        q[:, t], r = c // m, c % m
    return q
