"""Kernels: what a cortex uses to map (context, goal) to the next step, keeping the best evidence it has seen.

The cortex learns by hindsight from demonstrations: "from this context, heading for that goal, this step was
taken, and the goal was reached with this score". The original's idea ("use an asymmetric update to keep
track of the best so far") is that a kernel answers with the step of its *highest-scoring* evidence, not
with the average step. Two kernels do that:

- :class:`TableKernel` keys an exact table by the one-hot context and goal and overwrites an entry only when
  a strictly higher score arrives. On demonstrations that contain shortest paths it becomes a
  shortest-path-by-demonstration memory.
- :class:`SlotKernel` is the neural "slot memory": a network maps (context, goal) to ``memory_size`` slots,
  each a (value, score) pair. A training example updates one slot, chosen by its score ("score access":
  ``round(score * (memory_size - 1))``) or by the slot whose value is most cosine-similar to the example's
  step ("value access"), with a squared error on that slot's value and score plus
  ``lse_weight * logsumexp`` over all slot scores, which pushes down slots no example supports. The answer
  is the value of the slot with the highest predicted score.

Explained in notebooks/humn_graph.ipynb.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

ACCESS_MODES = ("score", "value")


class TableKernel:
    """An exact table over (one-hot context, one-hot goal) keys that keeps the step with the best score.

    ``score_`` and ``value_`` hold, per key, the best score seen and the step that earned it; a key never
    written answers with a zero step (a zero-length action) and score 0.
    """

    def __init__(self, n_states: int, context_length: int = 1, value_dim: int | None = None, device: str = "cpu"):
        self.n_states = n_states
        self.context_length = context_length
        self.value_dim = value_dim or n_states
        n_keys = n_states ** (context_length + 1)
        self.score_ = torch.zeros(n_keys, device=device)
        self.value_ = torch.zeros(n_keys, self.value_dim, device=device)

    def keys(self, context: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """The table row of each (context (B, ctx, d), goal (B, d)): the one-hot indices read as digits."""
        digits = torch.cat([context[:, -self.context_length:].argmax(-1), goal.argmax(-1)[:, None]], dim=1)
        place = self.n_states ** torch.arange(digits.shape[1] - 1, -1, -1, device=digits.device)
        return (digits * place).sum(1)

    def fit(self, context: torch.Tensor, step: torch.Tensor, goal: torch.Tensor, score: torch.Tensor) -> float:
        """Write each example whose score beats its key's stored score, as if applied one at a time in order.

        Applied in order, an entry ends up holding the maximum score over what it had and the examples, and
        the step of the *first* example reaching that maximum (a later tie does not overwrite). That is
        computed here at once. Returns the mean stored score over the keys the batch touched.
        """
        keys = self.keys(context, goal).cpu().numpy()
        scores = score.detach().cpu().numpy()
        order = np.lexsort((np.arange(len(keys)), -scores, keys))
        first = np.r_[True, keys[order][1:] != keys[order][:-1]]
        best = order[first]
        best_keys = torch.as_tensor(keys[best], device=self.score_.device)
        better = score[best].to(self.score_) > self.score_[best_keys]
        rows = torch.as_tensor(best, device=self.score_.device)[better]
        self.score_[best_keys[better]] = score[rows].to(self.score_)
        self.value_[best_keys[better]] = step[rows].to(self.value_)
        return float(self.score_[best_keys].mean()) if len(best_keys) else 0.0

    @torch.no_grad()
    def infer(self, context: torch.Tensor, goal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored step and score for each (context, goal)."""
        keys = self.keys(context, goal)
        return self.value_[keys], self.score_[keys]

    def state_dict(self) -> dict:
        return {"score_": self.score_.cpu(), "value_": self.value_.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.score_ = state["score_"].to(self.score_.device)
        self.value_ = state["value_"].to(self.value_.device)


@dataclass
class SlotKernelConfig:
    """The neural slot memory: an MLP from (context, goal) to ``memory_size`` (value, score) slots."""

    hidden_dim: int = 128       # width of each hidden layer
    n_hidden_layers: int = 2    # hidden layers of the MLP
    memory_size: int = 32       # slots
    access: str = "score"       # which slot an example trains: "score" (by its score) or "value" (by cosine)
    lr: float = 1e-3            # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    lse_weight: float = 0.01    # weight of mean logsumexp over slot scores (pushes unsupported slots down)
    seed: int = 0               # initialisation seed

    def __post_init__(self) -> None:
        if self.access not in ACCESS_MODES:
            raise ValueError(f"access must be one of {ACCESS_MODES}, got {self.access!r}")
        if self.memory_size < 1:
            raise ValueError(f"memory_size must be at least 1, got {self.memory_size}")


class SlotKernel(nn.Module):
    """Slot memory: ``(context (B, ctx, d_state), goal (B, d_goal)) -> values (B, M, d_value), scores (B, M)``."""

    def __init__(self, state_dim: int, goal_dim: int, value_dim: int, context_length: int = 1,
                 config: SlotKernelConfig | None = None, device: str = "cpu"):
        super().__init__()
        self.config = config or SlotKernelConfig()
        self.context_length, self.value_dim = context_length, value_dim
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            dims = [state_dim * context_length + goal_dim] + [c.hidden_dim] * c.n_hidden_layers
            layers: list[nn.Module] = []
            for a, b in zip(dims[:-1], dims[1:], strict=True):
                layers += [nn.Linear(a, b), nn.ReLU()]
            layers.append(nn.Linear(dims[-1], c.memory_size * (value_dim + 1)))
            self.net = nn.Sequential(*layers)
        self.to(device)
        self.optimizer = torch.optim.AdamW(self.parameters(), lr=c.lr, weight_decay=c.weight_decay)

    def forward(self, context: torch.Tensor, goal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([context[:, -self.context_length:].flatten(1), goal], dim=1)
        out = self.net(x).view(len(x), self.config.memory_size, self.value_dim + 1)
        return out[..., :-1], out[..., -1]

    def select_slot(self, values: torch.Tensor, step: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """The slot each example trains: by its score, or by the cosine of slot values to its step."""
        m = self.config.memory_size
        if self.config.access == "score":
            return (score * (m - 1)).round().clamp(0, m - 1).long()
        cos = nn.functional.cosine_similarity(values.detach(), step[:, None, :], dim=-1)
        return cos.argmax(1)

    def fit(self, context: torch.Tensor, step: torch.Tensor, goal: torch.Tensor, score: torch.Tensor) -> float:
        """One AdamW step on a minibatch; returns the loss."""
        self.train()
        values, scores = self(context, goal)
        slot = self.select_slot(values, step, score)
        rows = torch.arange(len(slot), device=slot.device)
        loss = (nn.functional.mse_loss(values[rows, slot], step)
                + nn.functional.mse_loss(scores[rows, slot], score)
                + self.config.lse_weight * torch.logsumexp(scores, dim=1).mean())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def infer(self, context: torch.Tensor, goal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The value and score of the slot with the highest predicted score."""
        self.eval()
        values, scores = self(context, goal)
        best = scores.argmax(1)
        rows = torch.arange(len(best), device=best.device)
        return values[rows, best], scores[rows, best]
