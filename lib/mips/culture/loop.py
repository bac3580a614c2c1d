"""One round of the culture loop: the group invents quizzes, keeps those it disagrees on, learns them
(culture spec §2.4, §4.2).

1. **Generate** (three steps, in place, by a model drawn at random per batch): on an empty quiz, sample the
   first grid "hot" (temperature 1.5), then the other three at T=1; then reorder so that f(B) is the
   predicted grid and sample f(B) again at T=1. Fleuret generates in the structure (f(B), f(A), A, B); our
   models are trained on the forward and inverse structures only, so generation runs in the inverse one,
   (f(A), A, f(B), B): the hot grid is f(A), then A, f(B) and B follow, and step 3 redraws f(B) in the
   forward structure. The three steps are the original's.
2. **Filter trivial** quizzes (A == f(A) or B == f(B)).
3. **Agreement filter.** For each model ``m`` and quiz, ``p_m = P_m(f(B) | A, f(A), B~noisy) ·
   P_m(B | f(A), A, f(B)~noisy)``, teacher-forced probabilities of the true answer in both time directions,
   averaged over ``n_averaging`` prompt-noise draws. A model *succeeds* if ``p ≥ 0.95`` and *fails* if
   ``p ≤ 0.5``. A quiz is kept iff every model does one or the other and the number that fail lies in
   ``[min_fail, max_fail]`` (3 models: exactly one fails; 5 models: one or two, the original's setting).
4. **Learn**: every model is fine-tuned a short while on batches that are half world quizzes and half
   accepted culture quizzes, and its accuracy is measured before and after on the world test quizzes and on
   the accepted quizzes.

Explained in notebooks/culture_round.ipynb.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from mips.artifacts import StageRun, stage_dir
from mips.culture.gpt import GPT, generate, save_model
from mips.culture.training import CHAPTER, GroupConfig, answer_stats, load_group, test_quizzes, train_model
from mips.culture.world import (
    DIRECTIONS,
    QuizSet,
    WorldConfig,
    add_prompt_noise,
    answer_slice,
    from_tokens,
    part_slice,
    to_tokens,
    trivial,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundConfig:
    """One culture round."""

    n_candidates: int = 500          # quizzes generated
    batch_size: int = 125            # generated per draw of a generating model
    hot_temperature: float = 1.5     # step 1's temperature
    proba_understands: float = 0.95  # a model succeeds at p >= this
    proba_not_understands: float = 0.5   # and fails at p <= this
    min_fail: int = 1
    max_fail: int = 1                # 3 models: exactly one fails (the original, with 5: up to 2)
    n_averaging: int = 3             # prompt-noise draws p is averaged over
    finetune_steps: int = 100        # per model, on half world / half accepted quizzes (0: no learning step)
    finetune_lr: float = 5e-4
    n_world_eval: int = 500          # world test quizzes for the before/after accuracy
    seed: int = 0


def round_config(preset: str = "full", n_models: int = 3) -> RoundConfig:
    max_fail = 1 if n_models <= 3 else 2
    if preset == "smoke":
        return RoundConfig(n_candidates=48, batch_size=24, finetune_steps=20, n_world_eval=100, max_fail=max_fail)
    return RoundConfig(max_fail=max_fail)


# ------------------------------------------------------------------------------------------------ generation

@torch.no_grad()
def generate_quizzes(model: GPT, world: WorldConfig, n: int, hot_temperature: float = 1.5,
                     generator: torch.Generator | None = None, device: str = "cpu") -> np.ndarray:
    """``n`` quizzes invented by one model, canonical grids ``(n, 4, H, W)`` (the three-step procedure)."""
    model.eval()
    empty = np.zeros((n, 4, world.height, world.width), np.int64)
    tok = torch.as_tensor(to_tokens(empty, "inverse"), device=device)
    cells = lambda parts: [p for k in parts for p in range(part_slice(world, k).start, part_slice(world, k).stop)]  # noqa: E731
    tok = generate(model, tok, cells([0]), hot_temperature, generator)          # f(A), hot
    tok = generate(model, tok, cells([1, 2, 3]), 1.0, generator)                # A, f(B), B
    grids = from_tokens(tok.cpu().numpy(), world)
    tok = torch.as_tensor(to_tokens(grids, "forward"), device=device)
    tok = generate(model, tok, cells([3]), 1.0, generator)                      # f(B) again, forward
    return from_tokens(tok.cpu().numpy(), world)


# ----------------------------------------------------------------------------------------------- the filter

@torch.no_grad()
def answer_logproba(model: GPT, tokens: np.ndarray, world: WorldConfig, batch_size: int = 250,
                    device: str = "cpu") -> np.ndarray:
    """Teacher-forced log-probability of the whole answer grid, per quiz."""
    model.eval()
    sl = answer_slice(world)
    out = []
    for i in range(0, len(tokens), batch_size):
        tok = torch.as_tensor(tokens[i:i + batch_size], device=device)
        logp = F.log_softmax(model(tok)[:, sl], -1).gather(-1, tok[:, sl, None])[..., 0]
        out.append(logp.sum(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def understanding(models: list[GPT], grids: np.ndarray, world: WorldConfig, n_averaging: int = 3, seed: int = 0,
                  device: str = "cpu") -> np.ndarray:
    """``p[m, q] = mean over noise draws of P_m(forward answer) · P_m(inverse answer)``: (n_models, n)."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_averaging):
        tok = {d: add_prompt_noise(to_tokens(grids, d), world, rng) for d in DIRECTIONS}
        draws.append([np.exp(answer_logproba(m, tok["forward"], world, device=device)
                             + answer_logproba(m, tok["inverse"], world, device=device)) for m in models])
    return np.mean(np.asarray(draws), axis=0)


@dataclass
class Verdicts:
    """The agreement filter's decision on each quiz."""

    succeeds: np.ndarray       # (n_models, n) p >= proba_understands
    fails: np.ndarray          # (n_models, n) p <= proba_not_understands
    accepted: np.ndarray       # (n,)

    @property
    def n_fail(self) -> np.ndarray:
        return self.fails.sum(0)

    @property
    def decided(self) -> np.ndarray:
        """Every model either succeeds or fails."""
        return (self.succeeds | self.fails).all(0)


def agreement_filter(p: np.ndarray, proba_understands: float = 0.95, proba_not_understands: float = 0.5,
                     min_fail: int = 1, max_fail: int = 1) -> Verdicts:
    """Keep a quiz iff every model is confident either way and ``min_fail <= #failing <= max_fail``."""
    p = np.asarray(p, dtype=float)
    succeeds, fails = p >= proba_understands, p <= proba_not_understands
    n_fail = fails.sum(0)
    accepted = (succeeds | fails).all(0) & (n_fail >= min_fail) & (n_fail <= max_fail)
    return Verdicts(succeeds, fails, accepted)


# ------------------------------------------------------------------------------------------------- a round

@dataclass
class RoundResult:
    """What a round produced (loaded from its stage folder)."""

    record: object
    candidates: np.ndarray      # (n, 4, H, W) every generated quiz
    generator: np.ndarray       # (n,) index of the model that generated it
    is_trivial: np.ndarray      # (n,)
    p: np.ndarray               # (n_models, n_non_trivial) the filter's probabilities
    non_trivial: np.ndarray     # (n_non_trivial,) indices into candidates
    accepted: np.ndarray        # (n_accepted,) indices into candidates
    fails: np.ndarray           # (n_models, n_non_trivial)

    @property
    def metrics(self) -> dict:
        return self.record.metrics

    @classmethod
    def load(cls, folder: Path, record) -> RoundResult:
        z = np.load(folder / "round.npz")
        return cls(record, z["candidates"], z["generator"], z["is_trivial"], z["p"], z["non_trivial"],
                   z["accepted"], z["fails"])


def run_round(group: GroupConfig, cfg: RoundConfig, run_dir: Path | None = None, device: str = "cpu",
              progress: bool = False) -> RoundResult:
    """Run (or reuse) one culture round on the group's trained models: ``runs/chapter-culture/round-.../``."""
    models, records = load_group(group, run_dir, device)
    name = f"round-{group.train.name.rsplit('-seed', 1)[0]}-n{group.n_models}-seed{cfg.seed}"
    stage = StageRun(CHAPTER, name, {"round": asdict(cfg)}, upstream={r.stage: r.key for r in records},
                     run_dir=run_dir)
    rec = stage.cached_or_compute(lambda st: _compute(models, group, cfg, st, device, progress))
    return RoundResult.load(stage_dir(CHAPTER, name, run_dir), rec)


def _accuracy(model: GPT, grids: np.ndarray, world: WorldConfig, device: str) -> dict[str, float]:
    if not len(grids):
        return {d: float("nan") for d in DIRECTIONS}
    return {d: float(answer_stats(model, to_tokens(grids, d), world, device=device)["exact"].mean())
            for d in DIRECTIONS}


def _compute(models: list[GPT], group: GroupConfig, cfg: RoundConfig, stage: StageRun, device: str,
             progress: bool) -> dict:
    world = group.world
    t0 = time.time()
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    parts, who = [], []
    for start in range(0, cfg.n_candidates, cfg.batch_size):
        n = min(cfg.batch_size, cfg.n_candidates - start)
        m = int(rng.integers(len(models)))
        parts.append(generate_quizzes(models[m], world, n, cfg.hot_temperature, gen, device))
        who.append(np.full(n, m))
    candidates, generator = np.concatenate(parts), np.concatenate(who)
    gen_seconds = time.time() - t0
    is_trivial = trivial(candidates)
    non_trivial = np.flatnonzero(~is_trivial)
    p = understanding(models, candidates[non_trivial], world, cfg.n_averaging, cfg.seed, device)
    v = agreement_filter(p, cfg.proba_understands, cfg.proba_not_understands, cfg.min_fail, cfg.max_fail)
    accepted = non_trivial[v.accepted]
    log.info("round: %d candidates, %d non-trivial, %d accepted", len(candidates), len(non_trivial), len(accepted))
    np.savez_compressed(stage.path("round.npz"), candidates=candidates, generator=generator, is_trivial=is_trivial,
                        p=p, non_trivial=non_trivial, accepted=accepted, fails=v.fails)
    n_nt = max(len(non_trivial), 1)
    metrics = {
        "n_candidates": len(candidates), "n_trivial": int(is_trivial.sum()), "n_non_trivial": len(non_trivial),
        "n_decided": int(v.decided.sum()), "n_accepted": len(accepted),
        "accept_rate": len(accepted) / max(len(candidates), 1), "accept_rate_non_trivial": len(accepted) / n_nt,
        "all_succeed": int(v.succeeds.all(0).sum()), "all_fail": int(v.fails.all(0).sum()),
        "fail_histogram": {str(k): int((v.n_fail == k).sum()) for k in range(len(models) + 1)},
        "failing_model_of_accepted": [int((v.fails[m] & v.accepted).sum()) for m in range(len(models))],
        "generated_by": [int((generator == m).sum()) for m in range(len(models))],
        "accepted_by_generator": [int((generator[accepted] == m).sum()) for m in range(len(models))],
        "generation_seconds": round(gen_seconds, 1),
    }
    world_test = test_quizzes(world, group.n_test)[: cfg.n_world_eval]
    acc_grids = candidates[accepted]
    before = [{"world": _accuracy(m, world_test.grids, world, device),
               "culture": _accuracy(m, acc_grids, world, device)} for m in models]
    metrics["before"] = before
    metrics["finetuned"] = False
    if cfg.finetune_steps and len(accepted):
        culture = QuizSet(acc_grids, np.full(len(accepted), -1), world_test.tasks)
        after = []
        for k, m in enumerate(models):
            tcfg = replace(group.model_configs()[k], steps=cfg.finetune_steps, lr=cfg.finetune_lr, warmup=10,
                           seed=7919 + k, eval_every=cfg.finetune_steps, checkpoint_every=10**9)
            tuned, _ = train_model(tcfg, device, progress, extra_data=culture, init=m)
            save_model(tuned, stage.path(f"finetuned-{k}.pt"))
            after.append({"world": _accuracy(tuned, world_test.grids, world, device),
                          "culture": _accuracy(tuned, acc_grids, world, device)})
        metrics["after"] = after
        metrics["finetuned"] = True
    metrics["seconds"] = round(time.time() - t0, 1)
    return metrics
