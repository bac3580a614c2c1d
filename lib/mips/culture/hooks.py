"""Reading a culture GPT by name: cached activations, attention by offset, zero-ablations (culture spec §4.5).

Interventions are declared as data: an :class:`Ablation` names the hook point and how it is replaced, and
:func:`ablation_table` sweeps a list of them. The questions, after Pollak's report on the 37M model:

- Which components does the answer grid need? Zero-ablate each layer's attention output
  (``blocks.{l}.hook_attn_out``) and MLP output (``blocks.{l}.hook_mlp_out``) and measure the answer grid's
  cross-entropy and exact-match, per task and direction. (There, attention layer 0 dominated.)
- Is there a *previous-grid* head? Position ``p`` holds token ``p - 1`` and predicts token ``p``; the same
  cell of the previous grid is token ``p - (S + 1)``, held at position ``p - S``. So a head that copies the
  previous grid attends at offset ``S = H·W`` (36 on 6×6, 100 on the original's 10×10).

Explained in notebooks/culture_hooks.ipynb.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F

from mips.culture.gpt import GPT
from mips.culture.world import DIRECTIONS, QuizSet, WorldConfig, answer_slice, to_tokens

KINDS = ("zero", "mean")


@dataclass(frozen=True)
class Ablation:
    """Replace the activation at ``hook`` by zeros (``kind="zero"``) or by its mean over batch and position."""

    hook: str
    kind: str = "zero"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown ablation kind {self.kind!r}; kinds are {', '.join(KINDS)}")

    def fn(self, x: torch.Tensor, hook=None) -> torch.Tensor:
        if self.kind == "zero":
            return torch.zeros_like(x)
        return x.mean(dim=(0, 1), keepdim=True).expand_as(x)

    def to_dict(self) -> dict:
        return asdict(self)


def component_ablations(n_layers: int, kind: str = "zero") -> list[Ablation]:
    """Each layer's attention and MLP output, in order: attn 0, mlp 0, attn 1, ..."""
    return [Ablation(f"blocks.{layer}.hook_{part}_out", kind) for layer in range(n_layers) for part in ("attn", "mlp")]


def short_name(hook: str) -> str:
    """``blocks.0.hook_attn_out`` -> ``attn 0``."""
    parts = hook.split(".")
    return f"{parts[2].removeprefix('hook_').removesuffix('_out')} {parts[1]}" if len(parts) == 3 else hook


@torch.no_grad()
def answer_metrics(model: GPT, tokens: np.ndarray, world: WorldConfig, fwd_hooks=(), batch_size: int = 250,
                   device: str = "cpu") -> dict[str, np.ndarray]:
    """Per quiz, with the given hooks attached: exact-match and cross-entropy on the answer grid."""
    model.eval()
    sl = answer_slice(world)
    exact, ce = [], []
    for i in range(0, len(tokens), batch_size):
        tok = torch.as_tensor(tokens[i:i + batch_size], device=device)
        logits = model.run_with_hooks(tok, list(fwd_hooks))[:, sl]
        exact.append((logits.argmax(-1) == tok[:, sl]).all(1).cpu().numpy())
        ce.append(F.cross_entropy(logits.transpose(1, 2), tok[:, sl], reduction="none").mean(1).cpu().numpy())
    return {"exact": np.concatenate(exact), "ce": np.concatenate(ce)}


def ablation_table(model: GPT, quizzes: QuizSet, world: WorldConfig, ablations: list[Ablation] | None = None,
                   device: str = "cpu") -> list[dict]:
    """Rows (component, direction, task, exact, ce) for the clean model and under each ablation."""
    ablations = ablations if ablations is not None else component_ablations(model.cfg.n_layers)
    rows = []
    for direction in DIRECTIONS:
        tokens = to_tokens(quizzes.grids, direction)
        for abl in [None, *ablations]:
            hooks = [] if abl is None else [(abl.hook, abl.fn)]
            m = answer_metrics(model, tokens, world, hooks, device=device)
            name = "none" if abl is None else short_name(abl.hook)
            for k, task in [(-1, "all"), *enumerate(quizzes.tasks)]:
                sel = slice(None) if k < 0 else quizzes.task == k
                if k >= 0 and not sel.any():
                    continue
                rows.append({"ablation": name, "direction": direction, "task": task,
                             "exact": float(m["exact"][sel].mean()), "ce": float(m["ce"][sel].mean())})
    return rows


@torch.no_grad()
def attention_by_offset(model: GPT, tokens: np.ndarray, world: WorldConfig, max_offset: int | None = None,
                        device: str = "cpu") -> np.ndarray:
    """Mean attention ``(n_layers, n_heads, max_offset + 1)`` from the answer grid's query positions to the
    key ``offset`` positions back."""
    model.eval()
    sl = answer_slice(world)
    max_offset = max_offset or 2 * world.part_len
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(torch.as_tensor(tokens, device=device), names)
    q = torch.arange(sl.start, sl.stop)
    out = np.zeros((model.cfg.n_layers, model.cfg.n_heads, max_offset + 1))
    for layer, name in enumerate(names):
        pat = cache[name].mean(0)                               # (n_heads, query, key)
        for off in range(max_offset + 1):
            out[layer, :, off] = pat[:, q, q - off].mean(-1).cpu().numpy()
    return out


def previous_grid_heads(by_offset: np.ndarray, world: WorldConfig) -> list[tuple[int, int, float]]:
    """Heads sorted by their attention mass at offset S = H·W: (layer, head, mass)."""
    s = world.n_cells
    heads = [(layer, head, float(by_offset[layer, head, s])) for layer in range(by_offset.shape[0])
             for head in range(by_offset.shape[1])]
    return sorted(heads, key=lambda t: -t[2])


@torch.no_grad()
def residual_logits(model: GPT, tokens: torch.Tensor) -> torch.Tensor:
    """Logits recomputed from the cached final residual stream (exact: no final LayerNorm)."""
    _, cache = model.run_with_cache(tokens, [f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"])
    return model.unembed(cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"])
