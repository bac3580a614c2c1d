"""A tiny character-level GPT trained in seconds on programs for some of the book's tasks.

A real model (no canned replies) small enough for unit tests: it has seen correct function bodies for
three families of tasks, each opening with its constant (``mod = 5`` for Add_Mod_5, ``window = 3`` for
Sum_Last3, ``lag = 2`` for Prev2). Its window (``block_size`` characters)
is too short to read the examples in the prompt, so it knows *what programs look like* but not *which
one the problem asks for*: greedy decoding writes the corpus's most common program, and only a search
guided by the tests finds the one the examples want. That is the situation PG-TD is built for.
Explained in notebooks/pgtd.ipynb.
"""

from __future__ import annotations

import logging
import math
import string
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mips.artifacts import cache_dir, stable_hash
from mips.pgtd.lm import State, TorchLM
from mips.pgtd.problems import make_prompt
from mips.tasks import get_task, to_sequence

log = logging.getLogger(__name__)

EOS_CHAR = "\x03"
VOCAB = (EOS_CHAR, "\n", *string.printable[:95])      # EOS, newline, printable ASCII incl. space

# Each family: the task name pattern, the constants in the corpus with how often each appears, the body.
FAMILIES = {
    "mod": ("Add_Mod_{}", {3: 6, 5: 3, 7: 2, 4: 1, 6: 1, 8: 1},
            "    mod = {}\n    s = 0\n    ys = []\n    for x in xs:\n        s = (s + x) % mod\n"
            "        ys.append(s)\n    return ys\n"),
    "window": ("Sum_Last{}", {3: 3, 2: 2, 4: 1, 5: 1},
               "    window = {}\n    ys = []\n    for t in range(len(xs)):\n"
               "        ys.append(sum(xs[max(0, t - window + 1):t + 1]))\n    return ys\n"),
    "lag": ("Prev{}", {1: 2, 2: 2, 3: 1},
            "    lag = {}\n    ys = []\n    for t in range(len(xs)):\n"
            "        ys.append(xs[t - lag] if t >= lag else 0)\n    return ys\n"),
}


def corpus(n_prompts: int = 4, seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, body) pairs: each (family, constant) as often as its weight, each time with fresh examples."""
    rng = np.random.default_rng(seed)
    docs = []
    for pattern, weights, body in FAMILIES.values():
        for const, weight in weights.items():
            task = get_task(pattern.format(const))
            for _ in range(weight * n_prompts):
                x, y = task.generate(rng, 3)
                rows = [(to_sequence(a), to_sequence(b)) for a, b in zip(x, y, strict=True)]
                docs.append((make_prompt(task, rows), "\n" + body.format(const)))  # the body starts a line
    return docs


@dataclass
class TinyGPTConfig:
    """The model and its training run (defaults train in seconds on one CPU thread)."""

    block_size: int = 48       # characters the model sees; shorter than one example row
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    steps: int = 400
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    n_prompts: int = 4         # copies of each corpus program, each with other examples


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention, then an MLP."""

    def __init__(self, cfg: TinyGPTConfig):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = nn.MultiheadAttention(cfg.n_embd, cfg.n_head, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:   # (batch, time, n_embd)
        a = self.ln_1(h)
        h = h + self.attn(a, a, a, attn_mask=mask, need_weights=False)[0]
        return h + self.mlp(self.ln_2(h))


class TinyGPT(nn.Module):
    """Token and position embeddings, ``n_layer`` blocks, a final norm and a linear head."""

    def __init__(self, cfg: TinyGPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(len(VOCAB), cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, len(VOCAB))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:      # (batch, time) -> (batch, time, vocab)
        T = idx.shape[1]
        mask = torch.triu(torch.full((T, T), float("-inf"), device=idx.device), diagonal=1)
        h = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.blocks:
            h = block(h, mask)
        return self.head(self.ln_f(h))


_INDEX = {c: i for i, c in enumerate(VOCAB)}


def encode_text(text: str) -> list[int]:
    """Characters as ids; a character outside printable ASCII reads as a space."""
    return [_INDEX.get(c, _INDEX[" "]) for c in text]


def train(cfg: TinyGPTConfig, device: str = "cpu") -> tuple[TinyGPT, list[float]]:
    """Train on random windows of (prompt tail + body + EOS); returns the model and its loss curve."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    docs = [encode_text(p[-cfg.block_size:] + b + EOS_CHAR) for p, b in corpus(cfg.n_prompts, cfg.seed)]
    model = TinyGPT(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    losses = []
    for step in range(cfg.steps):
        batch = []
        for d in rng.integers(len(docs), size=cfg.batch_size):
            doc = docs[d]
            start = int(rng.integers(0, len(doc) - cfg.block_size))
            batch.append(doc[start:start + cfg.block_size + 1])
        xy = torch.tensor(batch, device=device)
        logits = model(xy[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), xy[:, 1:].reshape(-1))
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), losses


class TinyLM(TorchLM):
    """The tiny GPT behind the LM protocol: pieces are characters' ids; it reads the last ``block_size``."""

    def __init__(self, model: TinyGPT, device: str = "cpu", losses: list[float] | None = None):
        super().__init__()
        self.model, self.device = model.to(device).eval(), device
        self.block = model.cfg.block_size
        self.name = f"tinygpt-{model.cfg.n_layer}x{model.cfg.n_embd}"
        self.eos = _INDEX[EOS_CHAR]
        self.losses = losses or []

    @classmethod
    def pretrained(cls, config: TinyGPTConfig | None = None, device: str = "cpu") -> TinyLM:
        """Train once per config (seconds) and keep the weights in the project cache."""
        cfg = config or TinyGPTConfig()
        prompt_format = make_prompt(get_task("Add_Mod_3"), [([1], [1])])   # retrain if the prompt changes
        key = stable_hash({"config": asdict(cfg), "corpus": FAMILIES, "vocab": VOCAB, "prompt": prompt_format,
                           "v": 2})
        path = cache_dir() / "pgtd" / f"tinygpt-{key}.pt"
        if path.exists():
            saved = torch.load(path, map_location=device, weights_only=True)
            model = TinyGPT(cfg)
            model.load_state_dict(saved["model"])
            return cls(model, device, saved["losses"])
        start = time.time()
        model, losses = train(cfg, device)
        log.info("trained the tiny GPT in %.1f s (final loss %.3f)", time.time() - start, losses[-1])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{time.time_ns()}")
        torch.save({"model": model.state_dict(), "losses": losses, "config": asdict(cfg)}, tmp)
        tmp.replace(path)
        return cls(model, device, losses)

    def encode(self, text: str) -> State:
        return tuple(encode_text(text))

    def decode(self, pieces: State) -> str:
        return "".join(VOCAB[i] for i in pieces if i != self.eos)

    def _batch_logits(self, prefixes: list[State]) -> np.ndarray:
        windows = [list(p[-self.block:]) for p in prefixes]
        width = max(len(w) for w in windows)
        if any(len(w) != width for w in windows):     # short prefixes: score one at a time
            return np.stack([self._batch_logits([p])[0] for p in prefixes])
        with torch.inference_mode():
            out = self.model(torch.tensor(windows, device=self.device))
        return out[:, -1].float().cpu().numpy()

    def _start(self, prefix: State):
        return self._batch_logits([prefix])[0], list(prefix)

    def _step(self, cache, token: int):
        cache.append(token)
        return self._batch_logits([tuple(cache[-self.block:])])[0], cache
