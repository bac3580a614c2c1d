"""Abstractions: which states of a path become the pivots, i.e. the states of the next layer up.

- **Skip step**: every ``step``-th state plus the last one (the top layer takes only the first and last).
- **Entropy** (the original's "ideal entropy abstraction"): count how often each node is visited over many
  random walks; the pivots of a path are the local maxima of that count along it, plus its first and last
  states. Frequently visited "hub" nodes become sub-goals.

Going down (``specify``) is the identity in every implementation of the original, so the book's model
has no downward map: a pivot *is* a state of the layer below.

Explained in notebooks/humn_graph.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

PivotFn = Callable[[Sequence], np.ndarray]


def skip_pivots(length: int, step: float) -> np.ndarray:
    """Indices ``0, step, 2*step, ...`` and the last index (``step = inf``: first and last only)."""
    if length < 1:
        raise ValueError("a path needs at least one state")
    if math.isinf(step):
        idx = [0, length - 1]
    else:
        if step < 1 or int(step) != step:
            raise ValueError(f"skip step must be a positive integer or inf, got {step}")
        idx = list(range(0, length, int(step))) + [length - 1]
    return np.unique(np.asarray(idx, dtype=np.int64))


def local_maxima(values: Sequence[float]) -> np.ndarray:
    """Indices of the first and last element and of every interior ``j`` with ``v[j-1] <= v[j] > v[j+1]``.

    On a plateau the pivot is the last element before the path goes downhill.
    """
    v = np.asarray(values, dtype=np.float64)
    if len(v) <= 2:
        return np.arange(len(v))
    downhill = v[:-1] > v[1:]
    peaks = ~downhill[:-1] & downhill[1:]
    return np.flatnonzero(np.concatenate([[True], peaks, [True]]))


class VisitStatistics:
    """How often each node is visited over a set of walks; pivots are the local maxima of that count."""

    def __init__(self, n_states: int):
        self.n_states = n_states
        self.counts_ = np.zeros(n_states, dtype=np.int64)

    def fit(self, walks: Sequence[Sequence[int]]) -> VisitStatistics:
        for walk in walks:
            np.add.at(self.counts_, np.asarray(walk, dtype=np.int64), 1)
        return self

    def pivots(self, nodes: Sequence[int]) -> np.ndarray:
        return local_maxima(self.counts_[np.asarray(nodes, dtype=np.int64)])


@dataclass
class LayerPath:
    """One layer's view of a demonstrated path."""

    positions: np.ndarray  # indices into the original path of this layer's states
    pivots: np.ndarray     # indices into this layer's path of its pivots (= the next layer's states)


def layer_paths(path: Sequence, n_layers: int, pivots: PivotFn) -> list[LayerPath]:
    """Build the hierarchy of a path: layer ``i + 1``'s states are layer ``i``'s pivots.

    ``pivots(layer_states)`` picks the pivots of a lower layer; the top layer's pivots are its first and
    last states, so the top layer learns to head straight for the final goal.
    """
    positions = np.arange(len(path))
    out = []
    for layer in range(n_layers):
        states = [path[p] for p in positions]
        piv = skip_pivots(len(states), math.inf) if layer == n_layers - 1 else np.asarray(pivots(states))
        out.append(LayerPath(positions, piv))
        positions = positions[piv]
    return out
