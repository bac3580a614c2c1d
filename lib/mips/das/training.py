"""Train a sequence model on a numeric-equivalence task by next-token prediction (das spec §1.4, §2.2).

Inputs are ``seq[:-1]``, targets ``seq[1:]``; the loss is the cross-entropy at every position whose input
is neither padding nor ``E`` (the unpredictable demo tokens included, as in the original). A sequence is
correct when the arg-max is right at every response-phase position (every R and the E) with the model
running free there. Adam, linear warm-up then ``lr·(warmup/step)^0.25``, a fixed set of training
sequences; counts 4, 9, 14, 17 are never trained on and measure generalisation. Training stops once the
validation sequence accuracy reaches ``target_accuracy`` (or after ``max_epochs``).

Models are written under ``runs/chapter-das/model-<task>-<kind>-d<d>-seed<s>/``. Explained in
notebooks/das_counting.ipynb.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from mips.artifacts import Record, StageRun, stage_dir
from mips.das.models import ModelConfig, SequenceModel, build_model, load_model, save_model
from mips.das.tasks import EOS_ID, HOLD_OUTS, PAD_ID, NumericTask, TokenData, get_numeric_task, make_sequences

log = logging.getLogger(__name__)

CHAPTER = "chapter-das"


@dataclass(frozen=True)
class TrainConfig:
    """A model, its task and its training run. Defaults are the book's (CPU-sized) values."""

    task: str = "MultiObject"
    unk_p: float = 0.0            # rate of the unknown token U in the demo phase (0.2 for transformers)
    max_count: int = 20           # largest count (20 as the original; smaller only in tests)
    kind: str = "gru"
    d_model: int = 32
    n_layers: int = 2             # transformer only
    n_heads: int = 2              # transformer only
    drop_p: float = 0.5
    seed: int = 0                 # initial weights and batch order
    data_seed: int = 0            # the training/validation sequences (shared by every model seed)
    n_train: int = 1000
    n_valid: int = 1000
    lr: float = 5e-4
    warmup: int = 100
    batch_size: int = 128
    max_epochs: int = 300
    eval_every: int = 5           # epochs between validations
    target_accuracy: float = 0.99

    @property
    def numeric_task(self) -> NumericTask:
        return get_numeric_task(self.task, self.unk_p, self.max_count)

    def model_config(self) -> ModelConfig:
        return ModelConfig(kind=self.kind, vocab_size=self.numeric_task.vocab_size, d_model=self.d_model,
                           n_layers=self.n_layers, n_heads=self.n_heads, drop_p=self.drop_p)

    @property
    def name(self) -> str:
        """The stage folder: ``model-multiobject-gru-d32-seed0`` (``-unk`` when U is used)."""
        unk = "-unk" if self.unk_p else ""
        untrained = "-untrained" if self.max_epochs == 0 else ""
        small = f"-max{self.max_count}" if self.max_count != 20 else ""
        return f"model-{self.task.lower()}{small}{unk}-{self.kind}-d{self.d_model}-seed{self.seed}{untrained}"


@dataclass
class Splits:
    """The sequences a model is trained and judged on."""

    train: TokenData
    valid: TokenData
    held_out: TokenData       # only the counts never trained on


def splits(cfg: TrainConfig) -> Splits:
    task = cfg.numeric_task
    return Splits(make_sequences(task, cfg.n_train, cfg.data_seed),
                  make_sequences(task, cfg.n_valid, cfg.data_seed + 1),
                  make_sequences(task, max(cfg.n_valid // 4, 50), cfg.data_seed + 2, only_hold_outs=True))


def batch_tensors(tokens: np.ndarray, tmask: np.ndarray, device: str = "cpu", pad_id: int = PAD_ID):
    """Trim trailing padding; return inputs, targets, free (inputs to run free on) and loss/score masks."""
    L = int((tokens != pad_id).sum(1).max())
    tok = torch.as_tensor(tokens[:, :L], device=device)
    tm = torch.as_tensor(tmask[:, :L], device=device)
    inputs, targets = tok[:, :-1], tok[:, 1:]
    return inputs, targets, tm[:, :-1], tm[:, 1:]


def loss_mask(inputs: torch.Tensor) -> torch.Tensor:
    """Positions that count in the loss: the input is neither padding nor the end token."""
    return (inputs != PAD_ID) & (inputs != EOS_ID)


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    ce = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    return (ce * mask).sum() / mask.sum().clamp(min=1)


def trial_correct(logits: torch.Tensor, targets: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Per row: is the arg-max right at every scored (response-phase) position?"""
    return ((logits.argmax(-1) == targets) | ~score).all(dim=1)


@torch.no_grad()
def sequence_accuracy(model: SequenceModel, data: TokenData, device: str = "cpu", batch_size: int = 500) -> float:
    """Fraction of sequences whose whole response phase the model produces correctly, running free."""
    model.eval()
    ok = 0
    for i in range(0, len(data), batch_size):
        inputs, targets, free, score = batch_tensors(data.tokens[i:i + batch_size], data.tmask[i:i + batch_size],
                                                     device)
        ok += int(trial_correct(model(inputs, free), targets, score).sum())
    return ok / len(data)


def lr_lambda(warmup: int):
    """Linear warm-up to the base rate, then decay as (warmup/step)^0.25 (the original's DecayScheduler)."""
    return lambda step: (step + 1) / warmup if step < warmup else (warmup / (step + 1)) ** 0.25


def train_model(cfg: TrainConfig, device: str = "cpu", progress: bool = True) -> tuple[SequenceModel, dict]:
    """Train one model; returns it (eval mode) and its history (epochs, loss, accuracies).

    ``max_epochs=0`` returns the untrained model (a control: DAS should find nothing in it).
    """
    data = splits(cfg)
    model = build_model(cfg.model_config(), cfg.seed).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup))
    rng = np.random.default_rng(cfg.seed)
    teacher = cfg.kind == "transformer"
    hist = {"epoch": [], "step": [], "train_loss": [], "valid_accuracy": []}
    step, losses = 0, []
    bar = tqdm(range(1, cfg.max_epochs + 1), desc=cfg.name, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = rng.permutation(len(data.train))
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            inputs, targets, free, _ = batch_tensors(data.train.tokens[idx], data.train.tmask[idx], device)
            logits = model(inputs, free, teacher_force=teacher)
            loss = next_token_loss(logits, targets, loss_mask(inputs))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
        if epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs:
            acc = sequence_accuracy(model, data.valid, device)
            hist["epoch"].append(epoch)
            hist["step"].append(step)
            hist["train_loss"].append(float(np.mean(losses)))
            hist["valid_accuracy"].append(acc)
            losses = []
            bar.set_postfix(loss=f"{hist['train_loss'][-1]:.3f}", acc=f"{acc:.3f}")
            if acc >= cfg.target_accuracy:
                break
    model.eval()
    return model, hist


def run(cfg: TrainConfig, run_dir=None, device: str = "cpu", progress: bool = True) -> Record:
    """Train (or reuse) a model: ``runs/chapter-das/<cfg.name>/`` with model.pt and its record."""
    stage = StageRun(CHAPTER, cfg.name, asdict(cfg), run_dir=run_dir)
    if (rec := stage.cached()) is not None:
        return rec
    start = time.time()
    model, hist = train_model(cfg, device, progress)
    data = splits(cfg)
    metrics = {
        "valid_accuracy": sequence_accuracy(model, data.valid, device),
        "held_out_accuracy": sequence_accuracy(model, data.held_out, device),
        "train_accuracy": sequence_accuracy(model, data.train, device),
        "epochs": hist["epoch"][-1] if hist["epoch"] else 0, "steps": hist["step"][-1] if hist["step"] else 0,
        "n_params": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(time.time() - start, 1),
        "history": hist, "held_out_counts": list(HOLD_OUTS),
    }
    save_model(model, stage.path("model.pt"))
    solved = metrics["valid_accuracy"] >= cfg.target_accuracy or cfg.max_epochs == 0
    msg = "" if solved else (f"validation sequence accuracy {metrics['valid_accuracy']:.3f} is below the target "
                             f"{cfg.target_accuracy} after {metrics['epochs']} epochs")
    if cfg.max_epochs == 0:
        msg = "untrained control"
    log.info("%s: valid %.3f, held-out counts %.3f after %d epochs", cfg.name, metrics["valid_accuracy"],
             metrics["held_out_accuracy"], metrics["epochs"])
    return stage.finish(metrics, success=solved, message=msg)


def load(cfg: TrainConfig, run_dir=None, device: str = "cpu") -> SequenceModel:
    """The trained model of a config (run :func:`run` first)."""
    path = stage_dir(CHAPTER, cfg.name, run_dir) / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"no trained model at {path}; call mips.das.training.run(cfg) first")
    return load_model(path, device)
