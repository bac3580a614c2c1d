"""Sparse autoencoders on every culture GPT, with SAELens's metric definitions (culture spec §4.3, §5.2).

SAELens is not used: it needs a TransformerLens model, a dataset and an activation store, none of which these
CPU-sized models need; its *standard* ReLU SAE is a few lines. As SAELens's ``StandardSAE``:
``f = ReLU((x̃ − b_dec) W_enc + b_enc)``, ``x̂ = f W_dec + b_dec``, with inputs scaled so that
``E‖x̃‖ = √d_in`` (SAELens ``normalize_activations="expected_average_only_in"``); the loss is the squared error
summed over dimensions plus ``λ Σ_i f_i ‖W_dec,i‖`` (``scale_sparsity_penalty_by_decoder_norm``), λ warmed up
linearly over the first 5% of steps (``l1_warm_up_steps``); decoder rows start at norm 0.1 with
``W_enc = W_decᵀ`` (``decoder_heuristic_init``, ``init_encoder_as_decoder_transpose``).

Metrics (:func:`reconstruction_metrics`, on held-out tokens, in the model's own units):

- ``l0``: mean number of active latents per token; ``l1``: mean Σ f;
- ``mse``: mean over tokens of ‖x − x̂‖²;
- ``explained_variance``: ``1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²`` (the fraction-of-variance-unexplained form; SAELens's
  current ``evals.py`` computes a different denominator that looks like a slip, see the spec);
- ``cossim``: mean cos(x, x̂); ``l2_ratio``: mean ‖x̂‖/‖x‖ (shrinkage);
  ``relative_reconstruction_bias``: E‖x̂‖² / E⟨x, x̂⟩;
- ``dead_fraction``: latents that never fire on the evaluation tokens;
- spliced (:func:`splice_metrics`): replace the hooked activation by x̂ and measure the answer grid's CE and
  exact-match; ``ce_loss_score = (CE_zero − CE_sae) / (CE_zero − CE_clean)`` and the same for exact-match.

Explained in notebooks/culture_saes.ipynb.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mips.artifacts import StageRun, stage_dir
from mips.culture.gpt import GPT
from mips.culture.hooks import answer_metrics
from mips.culture.training import CHAPTER, GroupConfig, load_group
from mips.culture.world import DIRECTIONS, WorldConfig, make_quizzes, to_tokens, training_tokens

log = logging.getLogger(__name__)

ACTS_SEED = 2_000_003      # quizzes whose activations train the SAEs
EVAL_SEED = 2_000_029      # quizzes of the splice evaluation


@dataclass(frozen=True)
class SAEConfig:
    """One SAE's training run (defaults: spec §4.3, §4.6)."""

    hook: str = ""                  # "" = the last layer's hook_mlp_out
    expansion: int = 8              # d_sae = expansion * d_in
    l1_coefficient: float = 3.0
    l1_warm_up_frac: float = 0.05
    lr: float = 1e-3
    steps: int = 3000
    batch_size: int = 1024          # tokens per step
    n_quizzes: int = 1500           # quizzes (forward/inverse, with prompt noise) whose every position is a token
    held_out_frac: float = 0.2      # of those tokens, kept for the metrics
    n_eval_quizzes: int = 600       # splice evaluation quizzes
    seed: int = 0

    def hook_for(self, n_layers: int) -> str:
        return self.hook or f"blocks.{n_layers - 1}.hook_mlp_out"


def sae_config(preset: str = "full", **kw) -> SAEConfig:
    if preset == "smoke":
        return SAEConfig(**({"steps": 300, "batch_size": 512, "n_quizzes": 120, "n_eval_quizzes": 60} | kw))
    return SAEConfig(**kw)


class SAE(nn.Module):
    """A standard ReLU sparse autoencoder; ``scale`` maps raw activations to the normalised input space."""

    def __init__(self, d_in: int, d_sae: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(d_sae, d_in, generator=g)
        w = 0.1 * w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w)
        self.W_enc = nn.Parameter(w.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("scale", torch.tensor(1.0))

    @property
    def d_sae(self) -> int:
        return self.W_dec.shape[0]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent activations ``(..., d_sae)`` of raw activations ``(..., d_in)``."""
        return torch.relu((x * self.scale - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Reconstruction in the raw activation units."""
        return (f @ self.W_dec + self.b_dec) / self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def splice(self, x: torch.Tensor, hook=None) -> torch.Tensor:
        """A hook function: replace the activation by its reconstruction."""
        return self(x)


def reconstruction_metrics(x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor) -> dict[str, float]:
    """SAELens-style reconstruction and sparsity metrics of tokens ``x (n, d)``, ``x̂ (n, d)``, ``f (n, d_sae)``."""
    x, x_hat, f = x.double(), x_hat.double(), f.double()
    err = ((x - x_hat) ** 2).sum(-1)
    var = ((x - x.mean(0)) ** 2).sum(-1)
    xn, hn = x.norm(dim=-1), x_hat.norm(dim=-1)
    fired = (f > 0)
    return {
        "l0": float(fired.sum(-1).double().mean()),
        "l1": float(f.sum(-1).mean()),
        "mse": float(err.mean()),
        "explained_variance": float(1 - err.sum() / var.sum()),
        "cossim": float(((x * x_hat).sum(-1) / (xn * hn).clamp(min=1e-12)).mean()),
        "l2_ratio": float((hn / xn.clamp(min=1e-12)).mean()),
        "relative_reconstruction_bias": float((hn ** 2).mean() / (x * x_hat).sum(-1).mean()),
        "dead_fraction": float((~fired.any(0)).double().mean()),
    }


@torch.no_grad()
def collect(model: GPT, tokens: np.ndarray, hook: str, batch_size: int = 250, device: str = "cpu") -> torch.Tensor:
    """Activations at ``hook`` for every position of every sequence: ``(n * seq_len, d)``."""
    model.eval()
    out = []
    for i in range(0, len(tokens), batch_size):
        _, cache = model.run_with_cache(torch.as_tensor(tokens[i:i + batch_size], device=device), [hook])
        out.append(cache[hook].reshape(-1, cache[hook].shape[-1]).cpu())
    return torch.cat(out)


def activation_tokens(world: WorldConfig, n_quizzes: int, seed: int = ACTS_SEED) -> np.ndarray:
    """Forward/inverse quizzes with prompt noise, as the models were trained on."""
    q = make_quizzes(world, n_quizzes, seed)
    tokens, _ = training_tokens(q, world, np.random.default_rng(seed))
    return tokens


def train_sae(acts: torch.Tensor, cfg: SAEConfig, progress: bool = False) -> tuple[SAE, list[float]]:
    """Fit an SAE on activations ``(n, d_in)``; returns it and its loss curve."""
    d_in = acts.shape[1]
    sae = SAE(d_in, cfg.expansion * d_in, cfg.seed)
    sae.scale.fill_(math.sqrt(d_in) / float(acts.norm(dim=1).mean()))
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    warm = max(1, int(cfg.l1_warm_up_frac * cfg.steps))
    losses = []
    for step in tqdm(range(cfg.steps), disable=not progress, leave=False, desc="sae"):
        x = acts[torch.randint(0, len(acts), (cfg.batch_size,), generator=gen)] * sae.scale
        f = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
        x_hat = f @ sae.W_dec + sae.b_dec
        lam = cfg.l1_coefficient * min(1.0, (step + 1) / warm)
        mse = ((x_hat - x) ** 2).sum(-1).mean()
        l1 = (f * sae.W_dec.norm(dim=1)).sum(-1).mean()
        loss = mse + lam * l1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sae.eval(), losses


@torch.no_grad()
def splice_metrics(model: GPT, sae: SAE, hook: str, tokens_by_direction: dict[str, np.ndarray], world: WorldConfig,
                   device: str = "cpu") -> dict:
    """Answer-grid CE and exact-match: clean, with the hook zero-ablated, and with the SAE spliced in."""
    out = {}
    zero = lambda x, hook=None: torch.zeros_like(x)  # noqa: E731
    for d, tokens in tokens_by_direction.items():
        clean = answer_metrics(model, tokens, world, device=device)
        abl = answer_metrics(model, tokens, world, [(hook, zero)], device=device)
        spl = answer_metrics(model, tokens, world, [(hook, sae.splice)], device=device)
        row = {f"{k}_{name}": float(v[k].mean()) for name, v in (("clean", clean), ("zero", abl), ("sae", spl))
               for k in ("ce", "exact")}
        row["ce_loss_score"] = _score(row["ce_zero"], row["ce_sae"], row["ce_clean"])
        row["exact_recovered"] = _score(row["exact_zero"], row["exact_sae"], row["exact_clean"])
        out[d] = row
    return out


def _score(zero: float, sae: float, clean: float) -> float:
    return float((zero - sae) / (zero - clean)) if abs(zero - clean) > 1e-12 else float("nan")


def save_sae(sae: SAE, path: Path) -> None:
    torch.save({"d_in": sae.W_dec.shape[1], "d_sae": sae.d_sae, "state_dict": sae.state_dict()}, path)


def load_sae(path: Path) -> SAE:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    sae = SAE(ckpt["d_in"], ckpt["d_sae"])
    sae.load_state_dict(ckpt["state_dict"])
    return sae.eval()


def fit_and_measure(model: GPT, world: WorldConfig, cfg: SAEConfig, progress: bool = False,
                    device: str = "cpu") -> tuple[SAE, dict]:
    """Train an SAE on a model's activations and measure it (held-out tokens; spliced on fresh quizzes)."""
    t0 = time.time()
    hook = cfg.hook_for(model.cfg.n_layers)
    acts = collect(model, activation_tokens(world, cfg.n_quizzes), hook, device=device)
    perm = torch.randperm(len(acts), generator=torch.Generator().manual_seed(cfg.seed))
    n_held = int(cfg.held_out_frac * len(acts))
    held, train = acts[perm[:n_held]], acts[perm[n_held:]]
    sae, losses = train_sae(train, cfg, progress)
    with torch.no_grad():
        metrics = reconstruction_metrics(held, sae(held), sae.encode(held))
    ev_q = make_quizzes(world, cfg.n_eval_quizzes, EVAL_SEED)
    metrics["splice"] = splice_metrics(model, sae, hook, {d: to_tokens(ev_q.grids, d) for d in DIRECTIONS}, world,
                                       device)
    metrics.update(hook=hook, d_sae=sae.d_sae, n_train_tokens=len(train), n_held_out_tokens=n_held,
                   loss_curve=losses[:: max(1, len(losses) // 100)], seconds=round(time.time() - t0, 1))
    return sae, metrics


def run_sae(model: GPT, model_record, world: WorldConfig, cfg: SAEConfig, run_dir: Path | None = None,
            device: str = "cpu", progress: bool = False) -> tuple[SAE, dict]:
    """Train (or reuse) one SAE: ``runs/chapter-culture/sae-<model>-l<λ>-seed<s>/`` (sae.pt + record)."""
    name = f"sae-{model_record.stage.removeprefix('model-')}-x{cfg.expansion}-l{cfg.l1_coefficient:g}-seed{cfg.seed}"
    stage = StageRun(CHAPTER, name, {"sae": asdict(cfg)}, upstream={model_record.stage: model_record.key},
                     run_dir=run_dir)

    def compute(st: StageRun) -> dict:
        sae, metrics = fit_and_measure(model, world, cfg, progress, device)
        save_sae(sae, st.path("sae.pt"))
        log.info("%s: EV %.3f, L0 %.1f, dead %.3f", name, metrics["explained_variance"], metrics["l0"],
                 metrics["dead_fraction"])
        return metrics
    rec = stage.cached_or_compute(compute)
    return load_sae(stage_dir(CHAPTER, name, run_dir) / "sae.pt"), rec.metrics


def run_group_saes(group: GroupConfig, cfg: SAEConfig, run_dir: Path | None = None, device: str = "cpu",
                   progress: bool = False) -> tuple[list[GPT], list[SAE], list[dict]]:
    """One SAE per model of the group (training missing models first)."""
    models, records = load_group(group, run_dir, device)
    saes, metrics = [], []
    for model, rec in zip(models, records, strict=True):
        sae, m = run_sae(model, rec, group.world, cfg, run_dir, device, progress)
        saes.append(sae)
        metrics.append(m)
    return models, saes, metrics
