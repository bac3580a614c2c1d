"""HUMN, the hierarchical unified model: a stack of layers, each a cortex and a hippocampus.

Layer 0 is the finest (it proposes primitive steps); layer ``L - 1`` the most abstract. *Hierarchical goal
pursuit*: every layer turns the goal handed down to it into the next sub-goal for the layer below.

- :meth:`HUMN.react` is one closed-loop step, re-planned from the current state every time.
- :meth:`HUMN.think` plans open-loop: the top layer rolls out its sub-goals, each layer rolls out steps
  toward each sub-goal of the layer above, and the layer-0 states are the plan.
- :meth:`HUMN.observe` trains every layer independently from hindsight examples of its own path.

Explained in notebooks/humn_graph.ipynb and notebooks/humn_cartpole.ipynb.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import torch

from mips.humn.cortex import Cortex, Hindsight, Trainer, TrainerConfig
from mips.humn.hippocampus import Hippocampus

log = logging.getLogger(__name__)


class MaxSubStepReached(RuntimeError):
    """A layer needed more than ``max_sub_steps`` steps to reach a sub-goal while thinking."""


class HUMN:
    """A stack of layers: ``cortices[i]`` proposes steps, ``hippocampi[i]`` holds its context."""

    def __init__(self, cortices: Sequence[Cortex], hippocampi: Sequence[Hippocampus], algebra):
        if len(cortices) == 0 or len(cortices) != len(hippocampi):
            raise ValueError("HUMN needs at least one layer and one hippocampus per cortex")
        self.cortices, self.hippocampi, self.algebra = list(cortices), list(hippocampi), algebra

    @property
    def depth(self) -> int:
        return len(self.cortices)

    def refresh(self) -> None:
        """Empty every hippocampus (call between episodes)."""
        for h in self.hippocampi:
            h.refresh()

    def observe(self, layer_data: Sequence[Hindsight], configs: Sequence[TrainerConfig] | None = None,
                device: str = "cpu") -> list[Trainer]:
        """One trainer per layer, each over that layer's examples; the layers are trained independently."""
        if len(layer_data) != self.depth:
            raise ValueError(f"need examples for each of the {self.depth} layers, got {len(layer_data)}")
        configs = configs or [TrainerConfig(seed=i) for i in range(self.depth)]
        return [Trainer(c.kernel, d, cfg, device) for c, d, cfg in zip(self.cortices, layer_data, configs,
                                                                        strict=True)]

    def react(self, state: torch.Tensor, top_action: torch.Tensor) -> torch.Tensor:
        """One closed-loop step for a batch: ``state (B, d)``, ``top_action (B, d_a)`` -> layer-0 action.

        From the top down, each layer appends the state to its hippocampus and refines the action it was
        handed; a layer that answers with a zero-length action leaves the action from above in place.
        """
        action = top_action
        for cortex, hippocampus in zip(reversed(self.cortices), reversed(self.hippocampi), strict=True):
            hippocampus.append(state)
            proposed = cortex.infer_sub_action(hippocampus.context(), action)
            keep = self.algebra.is_zero(proposed)[:, None]
            action = torch.where(keep, action, proposed)
        return action

    def think(self, state: torch.Tensor, top_action: torch.Tensor, max_sub_steps: int = 16) -> Iterator[torch.Tensor]:
        """Yield the layer-0 states of an open-loop plan from ``state (1, d)`` along ``top_action (1, d_a)``.

        Raises :class:`MaxSubStepReached` when a layer needs more than ``max_sub_steps`` steps toward one
        sub-goal; stops early (silently) where a layer has no step to propose (a zero-length action).
        """
        self.refresh()
        yield from self._think(0, state, top_action, max_sub_steps)

    def _think(self, i: int, state: torch.Tensor, action: torch.Tensor, max_sub_steps: int) -> Iterator[torch.Tensor]:
        if bool(self.algebra.is_zero(action).all()):
            return
        goal = self.algebra.add(state, action)
        if i < self.depth - 1:
            for sub_goal in self._think(i + 1, state, action, max_sub_steps):
                # the next sub-goal is pursued from wherever this layer got to
                for state in self._steps(i, state, sub_goal, max_sub_steps):  # noqa: B020
                    yield state
        yield from self._steps(i, state, goal, max_sub_steps)

    def _steps(self, i: int, state: torch.Tensor, target: torch.Tensor, max_sub_steps: int) -> Iterator[torch.Tensor]:
        """Layer ``i``'s steps from ``state`` toward ``target`` (its hippocampus restarts with each target)."""
        cortex, hippocampus = self.cortices[i], self.hippocampi[i]
        hippocampus.refresh()
        hippocampus.append(state)
        for _ in range(max_sub_steps):
            if bool(self.algebra.equal(state, target).all()):
                return
            action = cortex.infer_sub_action(hippocampus.context(), self.algebra.sub(target, state))
            if bool(self.algebra.is_zero(action).all()):
                return
            state = self.algebra.add(state, action)
            hippocampus.append(state)
            yield state
        if not bool(self.algebra.equal(state, target).all()):
            raise MaxSubStepReached(f"layer {i} needed more than {max_sub_steps} steps toward one sub-goal")
