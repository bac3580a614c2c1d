"""Train the group of culture GPTs on world quizzes and measure their accuracy (culture spec §2.2, §2.3, §4.2).

Each model has its own seed for its initial weights and for its own stream of fresh world quizzes (as each of
Fleuret's GPTs has its own training set, regenerated every epoch). A training quiz is shown in the forward or
inverse structure with prompt noise. The loss is next-token cross-entropy over **all** tokens (the model is
also a generator of whole quizzes, which the culture loop needs), with the answer grid's cells weighted
``answer_weight`` times more: at this size, the plain all-token loss of the original learns the rules far
too slowly (spec §4.1, run A vs B). Adam with a short warm-up and a cosine decay to a tenth of the rate.

Accuracy (spec §2.3): a quiz is solved iff every cell of the predicted grid is right. *Greedy* exact-match
needs one teacher-forced pass (for a causal model, "every arg-max is right" ⇔ "greedy decoding reproduces the
target"); *sampled* exact-match generates the grid cell by cell at temperature 1, as Fleuret's
``produce_results``. Both are reported per task and per direction, with the mean per-cell accuracy.

Models are written under ``runs/chapter-culture/<name>/`` (``model.pt`` + ``record.json``); a run killed
part-way resumes from its last checkpoint in ``runs/chapter-culture/.checkpoints/``.
Explained in notebooks/culture_training.ipynb.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from mips.artifacts import Record, StageRun, runs_dir, stable_hash, stage_dir
from mips.culture.gpt import GPT, GPTConfig, generate, load_model, n_params, save_model
from mips.culture.world import (
    DIRECTIONS,
    QuizSet,
    WorldConfig,
    answer_slice,
    make_quizzes,
    to_tokens,
    training_tokens,
    world_config,
)

log = logging.getLogger(__name__)

CHAPTER = "chapter-culture"
PRESETS = ("smoke", "full")
TEST_SEED = 1_000_003          # the shared test quizzes
VALID_SEED = 1_000_033         # the quizzes of the learning curves
# The tasks the group learns by default: spec §4.2's four (the world also has grow and corners; pass
# ``tasks=`` to train on them too). Four rules fit the CPU budget of a few thousand steps per model.
TRAIN_TASKS = ("replace_color", "translate", "frame", "detect")


@dataclass(frozen=True)
class TrainConfig:
    """One model of the group: its architecture, its seed and its training run."""

    world: WorldConfig = field(default_factory=WorldConfig)
    model: GPTConfig = field(default_factory=GPTConfig)
    seed: int = 0                   # initial weights and the model's own stream of training quizzes
    steps: int = 3000
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 100
    answer_weight: float = 4.0      # extra weight of the answer grid's cells in the loss (a deviation, see above)
    structures: tuple[str, ...] = DIRECTIONS
    eval_every: int = 250           # steps between learning-curve points
    n_valid: int = 200              # quizzes of each learning-curve point
    checkpoint_every: int = 250

    def __post_init__(self):
        if isinstance(self.world, dict):
            object.__setattr__(self, "world", WorldConfig(**self.world))
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", GPTConfig(**self.model))
        object.__setattr__(self, "structures", tuple(self.structures))

    @property
    def name(self) -> str:
        m = self.model
        return (f"model-g{self.world.height}x{self.world.width}-d{m.d_model}-l{m.n_layers}-s{self.steps}"
                f"-seed{self.seed}")


@dataclass(frozen=True)
class GroupConfig:
    """The group of GPTs a chapter run uses, and how they are tested."""

    train: TrainConfig = field(default_factory=TrainConfig)
    n_models: int = 3
    n_test: int = 1000              # shared test quizzes (greedy accuracy)
    n_sampled: int = 200            # of which this many are also decoded by sampling at T=1

    def __post_init__(self):
        if isinstance(self.train, dict):
            object.__setattr__(self, "train", TrainConfig(**self.train))

    def model_configs(self) -> list[TrainConfig]:
        return [replace(self.train, seed=s) for s in range(self.n_models)]

    @property
    def world(self) -> WorldConfig:
        return self.train.world


def group_config(preset: str = "full", grid_size: int = 6, n_models: int = 3, steps: int = 0,
                 tasks: tuple[str, ...] | None = None) -> GroupConfig:
    """The smoke preset (CI: a tiny model, a few hundred steps) or the full one (spec §4.2 sizes).

    ``steps=0`` keeps the preset's number of training steps.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    n_ctx = 4 * (1 + grid_size * grid_size)
    world = world_config(grid_size, tasks or TRAIN_TASKS)
    if preset == "full":
        train = TrainConfig(world=world, model=GPTConfig(n_ctx=n_ctx), steps=steps or 3000)
        return GroupConfig(train=train, n_models=n_models)
    model = GPTConfig(n_ctx=n_ctx, d_model=32, n_layers=2, n_heads=2, d_mlp=128)
    train = TrainConfig(world=world, model=model, steps=steps or 40, batch_size=16, eval_every=20, n_valid=32,
                        checkpoint_every=10_000)
    return GroupConfig(train=train, n_models=n_models, n_test=120, n_sampled=24)


# ------------------------------------------------------------------------------------------------- loss

def loss_weights(world: WorldConfig, answer_weight: float) -> torch.Tensor:
    """Per-position weights of the loss: 1 everywhere, ``answer_weight`` on the answer grid's cells."""
    w = torch.ones(world.seq_len)
    w[answer_slice(world)] = answer_weight
    return w / w.sum()


def quiz_loss(model: GPT, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    logits = model(tokens)
    ce = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")    # (batch, pos)
    return (ce * weights).sum(1).mean()


def lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# ----------------------------------------------------------------------------------------------- accuracy

@torch.no_grad()
def answer_stats(model: GPT, tokens: np.ndarray, world: WorldConfig, batch_size: int = 250,
                 device: str = "cpu") -> dict[str, np.ndarray]:
    """Per quiz: greedy exact-match, per-cell accuracy and mean cross-entropy on the answer grid."""
    model.eval()
    sl = answer_slice(world)
    exact, cell, ce = [], [], []
    for i in range(0, len(tokens), batch_size):
        tok = torch.as_tensor(tokens[i:i + batch_size], device=device)
        logits = model(tok)[:, sl]
        target = tok[:, sl]
        right = logits.argmax(-1) == target
        exact.append(right.all(1))
        cell.append(right.float().mean(1))
        ce.append(F.cross_entropy(logits.transpose(1, 2), target, reduction="none").mean(1))
    cat = lambda xs: torch.cat(xs).cpu().numpy() if xs else np.zeros(0)  # noqa: E731
    return {"exact": cat(exact), "cell": cat(cell), "ce": cat(ce)}


@torch.no_grad()
def sampled_exact(model: GPT, tokens: np.ndarray, world: WorldConfig, temperature: float = 1.0, seed: int = 0,
                  batch_size: int = 250, device: str = "cpu") -> np.ndarray:
    """Per quiz: is the answer grid, generated cell by cell at ``temperature``, exactly right?"""
    model.eval()
    sl = answer_slice(world)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for i in range(0, len(tokens), batch_size):
        tok = torch.as_tensor(tokens[i:i + batch_size], device=device)
        blank = tok.clone()
        blank[:, sl] = 0
        done = generate(model, blank, range(sl.start, sl.stop), temperature, gen)
        out.append((done[:, sl] == tok[:, sl]).all(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, bool)


def accuracy_table(model: GPT, quizzes: QuizSet, world: WorldConfig, n_sampled: int = 0, seed: int = 0,
                   device: str = "cpu") -> dict:
    """Accuracy per direction and per task: greedy exact-match, per-cell accuracy, answer CE, and the
    sampled (T=1) exact-match on the first ``n_sampled`` quizzes."""
    out: dict = {}
    for direction in DIRECTIONS:
        tokens = to_tokens(quizzes.grids, direction)
        st = answer_stats(model, tokens, world, device=device)
        row = {"exact": float(st["exact"].mean()), "cell": float(st["cell"].mean()), "ce": float(st["ce"].mean()),
               "per_task": {t: float(st["exact"][quizzes.task == k].mean()) if (quizzes.task == k).any() else None
                            for k, t in enumerate(quizzes.tasks)}}
        if n_sampled:
            s = sampled_exact(model, tokens[:n_sampled], world, 1.0, seed, device=device)
            row["sampled_exact"] = float(s.mean())
            row["greedy_exact_same_subset"] = float(st["exact"][:n_sampled].mean())
        out[direction] = row
    return out


def test_quizzes(world: WorldConfig, n: int) -> QuizSet:
    """The shared test quizzes every model of the chapter is measured on."""
    return make_quizzes(world, n, TEST_SEED)


# ----------------------------------------------------------------------------------------------- training

def _checkpoint_path(cfg: TrainConfig, run_dir: Path | None) -> Path:
    return Path(run_dir or runs_dir()) / CHAPTER / ".checkpoints" / f"{cfg.name}-{stable_hash(asdict(cfg), 10)}.pt"


def train_model(cfg: TrainConfig, device: str = "cpu", progress: bool = True, run_dir: Path | None = None,
                extra_data: QuizSet | None = None, init: GPT | None = None) -> tuple[GPT, dict]:
    """Train one model; returns it (eval mode) and its history (steps, loss, forward/inverse exact-match).

    ``extra_data``: quizzes mixed half-and-half into every batch (the culture loop's accepted quizzes);
    ``init``: start from this model's weights instead of fresh ones (fine-tuning).
    """
    world = cfg.world
    model = GPT(cfg.model, seed=cfg.seed).to(device)
    if init is not None:
        model.load_state_dict(init.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    weights = loss_weights(world, cfg.answer_weight).to(device)
    valid = make_quizzes(world, cfg.n_valid, VALID_SEED)
    hist: dict[str, list] = {"step": [], "loss": [], "forward": [], "inverse": [], "seconds": []}
    start_step, t0 = 0, time.time()
    ckpt = _checkpoint_path(cfg, run_dir) if init is None else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start_step, hist = state["step"], state["hist"]
        t0 -= hist["seconds"][-1] if hist["seconds"] else 0
        log.info("%s: resuming at step %d from %s", cfg.name, start_step, ckpt)
    chunk, pool, losses = min(64, cfg.steps), None, []
    bar = tqdm(range(start_step, cfg.steps), desc=cfg.name, disable=not progress, leave=False,
               initial=start_step, total=cfg.steps)
    for step in bar:
        if step % chunk == 0 or pool is None:       # the model's own fresh quizzes, seeded by (seed, chunk)
            block = step // chunk
            n_world = chunk * cfg.batch_size
            quizzes = make_quizzes(world, n_world, seed=cfg.seed * 1_000_003 + block)
            rng = np.random.default_rng((cfg.seed, block, 1))
            pool, _ = training_tokens(quizzes, world, rng, cfg.structures)
            if extra_data is not None and len(extra_data):
                pick = extra_data[rng.integers(0, len(extra_data), size=n_world // 2)]
                pool[: n_world // 2], _ = training_tokens(pick, world, rng, cfg.structures)
                pool = pool[rng.permutation(n_world)]
        i = step % chunk
        model.train()
        tok = torch.as_tensor(pool[i * cfg.batch_size:(i + 1) * cfg.batch_size], device=device)
        loss = quiz_loss(model, tok, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            acc = {d: float(answer_stats(model, to_tokens(valid.grids, d), world, device=device)["exact"].mean())
                   for d in DIRECTIONS}
            hist["step"].append(done)
            hist["loss"].append(float(np.mean(losses)))
            hist["forward"].append(acc["forward"])
            hist["inverse"].append(acc["inverse"])
            hist["seconds"].append(round(time.time() - t0, 1))
            losses = []
            bar.set_postfix(loss=f"{hist['loss'][-1]:.3f}", fwd=f"{acc['forward']:.2f}", inv=f"{acc['inverse']:.2f}")
            log.info("%s step %d: loss %.4f, forward %.3f, inverse %.3f (%.0f s)", cfg.name, done, hist["loss"][-1],
                     acc["forward"], acc["inverse"], hist["seconds"][-1])
        if ckpt is not None and done % cfg.checkpoint_every == 0 and done < cfg.steps:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "step": done, "hist": hist}, tmp)
            os.replace(tmp, ckpt)
    model.eval()
    if ckpt is not None and ckpt.exists():
        ckpt.unlink()
    return model, hist


def run_model(cfg: TrainConfig, n_test: int = 1000, n_sampled: int = 200, run_dir: Path | None = None,
              device: str = "cpu", progress: bool = True) -> Record:
    """Train (or reuse) one model: ``runs/chapter-culture/<cfg.name>/`` with model.pt, its accuracies."""
    stage = StageRun(CHAPTER, cfg.name, {"train": asdict(cfg), "n_test": n_test, "n_sampled": n_sampled},
                     run_dir=run_dir)   # the same key as _model_stage for a group's model

    def compute(st: StageRun) -> dict:
        start = time.time()
        model, hist = train_model(cfg, device, progress, run_dir)
        test = test_quizzes(cfg.world, n_test)
        acc = accuracy_table(model, test, cfg.world, n_sampled, seed=cfg.seed, device=device)
        save_model(model, st.path("model.pt"))
        log.info("%s: forward %.3f, inverse %.3f", cfg.name, acc["forward"]["exact"], acc["inverse"]["exact"])
        return {"accuracy": acc, "history": hist, "n_params": n_params(model),
                "train_seconds": round(time.time() - start, 1)}
    return stage.cached_or_compute(compute)


def run_group(group: GroupConfig, run_dir: Path | None = None, device: str = "cpu",
              progress: bool = True) -> list[Record]:
    """Train (or reuse) every model of the group, one after the other."""
    return [run_model(c, group.n_test, group.n_sampled, run_dir, device, progress) for c in group.model_configs()]


def _model_stage(cfg: TrainConfig, group: GroupConfig, run_dir: Path | None) -> StageRun:
    return StageRun(CHAPTER, cfg.name, {"train": asdict(cfg), "n_test": group.n_test, "n_sampled": group.n_sampled},
                    run_dir=run_dir)


def model_record(cfg: TrainConfig, group: GroupConfig, run_dir: Path | None = None) -> Record | None:
    """The finished record of one model of the group, or None if it has not been trained (with this config)."""
    return _model_stage(cfg, group, run_dir).cached()


def load_group(group: GroupConfig, run_dir: Path | None = None, device: str = "cpu",
               train_missing: bool = True) -> tuple[list[GPT], list[Record]]:
    """The group's trained models and records, training the missing ones first (unless told not to)."""
    models, records = [], []
    for c in group.model_configs():
        path = stage_dir(CHAPTER, c.name, run_dir) / "model.pt"
        rec = model_record(c, group, run_dir)
        if rec is None:
            if not train_missing:
                raise FileNotFoundError(f"model {c.name} is not trained under {path.parent}; run "
                                        "notebooks/culture_training.ipynb or mips.culture.training.run_group first")
            rec = run_model(c, group.n_test, group.n_sampled, run_dir, device, progress=False)
        records.append(rec)
        models.append(load_model(path, device))
    return models, records


def untrained_model(group: GroupConfig, seed: int = 10_000, device: str = "cpu") -> GPT:
    """A model of the group's architecture with random weights (a universality baseline)."""
    return GPT(group.train.model, seed=seed).to(device).eval()
