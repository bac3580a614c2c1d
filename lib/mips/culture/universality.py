"""Universality across the group: do differently seeded GPTs learn the same neurons and SAE features?
(culture spec §3.4, §4.4 — asked by Pollak's project and never done there.)

Every model reads the same tokens (fresh quizzes, answer-grid positions). For a unit ``u`` of model ``i``
(an MLP neuron of the last layer, ``blocks.{L-1}.mlp.hook_post``, or a latent of that model's SAE on
``blocks.{L-1}.hook_mlp_out``), its **maximum activation correlation** with model ``j`` is the largest Pearson
correlation of ``u``'s activations with those of any unit of ``j`` (Gurnee et al. 2024 for neurons; Lan et
al. 2024 pair SAE features the same way). Units that never vary on these tokens are left out.

References, so that a number means something:

- **within one model**: two SAEs of the same model with different seeds (an upper reference);
- **shuffled**: model ``j``'s activations with the token order permuted (alignment destroyed; near 0);
- **untrained**: a randomly initialised model of the same architecture (and an SAE trained on it): random
  networks share features that only reflect the input token and the position;
- **excess correlation** (Gurnee): max-corr minus the untrained baseline's, per unit, summarised.

Which kinds of features are shared: each unit's correlation ratio η² with the token it reads, with the
cell's place in the grid, and with the token it predicts, against its universality.
Explained in notebooks/culture_universality.ipynb.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mips.artifacts import StageRun, stage_dir
from mips.culture.gpt import GPT
from mips.culture.sae import SAE, SAEConfig, collect, fit_and_measure, load_sae, run_group_saes, run_sae, save_sae
from mips.culture.training import CHAPTER, GroupConfig, load_group, untrained_model
from mips.culture.world import WorldConfig, answer_slice, make_quizzes, to_tokens

log = logging.getLogger(__name__)

UNIV_SEED = 3_000_017


@dataclass(frozen=True)
class UniversalityConfig:
    n_quizzes: int = 1000           # fresh quizzes (forward/inverse halves); answer-grid positions only
    shuffle_seed: int = 0
    untrained_seed: int = 10_000


def universality_config(preset: str = "full") -> UniversalityConfig:
    return UniversalityConfig(n_quizzes=120) if preset == "smoke" else UniversalityConfig()


def max_correlation(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each column of ``a (n, k_a)``: the max Pearson correlation with any column of ``b (n, k_b)`` and
    its index. Constant columns of ``a`` get NaN; constant columns of ``b`` never match."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    za, zb = _zscore(a), _zscore(b)
    best = np.full(a.shape[1], np.nan)
    arg = np.full(a.shape[1], -1)
    if not np.isfinite(zb).any():
        return best, arg
    zb = np.nan_to_num(zb, nan=0.0)
    for i in range(0, a.shape[1], chunk):
        c = za[:, i:i + chunk].T @ zb / len(a)            # (chunk, k_b)
        ok = np.isfinite(c).all(1)
        best[i:i + chunk][ok] = c[ok].max(1)
        arg[i:i + chunk][ok] = c[ok].argmax(1)
    return best, arg


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std(0)
    z = (x - x.mean(0)) / np.where(sd > 1e-8, sd, np.nan)
    return z


def summarize(values: np.ndarray) -> dict[str, float]:
    v = values[np.isfinite(values)]
    if not len(v):
        return {"n": 0, "median": float("nan"), "mean": float("nan"), "frac_gt_0.5": float("nan"),
                "frac_gt_0.7": float("nan")}
    return {"n": int(len(v)), "median": float(np.median(v)), "mean": float(v.mean()),
            "frac_gt_0.5": float((v > 0.5).mean()), "frac_gt_0.7": float((v > 0.7).mean())}


def correlation_ratio(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """η² of each column of ``values (n, k)`` with a categorical ``groups (n,)``: between-group / total variance."""
    values = np.asarray(values, np.float64)
    total = ((values - values.mean(0)) ** 2).sum(0)
    between = np.zeros(values.shape[1])
    for g in np.unique(groups):
        sel = groups == g
        between += sel.sum() * (values[sel].mean(0) - values.mean(0)) ** 2
    return np.where(total > 1e-12, between / np.maximum(total, 1e-12), np.nan)


def eval_tokens(world: WorldConfig, n_quizzes: int) -> np.ndarray:
    q = make_quizzes(world, n_quizzes, UNIV_SEED)
    half = n_quizzes // 2
    return np.concatenate([to_tokens(q.grids[:half], "forward"), to_tokens(q.grids[half:], "inverse")])


def answer_activations(model: GPT, tokens: np.ndarray, world: WorldConfig, hook: str, sae: SAE | None = None,
                       device: str = "cpu") -> np.ndarray:
    """Activations ``(n_quizzes * n_cells, d)`` at the answer grid's positions (SAE latents if ``sae``)."""
    acts = collect(model, tokens, hook, device=device).reshape(len(tokens), world.seq_len, -1)
    acts = acts[:, answer_slice(world)].reshape(-1, acts.shape[-1])
    if sae is not None:
        with torch.no_grad():
            acts = sae.encode(acts)
    return acts.numpy()


@dataclass
class UniversalityResult:
    record: object
    arrays: dict[str, np.ndarray]      # "neurons/0-1", "sae/0-1", "sae_shuffled/0-1", "sae_untrained/0", ...

    @property
    def metrics(self) -> dict:
        return self.record.metrics


def run(group: GroupConfig, sae_cfg: SAEConfig, cfg: UniversalityConfig, run_dir: Path | None = None,
        device: str = "cpu") -> UniversalityResult:
    """Run (or reuse) the universality analysis on the group's models and SAEs."""
    models, saes, _ = run_group_saes(group, sae_cfg, run_dir, device)
    _, records = load_group(group, run_dir, device)
    seed2_sae, seed2_metrics = run_sae(models[0], records[0], group.world, replace(sae_cfg, seed=sae_cfg.seed + 1),
                                       run_dir, device)
    rand, rand_sae, rand_metrics, rand_key = run_untrained_sae(group, sae_cfg, cfg, run_dir, device)
    name = f"universality-{group.train.name.rsplit('-seed', 1)[0]}-n{group.n_models}"
    upstream = {r.stage: r.key for r in records} | {"untrained_sae": rand_key}
    stage = StageRun(CHAPTER, name, {"universality": asdict(cfg), "sae": asdict(sae_cfg)}, upstream=upstream,
                     run_dir=run_dir)
    refs = {"rand": rand, "rand_sae": rand_sae, "rand_metrics": rand_metrics, "seed2_sae": seed2_sae,
            "seed2_metrics": seed2_metrics}
    rec = stage.cached_or_compute(lambda st: _compute(models, saes, refs, group, sae_cfg, cfg, st, device))
    z = np.load(stage_dir(CHAPTER, name, run_dir) / "universality.npz")
    return UniversalityResult(rec, {k: z[k] for k in z.files})


def run_untrained_sae(group: GroupConfig, sae_cfg: SAEConfig, cfg: UniversalityConfig, run_dir: Path | None = None,
                      device: str = "cpu") -> tuple[GPT, SAE, dict, str]:
    """The untrained baseline model and its own SAE (cached): model, SAE, metrics, record key."""
    rand = untrained_model(group, cfg.untrained_seed, device)
    m = group.train.model
    name = (f"sae-untrained-g{group.world.height}x{group.world.width}-d{m.d_model}-l{m.n_layers}"
            f"-seed{cfg.untrained_seed}-x{sae_cfg.expansion}-l{sae_cfg.l1_coefficient:g}-seed{sae_cfg.seed}")
    stage = StageRun(CHAPTER, name, {"sae": asdict(sae_cfg), "model": asdict(m), "world": asdict(group.world),
                                     "untrained_seed": cfg.untrained_seed}, run_dir=run_dir)

    def compute(st: StageRun) -> dict:
        s, metrics = fit_and_measure(rand, group.world, sae_cfg, device=device)
        save_sae(s, st.path("sae.pt"))
        return metrics
    rec = stage.cached_or_compute(compute)
    return rand, load_sae(stage_dir(CHAPTER, name, run_dir) / "sae.pt"), rec.metrics, rec.key


def _compute(models: list[GPT], saes: list[SAE], refs: dict, group: GroupConfig, sae_cfg: SAEConfig,
             cfg: UniversalityConfig, stage: StageRun, device: str) -> dict:
    t0 = time.time()
    world = group.world
    L = group.train.model.n_layers
    neuron_hook, sae_hook = f"blocks.{L - 1}.mlp.hook_post", sae_cfg.hook_for(L)
    tokens = eval_tokens(world, cfg.n_quizzes)
    # the references: an untrained model with its own SAE, and a second SAE seed on model 0
    rand, rand_sae, rand_metrics = refs["rand"], refs["rand_sae"], refs["rand_metrics"]
    seed2_sae, seed2_metrics = refs["seed2_sae"], refs["seed2_metrics"]
    neurons = [answer_activations(m, tokens, world, neuron_hook, device=device) for m in models]
    latents = [answer_activations(m, tokens, world, sae_hook, s, device=device)
               for m, s in zip(models, saes, strict=True)]
    rand_neurons = answer_activations(rand, tokens, world, neuron_hook, device=device)
    rand_latents = answer_activations(rand, tokens, world, sae_hook, rand_sae, device=device)
    seed2_latents = answer_activations(models[0], tokens, world, sae_hook, seed2_sae, device=device)
    perm = np.random.default_rng(cfg.shuffle_seed).permutation(len(neurons[0]))
    arrays: dict[str, np.ndarray] = {}
    metrics: dict = {"pairs": {}, "untrained": {}, "shuffled": {}}
    for i in range(len(models)):
        for j in range(len(models)):
            if i == j:
                continue
            for kind, acts in (("neurons", neurons), ("sae", latents)):
                best, arg = max_correlation(acts[i], acts[j])
                arrays[f"{kind}/{i}-{j}"] = best
                arrays[f"{kind}_match/{i}-{j}"] = arg
                metrics["pairs"].setdefault(kind, {})[f"{i}-{j}"] = summarize(best)
                shuf, _ = max_correlation(acts[i], acts[j][perm])
                arrays[f"{kind}_shuffled/{i}-{j}"] = shuf
                metrics["shuffled"].setdefault(kind, {})[f"{i}-{j}"] = summarize(shuf)
        for kind, acts, ref in (("neurons", neurons, rand_neurons), ("sae", latents, rand_latents)):
            best, _ = max_correlation(acts[i], ref)
            arrays[f"{kind}_untrained/{i}"] = best
            metrics["untrained"].setdefault(kind, {})[str(i)] = summarize(best)
    within, _ = max_correlation(latents[0], seed2_latents)
    arrays["sae_within/0"] = within
    metrics["within_model_sae_seeds"] = summarize(within)
    # direct logit effects of corr-matched SAE latents (exact: the hook is the last MLP's output, no final LN)
    w_u = [m.W_U.detach().numpy() for m in models]
    logit_dirs = [s.W_dec.detach().numpy() / s.scale.item() @ w for s, w in zip(saes, w_u, strict=True)]
    cos = _row_cos(logit_dirs[0], logit_dirs[1][arrays["sae_match/0-1"].clip(min=0)]) if len(models) > 1 else None
    if cos is not None:
        cos[arrays["sae_match/0-1"] < 0] = np.nan
        arrays["logit_cos/0-1"] = cos
        metrics["logit_cos_matched_0_1"] = summarize(cos)
    # what kind of features: η² with the token read, the cell's place, the token predicted (model 0's SAE)
    sl = answer_slice(world)
    read = tokens[:, sl.start - 1:sl.stop - 1].reshape(-1)
    place = np.tile(np.arange(world.n_cells), len(tokens))
    target = tokens[:, sl].reshape(-1)
    for key, groups in (("eta2_read", read), ("eta2_place", place), ("eta2_target", target)):
        arrays[key] = correlation_ratio(latents[0], groups)
    arrays["density/0"] = (latents[0] > 0).mean(0)
    np.savez_compressed(stage.path("universality.npz"), **arrays)
    metrics.update(n_tokens=int(len(neurons[0])), neuron_hook=neuron_hook, sae_hook=sae_hook,
                   untrained_sae={k: rand_metrics[k] for k in ("explained_variance", "l0", "dead_fraction")},
                   seed2_sae={k: seed2_metrics[k] for k in ("explained_variance", "l0", "dead_fraction")},
                   seconds=round(time.time() - t0, 1))
    return metrics


def _row_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return num / np.maximum(den, 1e-12)
