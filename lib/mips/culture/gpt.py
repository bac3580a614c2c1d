"""A MyGPT-style decoder with TransformerLens-style hook points (culture spec §2.1, §3.1, §4.2).

As Fleuret's MyGPT: token embedding plus a fixed sinusoid ``PE[t, j] = sin(t / L^((j - j%2)/d) + (π/2)(j%2))``
with ``L = 1e5``; pre-LN blocks ``x + Attn(LN(x))``, ``x + MLP(LN(x))`` with a ReLU MLP; attention without
biases, scores scaled by ``1/sqrt(d_head)`` and causally masked; **no final LayerNorm**; a readout with bias.
The model shifts its input right by one inside ``forward`` (token 0 prepended, last token dropped), so the
logits at position ``t`` predict token ``t`` of the input: ``logits = model(tokens)`` is aligned with
``tokens``.

Every activation passes through a :class:`HookPoint` whose name is its attribute path, as in
TransformerLens (which is not installed here; the names and shapes are TL's, so analysis code reads the same)::

  hook_embed, hook_pos_embed                 (batch, pos, d_model)
  blocks.{l}.hook_resid_pre                  (batch, pos, d_model)
  blocks.{l}.attn.hook_q / hook_k / hook_v   (batch, pos, n_heads, d_head)
  blocks.{l}.attn.hook_attn_scores           (batch, n_heads, query_pos, key_pos)  before softmax, masked
  blocks.{l}.attn.hook_pattern               (batch, n_heads, query_pos, key_pos)
  blocks.{l}.attn.hook_z                     (batch, pos, n_heads, d_head)
  blocks.{l}.hook_attn_out                   (batch, pos, d_model)
  blocks.{l}.hook_resid_mid                  (batch, pos, d_model)
  blocks.{l}.mlp.hook_pre / hook_post        (batch, pos, d_mlp)   before / after the ReLU
  blocks.{l}.hook_mlp_out                    (batch, pos, d_model)
  blocks.{l}.hook_resid_post                 (batch, pos, d_model)

Weights are stored in TL's layout (``W_Q: (n_heads, d_model, d_head)``, ``W_O: (n_heads, d_head, d_model)``,
``W_U: (d_model, d_vocab)``), so a conversion to ``HookedTransformer`` would be a renaming.
Explained in notebooks/culture_hooks.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

HookFn = Callable[..., torch.Tensor | None]


@dataclass(frozen=True)
class GPTConfig:
    """Architecture; the defaults are spec §4.2's (~150k parameters)."""

    d_vocab: int = 15
    n_ctx: int = 148
    d_model: int = 64
    n_layers: int = 3
    n_heads: int = 4
    d_mlp: int = 256
    pe_base: float = 1e5           # the sinusoid's L (MyGPT's len_max)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads


class HookPoint(nn.Module):
    """An identity that lets hook functions read or replace the activation passing through it.

    A hook is ``fn(activation, hook) -> new activation | None``; ``hook.name`` is the attribute path.
    """

    def __init__(self):
        super().__init__()
        self.name = ""
        self.fns: list[HookFn] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn in self.fns:
            out = fn(x, hook=self)
            if out is not None:
                x = out
        return x


def sinusoid(n_ctx: int, d_model: int, base: float = 1e5) -> torch.Tensor:
    """MyGPT's positional encoding ``(n_ctx, d_model)``."""
    t = torch.arange(n_ctx, dtype=torch.float64)[:, None]
    j = torch.arange(d_model, dtype=torch.float64)[None, :]
    k = j - j % 2
    return torch.sin(t / base ** (k / d_model) + (math.pi / 2) * (j % 2)).float()


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        h, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.randn(h, d, dh) / math.sqrt(d))
        self.W_K = nn.Parameter(torch.randn(h, d, dh) / math.sqrt(d))
        self.W_V = nn.Parameter(torch.randn(h, d, dh) / math.sqrt(d))
        self.W_O = nn.Parameter(torch.randn(h, dh, d) / math.sqrt(h * dh))
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_scores, self.hook_pattern, self.hook_z = HookPoint(), HookPoint(), HookPoint()
        self.register_buffer("mask", torch.ones(cfg.n_ctx, cfg.n_ctx).tril().bool(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        q = self.hook_q(torch.einsum("btd,hde->bthe", x, self.W_Q))   # (batch, pos, n_heads, d_head)
        k = self.hook_k(torch.einsum("btd,hde->bthe", x, self.W_K))
        v = self.hook_v(torch.einsum("btd,hde->bthe", x, self.W_V))
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(q.shape[-1])
        scores = self.hook_attn_scores(scores.masked_fill(~self.mask[:T, :T], float("-inf")))
        pattern = self.hook_pattern(scores.softmax(-1))                # (batch, n_heads, query, key)
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))   # (batch, pos, n_heads, d_head)
        return torch.einsum("bqhe,hed->bqd", z, self.W_O)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.fc2 = nn.Linear(cfg.d_mlp, cfg.d_model)
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.hook_post(F.relu(self.hook_pre(self.fc1(x)))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn, self.mlp = Attention(cfg), MLP(cfg)
        self.hook_resid_pre, self.hook_attn_out, self.hook_resid_mid = HookPoint(), HookPoint(), HookPoint()
        self.hook_mlp_out, self.hook_resid_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(self.ln1(x))))
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.ln2(x))))


class GPT(nn.Module):
    """The culture GPT. ``forward(tokens) -> logits`` aligned with ``tokens`` (the right-shift is inside)."""

    def __init__(self, cfg: GPTConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(cfg.d_vocab, cfg.d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.register_buffer("W_pos", sinusoid(cfg.n_ctx, cfg.d_model, cfg.pe_base), persistent=False)
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.unembed = nn.Linear(cfg.d_model, cfg.d_vocab)
        torch.random.set_rng_state(gen_state)
        self.hook_dict: dict[str, HookPoint] = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module

    @property
    def W_U(self) -> torch.Tensor:
        """The unembedding ``(d_model, d_vocab)`` (TL layout); exact logit effects since there is no final LN."""
        return self.unembed.weight.T

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = F.pad(tokens, (1, -1), value=0)                             # position t reads token t-1
        T = x.shape[1]
        resid = self.hook_embed(self.embed(x)) + self.hook_pos_embed(self.W_pos[:T].expand(x.shape[0], T, -1))
        for block in self.blocks:
            resid = block(resid)
        return self.unembed(resid)                                      # no final LayerNorm

    # ---- hooks, TransformerLens-style
    def reset_hooks(self) -> None:
        for hp in self.hook_dict.values():
            hp.fns.clear()

    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str, HookFn]]):
        """Attach ``(name, fn)`` hooks for the duration of a ``with`` block; removed on exit, even on error."""
        added = []
        try:
            for name, fn in fwd_hooks:
                if name not in self.hook_dict:
                    raise KeyError(f"no hook point {name!r}; see GPT.hook_dict for the names")
                self.hook_dict[name].fns.append(fn)
                added.append((name, fn))
            yield self
        finally:
            for name, fn in added:
                self.hook_dict[name].fns.remove(fn)

    def run_with_hooks(self, tokens: torch.Tensor, fwd_hooks: Sequence[tuple[str, HookFn]]) -> torch.Tensor:
        with self.hooks(fwd_hooks):
            return self(tokens)

    def run_with_cache(self, tokens: torch.Tensor, names: Iterable[str] | Callable[[str], bool] | None = None,
                       fwd_hooks: Sequence[tuple[str, HookFn]] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and a dict of the named activations (all hook points when ``names`` is None)."""
        if names is None:
            wanted = list(self.hook_dict)
        elif callable(names):
            wanted = [n for n in self.hook_dict if names(n)]
        else:
            wanted = list(names)
        cache: dict[str, torch.Tensor] = {}

        def save(x, hook):
            cache[hook.name] = x.detach()

        with self.hooks(list(fwd_hooks) + [(n, save) for n in wanted]):
            logits = self(tokens)
        return logits, cache


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model(model: GPT, path: Path, extra: dict | None = None) -> None:
    torch.save({"config": asdict(model.cfg), "state_dict": model.state_dict(), **(extra or {})}, path)


def load_model(path: Path, device: str = "cpu") -> GPT:
    ckpt = torch.load(path, map_location=device, weights_only=False)
    model = GPT(GPTConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()


@torch.no_grad()
def generate(model: GPT, tokens: torch.Tensor, positions: Sequence[int], temperature: float = 1.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``positions`` (in increasing order) autoregressively: sampled at ``temperature`` (0: greedy).

    Position ``p`` is predicted from tokens ``< p`` only, so each step runs the model on the prefix
    ``tokens[:, :p + 1]`` (exact for a causal model, about half the cost of a full pass); no KV cache.
    """
    out = tokens.clone()
    for p in sorted(positions):
        logits = model(out[:, :p + 1])[:, p]
        if temperature <= 0:
            out[:, p] = logits.argmax(-1)
        else:
            probs = (logits / temperature).softmax(-1)
            out[:, p] = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return out
