"""The cortex: a goal-conditioned step proposer, and the hindsight examples it learns from.

Hindsight relabelling: every state of a demonstrated path is a place from which the path's later *pivots*
(the states the abstraction picked as sub-goals) were reached. For pivot ``j`` at path index ``p_j``, the
states from pivot ``j - 2`` (inclusive) up to ``p_j`` (exclusive) each give one example
``(context = the states up to t, step = what was done at t, goal = pivot j, score)``, so every state learns
toward its next two pivots. The score says how good that evidence is (higher when the goal was reached in
fewer steps); the kernel keeps the best.

Explained in notebooks/humn_graph.ipynb.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from mips.humn.kernels import SlotKernel, TableKernel

log = logging.getLogger(__name__)

Kernel = TableKernel | SlotKernel


def pivot_windows(pivot_indices: Sequence[int], length: int, pre_steps: int = 2) -> np.ndarray:
    """``(P, length)`` mask: state ``t`` learns toward pivot ``j`` when ``p_{j - pre_steps} <= t < p_j``.

    Before the first ``pre_steps`` pivots the window starts at the path's start.
    """
    pivots = np.asarray(pivot_indices, dtype=np.int64)
    pre_steps = min(pre_steps, len(pivots))
    if pre_steps == 0:
        return np.zeros((0, length), dtype=bool)
    start = np.concatenate([np.zeros(pre_steps, dtype=np.int64), pivots[:-pre_steps]])
    pos = np.arange(length)[None, :]
    return (start[:, None] <= pos) & (pos < pivots[:, None])


@dataclass
class Hindsight:
    """Training examples for one layer: ``context (N, ctx, d)``, ``step (N, d_step)``, ``goal (N, d_goal)``,
    ``score (N,)``."""

    context: torch.Tensor
    step: torch.Tensor
    goal: torch.Tensor
    score: torch.Tensor

    def __len__(self) -> int:
        return len(self.score)

    @staticmethod
    def cat(parts: Sequence[Hindsight]) -> Hindsight:
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ValueError("no training examples: every path was too short to have a pivot ahead of a state")
        return Hindsight(*(torch.cat([getattr(p, f) for p in parts]) for f in ("context", "step", "goal", "score")))

    def take(self, rows: torch.Tensor) -> Hindsight:
        return Hindsight(self.context[rows], self.step[rows], self.goal[rows], self.score[rows])


def hindsight(states: np.ndarray, steps: np.ndarray, pivot_indices: Sequence[int], goals: np.ndarray,
              scores: np.ndarray, context_length: int = 1, pre_steps: int = 2) -> Hindsight:
    """The examples of one path at one layer.

    ``states (L, d)``: the layer's path; ``steps (L, d_step)``: what was done at each state (row ``t`` leads
    to ``t + 1``); ``goals (P, d_goal)``: what each pivot is as a goal; ``scores (P, L)``: the score of
    reaching pivot ``j`` from state ``t``. The context of ``t`` is its last ``context_length`` states, the
    path's first state repeated where the path is shorter.
    """
    length = len(states)
    mask = pivot_windows(pivot_indices, length, pre_steps)
    j, t = np.nonzero(mask)
    offsets = np.arange(-context_length + 1, 1)
    ctx_rows = np.clip(t[:, None] + offsets[None, :], 0, None)
    return Hindsight(
        context=torch.as_tensor(states[ctx_rows], dtype=torch.float32),
        step=torch.as_tensor(steps[t], dtype=torch.float32),
        goal=torch.as_tensor(goals[j], dtype=torch.float32),
        score=torch.as_tensor(scores[j, t], dtype=torch.float32),
    )


class Cortex:
    """One layer's step proposer: ``infer_sub_action(context, action) -> action`` through a kernel.

    The action handed down points at the goal (``goal = current state + action``); the kernel's answer is
    the layer's own next step toward it, which becomes the sub-goal of the layer below.
    """

    def __init__(self, kernel: Kernel, algebra, context_length: int = 1):
        self.kernel = kernel
        self.algebra = algebra
        self.context_length = context_length

    def infer_sub_action(self, context: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        goal = self.algebra.add(context[:, -1], action)
        value, _ = self.kernel.infer(context, goal)
        return value


@dataclass
class TrainerConfig:
    """How one layer's kernel is fitted: minibatch updates for a neural kernel, one ordered pass for a table."""

    n_updates: int = 2000   # minibatch updates (neural kernels)
    batch_size: int = 256   # examples per update
    seed: int = 0           # minibatch order


class Trainer:
    """Fits a kernel on a layer's examples. ``step_update()`` does one minibatch; ``fit()`` does them all.

    A :class:`TableKernel` is fitted in a single pass over all examples in a seeded random order (its
    max-score update only depends on the order through ties, so one pass is all there is to learn).
    """

    def __init__(self, kernel: Kernel, data: Hindsight, config: TrainerConfig | None = None, device: str = "cpu"):
        self.kernel, self.config = kernel, config or TrainerConfig()
        self.data = Hindsight(*(x.to(device) for x in (data.context, data.step, data.goal, data.score)))
        self._gen = torch.Generator().manual_seed(self.config.seed)
        self.n_steps = 0

    def step_update(self) -> float:
        rows = torch.randint(len(self.data), (self.config.batch_size,), generator=self._gen)
        batch = self.data.take(rows.to(self.data.score.device))
        self.n_steps += 1
        return self.kernel.fit(batch.context, batch.step, batch.goal, batch.score)

    def fit(self, desc: str = "train", progress: bool = True) -> list[float]:
        """Train to the configured number of updates; returns the loss per update (the table: mean score)."""
        if isinstance(self.kernel, TableKernel):
            order = torch.randperm(len(self.data), generator=self._gen).to(self.data.score.device)
            batch = self.data.take(order)
            self.n_steps += 1
            return [self.kernel.fit(batch.context, batch.step, batch.goal, batch.score)]
        losses = []
        for _ in tqdm(range(self.config.n_updates), desc=desc, disable=not progress, leave=False, mininterval=2):
            losses.append(self.step_update())
        return losses
