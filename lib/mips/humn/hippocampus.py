"""The hippocampus: a short-term buffer of the states a layer has been in, read by the cortex as context.

In the original the one-hot hippocampus also pairs each state with a sinusoidal position code, but the cortex
reads only the state part; the book keeps the states alone. "Tagging" (version 44 of the original) was
never implemented there and is not here either.
"""

from __future__ import annotations

import torch


class Hippocampus:
    """Keeps the last ``context_length`` states of a batch; ``context()`` is ``(B, context_length, d)``."""

    def __init__(self, context_length: int = 1):
        if context_length < 1:
            raise ValueError(f"context_length must be at least 1, got {context_length}")
        self.context_length = context_length
        self._states: list[torch.Tensor] = []

    def append(self, state: torch.Tensor) -> None:
        self._states = (self._states + [state])[-self.context_length:]

    def refresh(self) -> None:
        """Forget everything (a new episode, or a new target in ``think``)."""
        self._states = []

    def context(self) -> torch.Tensor:
        """The last states, oldest first; the oldest is repeated while fewer have been seen."""
        if not self._states:
            raise RuntimeError("the hippocampus is empty: append the current state before reading the context")
        pad = [self._states[0]] * (self.context_length - len(self._states))
        return torch.stack(pad + self._states, dim=1)

    def __len__(self) -> int:
        return len(self._states)
