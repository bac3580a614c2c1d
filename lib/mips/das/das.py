"""Distributed alignment search (DAS) and model alignment search (MAS) on frozen models (das spec §4–5).

The models are frozen (eval mode, so the decoder's dropout is off); only the alignment functions train.
For every pair the source state is read once (the source run free, no gradients); the target runs on the
counterfactual sequence with its state replaced at the swap position, and the loss is the cross-entropy
against the counterfactual's next tokens at every non-pad position (as the original). Adam, early stopping
as §4.4: the validation loss stops improving by ``plateau`` for ``patience`` checks, or training and
validation IIA both reach ``stop_accuracy``, or the validation loss is below 0.1 after 1,500 steps.

IIA (interchange intervention accuracy) is the fraction of pairs whose whole counterfactual response
phase (every R and the E) the intervened model produces, running free. It is reported on *test* pairs
that neither training nor early stopping saw. With several models (MAS) there is one alignment function
per model and the loss sums over every (source model, target model) direction; the cross-model IIA is the
similarity measure. Explained in notebooks/das_counting.ipynb.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch.nn.utils import parametrize
from tqdm import tqdm

from mips.artifacts import Record, StageRun, stable_hash
from mips.das import training
from mips.das.causal_models import get_causal_model
from mips.das.counterfactuals import PairSet, make_pairs
from mips.das.interventions import Interchange, Intervention
from mips.das.models import SequenceModel
from mips.das.tasks import PAD_ID, get_numeric_task, make_sequences
from mips.das.training import CHAPTER, TrainConfig, batch_tensors, loss_mask, next_token_loss, trial_correct

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DASConfig:
    """The causal model, the intervention, the pairs and the optimisation of one alignment search."""

    causal_model: str = "updown"
    intervention: Intervention = field(default_factory=Intervention)
    n_train_pairs: int = 5000
    n_valid_pairs: int = 500           # early stopping and the IIA curve
    n_test_pairs: int = 1000           # the reported IIA
    pair_seed: int = 0
    continuation_count: str = "random"
    lr: float = 1e-3
    batch_size: int = 128
    max_steps: int = 2000
    eval_every: int = 100
    patience: int = 10
    plateau: float = 1e-3
    stop_accuracy: float = 0.995
    seed: int = 0                      # alignment initialisation and batch order


@functools.lru_cache(maxsize=32)
def pair_sets(task: str, unk_p: float, max_count: int, causal_model: str, variables: tuple[str, ...], n_train: int,
              n_valid: int, n_test: int, seed: int, continuation_count: str) -> tuple[PairSet, PairSet, PairSet]:
    """Train, validation and test pairs, each from its own independently drawn pool of sequences with every
    count 1..max_count (see :func:`mips.das.counterfactuals.shared_pairs` for how many coincide by chance)."""
    nt = get_numeric_task(task, unk_p, max_count)
    cm = get_causal_model(causal_model, nt)
    out = []
    for i, n in enumerate((n_train, n_valid, n_test)):
        pool = make_sequences(nt, n, seed=10_000 + 3 * seed + i, hold_outs=())
        out.append(make_pairs(pool, cm, variables, n, seed=20_000 + 3 * seed + i,
                              continuation_count=continuation_count))
    return tuple(out)


def pairs_for(model_cfg: TrainConfig, cfg: DASConfig) -> tuple[PairSet, PairSet, PairSet]:
    return pair_sets(model_cfg.task, model_cfg.unk_p, model_cfg.max_count, cfg.causal_model,
                     cfg.intervention.variables, cfg.n_train_pairs, cfg.n_valid_pairs, cfg.n_test_pairs,
                     cfg.pair_seed, cfg.continuation_count)


@torch.no_grad()
def source_states(model: SequenceModel, pairs: PairSet, hook: str, device: str = "cpu",
                  batch_size: int = 500) -> torch.Tensor:
    """The state at ``hook`` after each source's swap token (n, d), the source run free."""
    model.eval()
    out = []
    for i in range(0, len(pairs), batch_size):
        inputs, _, free, _ = batch_tensors(pairs.src_tokens[i:i + batch_size], pairs.src_tmask[i:i + batch_size],
                                           device)
        _, cache = model.run_with_cache(inputs, free)
        pos = torch.as_tensor(pairs.src_pos[i:i + batch_size], device=device)
        out.append(cache[hook][torch.arange(len(pos), device=device), pos])
    return torch.cat(out)


@dataclass
class Prepared:
    """What the intervened forward pass of one model needs for every pair of a set (tensors, n rows).

    For a recurrent model nothing before the swap position depends on the alignment, so the prefix is run
    once: ``state0`` is the state before the swap token, ``inputs`` start at the swap token (its input as
    the model saw it, its own prediction if free) and the patch is at position 0; ``prefix_ok`` says
    whether the unintervened prefix's scored tokens were right. For a transformer the whole
    counterfactual is run and the patch is at the swap position.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    free: torch.Tensor
    score: torch.Tensor
    positions: torch.Tensor
    lengths: np.ndarray
    variable: torch.Tensor
    state0: torch.Tensor | None
    prefix_ok: torch.Tensor

    def batch(self, idx: np.ndarray) -> Prepared:
        L = int(self.lengths[idx].max())
        t = torch.as_tensor(idx, device=self.inputs.device)
        return Prepared(self.inputs[t, :L], self.targets[t, :L], self.free[t, :L], self.score[t, :L],
                        self.positions[t], self.lengths[idx], self.variable[t],
                        None if self.state0 is None else self.state0[t], self.prefix_ok[t])


@torch.no_grad()
def prepare(model: SequenceModel, pairs: PairSet, device: str = "cpu", batch_size: int = 500,
            skip_prefix: bool = True) -> Prepared:
    """Tensors for intervened runs of ``model`` on ``pairs`` (see :class:`Prepared`).

    ``skip_prefix=False`` runs recurrent models over the whole counterfactual too (same results, slower).
    """
    model.eval()
    n = len(pairs)
    variable = torch.as_tensor(pairs.variable, device=device)
    if model.config.kind == "transformer" or not skip_prefix:
        inputs, targets, free, score = batch_tensors(pairs.cf_tokens, pairs.cf_tmask, device)
        lengths = (pairs.cf_tokens != PAD_ID).sum(1) - 1
        return Prepared(inputs, targets, free, score, torch.as_tensor(pairs.trg_pos, device=device), lengths,
                        variable, None, torch.ones(n, dtype=torch.bool, device=device))
    d = model.config.d_model
    state0 = torch.zeros(n, d, device=device)
    first = np.zeros(n, dtype=np.int64)
    prefix_ok = np.zeros(n, dtype=bool)
    for i in range(0, n, batch_size):
        rows = np.arange(i, min(i + batch_size, n))
        inputs, targets, free, score = batch_tensors(pairs.cf_tokens[rows], pairs.cf_tmask[rows], device)
        logits, cache = model.run_with_cache(inputs, free)
        pred = logits.argmax(-1).cpu().numpy()
        ok = ((pred == targets.cpu().numpy()) | ~score.cpu().numpy())
        for j, r in enumerate(rows):
            ti = int(pairs.trg_pos[r])
            state0[r] = cache["hook_h"][j, ti - 1]
            first[r] = pred[j, ti - 1] if pairs.cf_tmask[r, ti] else pairs.cf_tokens[r, ti]
            prefix_ok[r] = ok[j, :ti].all()
    lengths = (pairs.cf_tokens != PAD_ID).sum(1) - 1 - pairs.trg_pos
    Lc = int(lengths.max())
    cont = np.full((n, Lc + 1), PAD_ID, dtype=np.int64)
    cmask = np.zeros((n, Lc + 1), dtype=bool)
    for r in range(n):
        ti = int(pairs.trg_pos[r])
        cont[r, :lengths[r] + 1] = pairs.cf_tokens[r, ti:ti + lengths[r] + 1]
        cmask[r, :lengths[r] + 1] = pairs.cf_tmask[r, ti:ti + lengths[r] + 1]
    cont[:, 0] = first
    cmask[:, 0] = False          # the swap token's input is fixed above
    cont_t = torch.as_tensor(cont, device=device)
    cmask_t = torch.as_tensor(cmask, device=device)
    return Prepared(cont_t[:, :-1], cont_t[:, 1:], cmask_t[:, :-1], cmask_t[:, 1:],
                    torch.zeros(n, dtype=torch.long, device=device), lengths, variable, state0,
                    torch.as_tensor(prefix_ok, device=device))


def intervened_logits(model: SequenceModel, inter: Interchange, prep: Prepared, h_src: torch.Tensor, src: int,
                      trg: int, teacher_force: bool) -> torch.Tensor:
    """Logits of ``model`` on a prepared batch with the interchange applied at each row's swap position."""
    patch = inter.patch(prep.positions, h_src, prep.variable, src, trg)
    with parametrize.cached():
        if prep.state0 is not None:
            return model.run_with_cache(prep.inputs, prep.free, patch, state0=prep.state0)[0]
        return model(prep.inputs, prep.free, patch, teacher_force=teacher_force)


@torch.no_grad()
def evaluate(model: SequenceModel, inter: Interchange, prep: Prepared, h_src: torch.Tensor, src: int = 0,
             trg: int = 0, batch_size: int = 500, variables: tuple[str, ...] = ()) -> dict:
    """IIA (whole response phase right, running free), per-token accuracy and loss after the swap."""
    inter.eval()
    n = len(prep.lengths)
    correct = np.zeros(n, dtype=bool)
    tok_ok = tok_n = 0
    loss_sum = loss_n = 0.0
    for i in range(0, n, batch_size):
        idx = np.arange(i, min(i + batch_size, n))
        b = prep.batch(idx)
        logits = intervened_logits(model, inter, b, h_src[torch.as_tensor(idx)], src, trg, False)
        correct[idx] = (trial_correct(logits, b.targets, b.score) & b.prefix_ok).cpu().numpy()
        tok_ok += int(((logits.argmax(-1) == b.targets) & b.score).sum())
        tok_n += int(b.score.sum())
        m = loss_mask(b.inputs)
        loss_sum += float(next_token_loss(logits, b.targets, m)) * float(m.sum())
        loss_n += float(m.sum())
    var = prep.variable.cpu().numpy()
    by_var = {v: float(correct[var == g].mean()) for g, v in enumerate(variables) if (var == g).any()}
    return {"iia": float(correct.mean()), "token_accuracy": tok_ok / max(tok_n, 1), "loss": loss_sum / max(loss_n, 1),
            "iia_by_variable": by_var, "correct": correct}


@dataclass
class DASResult:
    """A fitted alignment search: the interchange module, the curves and the test IIA per direction."""

    interchange: Interchange
    directions: list[tuple[int, int]]
    curve: dict                  # step, valid_iia[direction], valid_loss, train_loss
    test: dict                   # "s->t": evaluate(...) on the test pairs
    steps: int
    stop_reason: str
    seconds: float

    @property
    def iia(self) -> float:
        """Mean test IIA over the directions (DAS: the one direction)."""
        return float(np.mean([v["iia"] for v in self.test.values()]))


def fit(models: list[SequenceModel], pairs: tuple[PairSet, PairSet, PairSet], cfg: DASConfig, device: str = "cpu",
        teacher_force: bool = False, progress: bool = True) -> DASResult:
    """Train one alignment function per model so that interchanges reproduce the counterfactuals."""
    start = time.time()
    spec = cfg.intervention
    for m in models:
        m.eval().requires_grad_(False)
    names = ("train", "valid", "test")
    src = {k: [source_states(m, p, spec.hook, device) for m in models] for k, p in zip(names, pairs, strict=True)}
    prep = {k: [prepare(m, p, device) for m in models] for k, p in zip(names, pairs, strict=True)}
    d = int(src["valid"][0].shape[-1])
    inter = Interchange(spec, d, len(models), cfg.seed).to(device)
    dirs = [(s, t) for s in range(len(models)) for t in range(len(models))]
    opt = torch.optim.Adam(inter.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    n_norm = len(models) ** 2 * len(spec.variables)
    n_train = len(pairs[0])
    curve = {"step": [], "valid_loss": [], "train_loss": [], "train_iia": [],
             **{f"valid_iia_{s}->{t}": [] for s, t in dirs}}
    best_loss, bad, stop_reason = float("inf"), 0, "max_steps"
    losses, train_ok = [], []

    def run_eval(split: str) -> dict:
        return {f"{s}->{t}": evaluate(models[t], inter, prep[split][t], src[split][s], s, t,
                                      variables=spec.variables) for s, t in dirs}

    def check(step: int) -> bool:
        nonlocal best_loss, bad, stop_reason
        ev = run_eval("valid")
        vloss = float(np.mean([e["loss"] for e in ev.values()]))
        curve["step"].append(step)
        curve["valid_loss"].append(vloss)
        curve["train_loss"].append(float(np.mean(losses)) if losses else float("nan"))
        curve["train_iia"].append(float(np.mean(train_ok)) if train_ok else float("nan"))
        for key, e in ev.items():
            curve[f"valid_iia_{key}"].append(e["iia"])
        losses.clear()
        train_ok.clear()
        viia = min(e["iia"] for e in ev.values())
        if vloss < best_loss - cfg.plateau:
            best_loss, bad = vloss, 0
        else:
            bad += 1
        if step == 0:
            return False
        if min(viia, curve["train_iia"][-1]) >= cfg.stop_accuracy:
            stop_reason = "accuracy"
        elif bad >= cfg.patience:
            stop_reason = "plateau"
        elif step >= 1500 and vloss < 0.1:
            stop_reason = "low_loss"
        else:
            return False
        return True

    check(0)
    step = 0
    bar = tqdm(range(1, cfg.max_steps + 1), desc=f"DAS {spec.label}", disable=not progress, leave=False)
    for step in bar:
        inter.train()
        idx = rng.choice(n_train, size=min(cfg.batch_size, n_train), replace=False)
        total = 0.0
        for s, t in dirs:
            b = prep["train"][t].batch(idx)
            logits = intervened_logits(models[t], inter, b, src["train"][s][torch.as_tensor(idx)], s, t,
                                       teacher_force)
            total = total + next_token_loss(logits, b.targets, loss_mask(b.inputs))
            train_ok.append(float((trial_correct(logits.detach(), b.targets, b.score) & b.prefix_ok).float().mean()))
        loss = total / n_norm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            stop = check(step)
            bar.set_postfix(iia=f"{curve[f'valid_iia_{dirs[0][0]}->{dirs[0][1]}'][-1]:.3f}")
            if stop:
                break
    test = run_eval("test")
    return DASResult(inter, dirs, curve, test, step, stop_reason, round(time.time() - start, 1))


def linear_probe(states_train: torch.Tensor, values_train: np.ndarray, states_test: torch.Tensor,
                 values_test: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """Closed-form least squares from states to each causal variable; accuracy of the rounded prediction."""
    X = np.column_stack([states_train.cpu().numpy().astype(np.float64), np.ones(len(states_train))])
    Xt = np.column_stack([states_test.cpu().numpy().astype(np.float64), np.ones(len(states_test))])
    W, *_ = np.linalg.lstsq(X, values_train, rcond=None)
    pred = Xt @ W
    return {n: float((np.round(pred[:, i]) == np.round(values_test[:, i])).mean()) for i, n in enumerate(names)}


def by_phase(pairs: PairSet, correct: np.ndarray) -> dict[str, float]:
    """IIA split by where the swap happens and what it brings: target phase × source phase (demo/response)."""
    if "phase" not in pairs.value_names:
        return {}
    i = pairs.value_names.index("phase")
    out = {}
    for tn, tv in (("demo", -1), ("response", 1)):
        for sn, sv in (("demo", -1), ("response", 1)):
            sel = (pairs.trg_values[:, i] == tv) & (pairs.src_values[:, i] == sv)
            if sel.any():
                out[f"{sn}->{tn}"] = float(correct[sel].mean())
    return out


def run_name(model_cfgs: list[TrainConfig], cfg: DASConfig) -> str:
    """The stage folder: ``das-<model>-<causal model>-<intervention>-<hash>`` (``mas-<m0>-vs-<m1>-...``).

    The hash of the whole configuration keeps searches that differ only in budget or pairs apart.
    """
    models = "-vs-".join(m.name.removeprefix("model-") for m in model_cfgs)
    digest = stable_hash({"models": [asdict(m) for m in model_cfgs], "das": asdict(cfg)}, 8)
    return f"{'mas' if len(model_cfgs) > 1 else 'das'}-{models}-{cfg.causal_model}-{cfg.intervention.label}-{digest}"


def run(model_cfgs: list[TrainConfig] | TrainConfig, cfg: DASConfig, run_dir=None, device: str = "cpu",
        progress: bool = True) -> Record:
    """Train (or reuse) the models, then fit (or reuse) the alignment; ``runs/chapter-das/<run_name>/``.

    The record's metrics hold the test IIA per direction (``iia`` is their mean), the validation curve,
    the step-0 IIA (a random alignment) and the linear-probe baseline.
    """
    model_cfgs = [model_cfgs] if isinstance(model_cfgs, TrainConfig) else list(model_cfgs)
    tasks = {(m.task, m.unk_p, m.max_count) for m in model_cfgs}
    if len(tasks) != 1:
        raise ValueError("MAS here aligns models trained on the same task (and unknown-token rate); "
                         f"got {sorted(tasks)}")
    kinds = {m.kind == "transformer" for m in model_cfgs}
    if len(kinds) != 1:
        raise ValueError("MAS between a transformer and a recurrent model needs one hook per model; "
                         "align models of the same family")
    recs = [training.run(m, run_dir, device, progress) for m in model_cfgs]
    name = run_name(model_cfgs, cfg)
    stage = StageRun(CHAPTER, name, {"models": [asdict(m) for m in model_cfgs], "das": asdict(cfg)},
                     upstream={m.name: r.key for m, r in zip(model_cfgs, recs, strict=True)}, run_dir=run_dir)
    if (rec := stage.cached()) is not None:
        return rec
    models = [training.load(m, run_dir, device) for m in model_cfgs]
    pairs = pairs_for(model_cfgs[0], cfg)
    teacher = model_cfgs[0].kind == "transformer"
    result = fit(models, pairs, cfg, device, teacher_force=teacher, progress=progress)
    train_p, _, test_p = pairs
    probe = linear_probe(source_states(models[0], train_p, cfg.intervention.hook, device), train_p.src_values,
                         source_states(models[0], test_p, cfg.intervention.hook, device), test_p.src_values,
                         train_p.value_names)
    torch.save(result.interchange.state_dict(), stage.path("alignment.pt"))
    np.savez_compressed(stage.path("test_pairs.npz"), src_values=test_p.src_values, trg_values=test_p.trg_values,
                        trg_pos=test_p.trg_pos, src_pos=test_p.src_pos, variable=test_p.variable,
                        value_names=np.array(test_p.value_names),
                        **{f"correct_{k}": v["correct"] for k, v in result.test.items()})
    first = f"valid_iia_{result.directions[0][0]}->{result.directions[0][1]}"
    metrics = {
        "iia": result.iia,
        "iia_by_direction": {k: v["iia"] for k, v in result.test.items()},
        "iia_by_variable": {k: v["iia_by_variable"] for k, v in result.test.items()},
        "token_accuracy": {k: v["token_accuracy"] for k, v in result.test.items()},
        "test_loss": {k: v["loss"] for k, v in result.test.items()},
        "iia_step0": result.curve[first][0],
        "iia_by_phase": {k: by_phase(test_p, v["correct"]) for k, v in result.test.items()},
        "probe_accuracy": probe,
        "model_accuracy": {m.name: r.metrics["valid_accuracy"] for m, r in zip(model_cfgs, recs, strict=True)},
        "n_train_pairs": len(train_p), "n_test_pairs": len(test_p),
        "steps": result.steps, "stop_reason": result.stop_reason, "fit_seconds": result.seconds,
        "curve": result.curve, "hidden_dim": int(result.interchange.mask.shape[1]),
    }
    log.info("%s: test IIA %.3f after %d steps (%s)", name, result.iia, result.steps, result.stop_reason)
    return stage.finish(metrics, success=True)


def with_intervention(cfg: DASConfig, **changes) -> DASConfig:
    """A copy of ``cfg`` with fields of its intervention changed (for sweeps: ``subspace_dim=4``)."""
    return replace(cfg, intervention=replace(cfg.intervention, **changes))
