"""Sequence models for the numeric-equivalence tasks: GRU, LSTM and a small transformer (das spec §2).

All three embed tokens, compute a state per time step and decode it with ``Linear(d, 4d) → GELU →
Dropout → Linear(4d, vocab)``. Every state the interventions touch passes a named hook:

  GRU          hook_h                          (B, T, d)   h_t after reading token t
  LSTM         hook_h                          (B, T, d)   cat(h_t, c_t), each d/2 (the original's choice)
  transformer  hook_embed                      (B, T, d)   token embeddings
               blocks.{l}.hook_resid_post      (B, T, d)   residual stream after layer l

The recurrent models always run *free* in the response phase: where ``free`` is True the input is the
model's own previous arg-max, not the given token (as the original's RNNs, in training too). The
transformer trains with teacher forcing and is evaluated free-running, like the original's.

An intervention never lives inside ``forward``: a :class:`Patch` (hook name, one time step per row, and a
function of the state) is passed in and applied where the hook is. Explained in
notebooks/das_counting.ipynb.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

KINDS = ("gru", "lstm", "transformer")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. ``d_model`` is the hooked state's size for every kind (the LSTM's h and c are d/2)."""

    kind: str = "gru"
    vocab_size: int = 8
    d_model: int = 32
    n_layers: int = 2          # transformer only
    n_heads: int = 2           # transformer only
    drop_p: float = 0.5        # decoder dropout (the original's default)
    max_len: int = 128         # transformer: longest sequence the rotary tables cover

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.kind == "lstm" and self.d_model % 2:
            raise ValueError("an LSTM's d_model must be even (h and c are d_model / 2 each)")
        if self.kind == "transformer" and self.d_model % (2 * self.n_heads):
            raise ValueError("a transformer's d_model must be a multiple of 2 * n_heads (rotary pairs)")

    @property
    def hooks(self) -> tuple[str, ...]:
        if self.kind == "transformer":
            return ("hook_embed",) + tuple(f"blocks.{i}.hook_resid_post" for i in range(self.n_layers))
        return ("hook_h",)

    @property
    def default_hook(self) -> str:
        return self.hooks[-1]


@dataclass
class Patch:
    """Replace the state at ``hook`` at time ``positions[b]`` of row b by ``fn(states)[b]``.

    ``fn`` maps the (B, d) states of that time step (one per row) to new states; rows whose position is
    never reached (e.g. -1) are left alone.
    """

    hook: str
    positions: torch.Tensor
    fn: Callable[[torch.Tensor], torch.Tensor]


def decoder(d_in: int, d_model: int, vocab: int, drop_p: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, 4 * d_model), nn.GELU(), nn.Dropout(drop_p), nn.Linear(4 * d_model, vocab))


class SequenceModel(nn.Module):
    """Common interface: ``forward(tokens, free, patch, teacher_force) -> logits`` and ``run_with_cache``."""

    config: ModelConfig

    def forward(self, tokens: torch.Tensor, free: torch.Tensor | None = None, patch: Patch | None = None,
                teacher_force: bool = False) -> torch.Tensor:
        return self.run_with_cache(tokens, free, patch, teacher_force)[0]

    def run_with_cache(self, tokens, free=None, patch=None, teacher_force=False):
        raise NotImplementedError


class RecurrentModel(SequenceModel):
    """GRU or LSTM: one cell, the hook after it, the decoder."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        if c.kind == "gru":
            self.cell = nn.GRUCell(c.d_model, c.d_model)
            d_out = c.d_model
        else:
            self.cell = nn.LSTMCell(c.d_model, c.d_model // 2)
            d_out = c.d_model // 2
        self.decoder = decoder(d_out, c.d_model, c.vocab_size, c.drop_p)

    def _step(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        if self.config.kind == "gru":
            return self.cell(x, state)
        h, c = state.chunk(2, dim=-1)
        h, c = self.cell(x, (h, c))
        return torch.cat([h, c], dim=-1)

    def _readout(self, state: torch.Tensor) -> torch.Tensor:
        """The part of the hooked state the decoder reads (h; for the LSTM, not c)."""
        return state if self.config.kind == "gru" else state[..., : self.config.d_model // 2]

    def run_with_cache(self, tokens: torch.Tensor, free: torch.Tensor | None = None, patch: Patch | None = None,
                       teacher_force: bool = False, state0: torch.Tensor | None = None):
        """Logits (B, T, V) and ``{"hook_h": (B, T, d)}``; RNNs ignore ``teacher_force`` (always free)."""
        B, T = tokens.shape
        state = state0 if state0 is not None else tokens.new_zeros(B, self.config.d_model, dtype=torch.float)
        if patch is not None and patch.hook != "hook_h":
            raise ValueError(f"a recurrent model has one hook, 'hook_h'; got {patch.hook!r}")
        states = []
        prev = None
        for t in range(T):
            tok = tokens[:, t]
            if free is not None and prev is not None:
                tok = torch.where(free[:, t], prev, tok)
            state = self._step(self.embed(tok), state)
            if patch is not None:
                hit = patch.positions == t
                if bool(hit.any()):
                    state = torch.where(hit[:, None], patch.fn(state), state)
            states.append(state)
            if free is not None and t + 1 < T and bool(free[:, t + 1].any()):
                with torch.no_grad():
                    prev = self.decoder(self._readout(state)).argmax(-1)
        hook_h = torch.stack(states, dim=1)
        return self.decoder(self._readout(hook_h)), {"hook_h": hook_h}


def rotary_tables(max_len: int, d_head: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (max_len, d_head/2) of rotary position embeddings (RoPE)."""
    inv = base ** (-torch.arange(0, d_head, 2, dtype=torch.float) / d_head)
    ang = torch.arange(max_len, dtype=torch.float)[:, None] * inv[None]
    return ang.cos(), ang.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply RoPE to (B, heads, T, d_head): rotate each (even, odd) pair by its position's angle."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class Block(nn.Module):
    """Pre-norm transformer layer: causal self-attention with RoPE, then a GELU MLP."""

    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, cos[:T], sin[:T]), rotate(k, cos[:T], sin[:T])
        att = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(att.transpose(1, 2).reshape(B, T, d))
        return x + self.mlp(self.ln2(x))


class Transformer(SequenceModel):
    """A small decoder-only transformer with rotary positions (the original: 2 layers, RoPE, LayerNorm)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.blocks = nn.ModuleList(Block(c.d_model, c.n_heads) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.decoder = decoder(c.d_model, c.d_model, c.vocab_size, c.drop_p)
        cos, sin = rotary_tables(c.max_len, c.d_model // c.n_heads)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _forward(self, tokens: torch.Tensor, patch: Patch | None):
        cache = {}

        def hook(name: str, x: torch.Tensor) -> torch.Tensor:
            if patch is not None and patch.hook == name:
                B, T, _ = x.shape
                pos = patch.positions.clamp(0, T - 1)
                rows = torch.arange(B, device=x.device)
                new = patch.fn(x[rows, pos])
                hit = (patch.positions >= 0) & (patch.positions < T)
                sel = torch.zeros(B, T, 1, dtype=torch.bool, device=x.device)
                sel[rows[hit], pos[hit]] = True
                x = torch.where(sel, new[:, None, :], x)
            cache[name] = x
            return x

        if patch is not None and patch.hook not in self.config.hooks:
            raise ValueError(f"unknown hook {patch.hook!r}; this model has {', '.join(self.config.hooks)}")
        x = hook("hook_embed", self.embed(tokens))
        for i, block in enumerate(self.blocks):
            x = hook(f"blocks.{i}.hook_resid_post", block(x, self.cos, self.sin))
        return self.decoder(self.ln_f(x)), cache

    def run_with_cache(self, tokens: torch.Tensor, free: torch.Tensor | None = None, patch: Patch | None = None,
                       teacher_force: bool = False):
        """Logits (B, T, V) and every hook; free-running on ``free`` positions unless ``teacher_force``.

        Free-running is computed as a fixed point rather than token by token: run on the current tokens,
        put the arg-max predictions into the free positions, repeat until nothing changes. Each round fixes
        at least the first wrong position, and at the fixed point every free token is the arg-max given its
        prefix, which is exactly what generating one token at a time gives; a model that is right needs
        two rounds instead of one per response token.
        """
        if teacher_force or free is None or not bool(free.any()):
            return self._forward(tokens, patch)
        tokens = tokens.clone()
        with torch.no_grad():
            for _ in range(int(free.sum(1).max()) + 1):
                pred = self._forward(tokens, patch)[0].argmax(-1)
                new = tokens.clone()
                new[:, 1:] = torch.where(free[:, 1:], pred[:, :-1], tokens[:, 1:])
                if torch.equal(new, tokens):
                    break
                tokens = new
        return self._forward(tokens, patch)


def build_model(config: ModelConfig, seed: int = 0) -> SequenceModel:
    """A freshly initialised model; the same seed gives the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Transformer(config) if config.kind == "transformer" else RecurrentModel(config)


def save_model(model: SequenceModel, path: Path) -> None:
    """Weights and config together (loadable with weights_only=True)."""
    torch.save({"config": asdict(model.config), "state_dict": model.state_dict()}, path)


def load_model(path: Path, device: str = "cpu") -> SequenceModel:
    """Inverse of :func:`save_model`, in eval mode."""
    blob = torch.load(path, map_location=device, weights_only=True)
    model = build_model(ModelConfig(**blob["config"]))
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval()
