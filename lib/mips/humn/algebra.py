"""The algebra the layers speak: ``State + Action -> State`` and ``goal - state -> Action``.

A layer never sees "a goal" directly: it is handed an *action* that points from where it is to where the
layer above wants it to be, and it answers with a smaller action that points to its own next sub-goal.
Two algebras serve the book's tasks:

- :class:`OneHotAlgebra` (the graph task): a state is a one-hot vector over the nodes; an action is a vector
  whose argmax is the node it leads to, and the zero vector means "stay". So ``s + a`` is the one-hot of
  ``argmax(a)`` (or ``s`` for a zero action) and ``g - s`` is ``g`` itself (or zero when ``g == s``).
- :class:`GoalAlgebra` (cart pole): an action *is* the goal handed down (a state, or the top layer's
  expectation), so ``s + a = a``; it is never of zero length.

All functions work on batches: the last dimension is the state's, every leading dimension is a batch.

Explained in notebooks/humn_graph.ipynb.
"""

from __future__ import annotations

import torch

ZERO_TOL = 1e-4


class OneHotAlgebra:
    """States are one-hot vectors over ``n_states`` nodes; actions are vectors whose argmax is the target."""

    def __init__(self, n_states: int):
        self.n_states = n_states

    def state(self, index: int | torch.Tensor) -> torch.Tensor:
        """The one-hot state(s) of node index(es)."""
        index = torch.as_tensor(index)
        return torch.nn.functional.one_hot(index, self.n_states).float()

    def index(self, state: torch.Tensor) -> torch.Tensor:
        """The node a state (or an action) points at: its argmax."""
        return state.argmax(-1)

    def is_zero(self, action: torch.Tensor) -> torch.Tensor:
        """Whether an action has zero length (means: stay, or "I have nothing to propose")."""
        return action.norm(dim=-1) < ZERO_TOL

    def add(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``state + action``: the node the action points at, or the state itself for a zero action."""
        moved = self.state(self.index(action)).to(state)
        return torch.where(self.is_zero(action)[..., None], state, moved)

    def sub(self, goal: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """``goal - state``: the action that leads from ``state`` to ``goal`` (zero when they are equal)."""
        same = self.equal(goal, state)[..., None]
        return torch.where(same, torch.zeros_like(goal), goal)

    def equal(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).norm(dim=-1) < ZERO_TOL


class GoalAlgebra:
    """An action is the goal itself (a state or an expectation vector); it never has zero length."""

    def is_zero(self, action: torch.Tensor) -> torch.Tensor:
        return torch.zeros(action.shape[:-1], dtype=torch.bool, device=action.device)

    def add(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return action

    def sub(self, goal: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return goal

    def equal(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).norm(dim=-1) < ZERO_TOL
