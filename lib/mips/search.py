"""The ``search`` stage: the smallest GeneralRNN that reaches 100% accuracy on the whole test split.

The space is ordered simplest first: output depth, then hidden depth (the fewest layers first), then the
**representation** (how x_t enters and how y_t is read: integers → regression, one-hot → regression,
integers → classification, one-hot → classification; the original code's ``vectorize_input`` and
``cross_entropy`` options), then hidden size, then widths. One-hot inputs are tried only for small input
alphabets (of more than two values: for bits they span what the integer does) and classification heads
only for small output alphabets.

Consecutive candidates that share depths and representation form a **group**, trained as one stack
(``mips.train``) with **successive halving**: every (candidate, seed) gets a short probe; at each rung the
best 1/η of the networks still running go on for η times as many steps, up to the task's step count.
When a network reaches 100% on the whole test split, every later candidate stops at once. The first group
(in order) with a success gives the winner: its first succeeding candidate. So the result is still
"smallest first", but a hopeless group costs a few probes instead of full training for every candidate.
The original swept a geometric sequence and bisected, assuming success is monotone in size; it is not.

Every candidate tried is recorded (``trace.json``), and finished groups are kept in a progress folder
beside the stage folder, so an interrupted search resumes without retraining them.
Explained in notebooks/search.ipynb.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mips import data as datamod
from mips.artifacts import Record, StageRun, require_record, stage_dir, write_json
from mips.models import RNN, RNNConfig, load_model, save_model
from mips.tasks import Task
from mips.train import Member, TrainConfig, TrainData, TrainResult, train_stack

log = logging.getLogger(__name__)

UPSTREAM = ("dataset",)

ENCODINGS = ("integer", "one-hot")
HEADS = ("regression", "classification")


@dataclass(frozen=True)
class SearchConfig:
    """The search space, in order, and how hard each candidate is trained.

    ``depths`` lists (output_depth, hidden_depth) pairs; ``hidden_dims`` are tried for every depth pair and
    representation, and ``widths`` wherever a depth is > 1 (with both depths > 1 the two widths are equal).
    Only when that whole space fails does the search widen: ``wide_hidden_dims`` with ``wide_widths``, again
    for every depth pair and representation (empty: never widen).
    ``heads`` and ``encodings`` give the representations, tried head-major in the listed order;
    ``max_alphabet`` bounds the alphabets that get one-hot inputs or a classification head.
    ``steps`` = 0 means the task's own step count. Successive halving: ``probe_steps`` is the first rung,
    each later rung keeps the best 1/``eta`` of the running networks for ``eta`` times the steps, and a
    group whose best error and loss have not fallen by ``min_rung_gain`` (relative) since the last rung
    stops; a group whose best network came within ``near_miss`` of 100% trains its pruned smaller
    candidates again without halving;
    ``patience`` stops a network that has not improved for that many steps. ``max_candidates`` caps the
    space and ``max_network_steps`` the search's total work, summed over every network (0 = no cap).
    """

    depths: tuple[tuple[int, int], ...] = ((1, 1), (1, 2), (2, 1), (2, 2))
    hidden_dims: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8)
    widths: tuple[int, ...] = (16,)
    wide_hidden_dims: tuple[int, ...] = (12, 16, 24, 32)
    wide_widths: tuple[int, ...] = (64,)
    heads: tuple[str, ...] = HEADS
    encodings: tuple[str, ...] = ENCODINGS
    max_alphabet: int = 32
    seeds: int = 2
    steps: int = 0
    probe_steps: int = 400
    eta: int = 3
    min_rung_gain: float = 0.1
    near_miss: float = 0.99
    batch_size: int = 256
    lr: float = 1e-3
    eval_every: int = 100
    eval_rows: int = 4096
    patience: int = 2000
    max_candidates: int = 0
    max_network_steps: int = 0
    seed: int = 0
    method_version: int = 5          # bumped when the method changes, so cached stage folders are redone

    def __post_init__(self):
        for od, hd in self.depths:
            if od < 1 or hd < 1:
                raise ValueError(f"depths must be >= 1, got {(od, hd)}")
        if min(self.hidden_dims) < 1 or min(self.widths) < 1 or min(self.wide_hidden_dims + self.wide_widths,
                                                                     default=1) < 1:
            raise ValueError("hidden_dims and widths must be >= 1")
        for name in ("seeds", "batch_size", "eval_every", "eval_rows", "probe_steps", "eta"):
            if getattr(self, name) < 1:
                raise ValueError(f"SearchConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name, allowed in (("heads", HEADS), ("encodings", ENCODINGS)):
            bad = set(getattr(self, name)) - set(allowed)
            if bad or not getattr(self, name):
                raise ValueError(f"SearchConfig.{name} takes some of {', '.join(allowed)}; got {getattr(self, name)}")

    def train_config(self, task: Task) -> TrainConfig:
        """How every candidate of this search trains on ``task``."""
        return TrainConfig(steps=self.steps or task.steps, batch_size=self.batch_size, lr=self.lr,
                           loss="log" if task.loss == "cross_entropy" else task.loss,
                           eval_every=self.eval_every, eval_rows=self.eval_rows,
                           patience=self.patience, data_seed=self.seed)

    def rungs(self, steps: int) -> list[int]:
        """The steps at which successive halving keeps the best 1/eta (multiples of ``eval_every``)."""
        out, r = [], self.probe_steps
        while r < steps:
            out.append(math.ceil(r / self.eval_every) * self.eval_every)
            r *= self.eta
        return out if self.eta > 1 else []


PRESETS = {
    # CI-sized: linear RNNs and one small ReLU depth, 1,500 steps, two seeds, integer → regression only.
    "smoke": SearchConfig(depths=((1, 1), (1, 2)), hidden_dims=(1, 2, 3), widths=(4,), wide_hidden_dims=(),
                          heads=("regression",), encodings=("integer",), seeds=2, steps=1500, batch_size=256,
                          eval_rows=2000, patience=1000, probe_steps=500),
    # The book's: the whole space in order with successive halving, the task's steps, and a cap on the
    # total work so that a task no network of the space solves still ends in a few minutes.
    "full": SearchConfig(max_network_steps=600_000),
}


def search_config(preset: str) -> SearchConfig:
    """The search configuration of a preset (``smoke`` or ``full``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


# ---------------------------------------------------------------------------------------------------------
# The candidates, in order

Representation = tuple[tuple[int, ...], tuple[int, ...]]   # (input_alphabet, output_alphabet); () = integers


def output_alphabet(data: TrainData) -> tuple[int, ...]:
    """Every target value of the split (a classification head needs one logit for each)."""
    values = np.union1d(data.y_train.unique().cpu().numpy(), data.y_test.unique().cpu().numpy())
    return tuple(int(v) for v in values)


def representations(config: SearchConfig, task: Task, data: TrainData) -> list[Representation]:
    """The (input encoding, output head) pairs worth trying on this task, in the configured order.

    One-hot inputs need an input alphabet of 3..max_alphabet values (for two values a one-hot vector is an
    affine function of the integer); a classification head needs one output dim and 2..max_alphabet values.
    A task whose loss is ``cross_entropy`` gets classification heads only.
    """
    inputs = tuple(sorted(int(v) for v in task.input_values))
    outputs = output_alphabet(data)
    heads = ("classification",) if task.loss == "cross_entropy" else config.heads
    reps = []
    for head in heads:
        if head == "classification" and not (task.output_dim == 1 and 2 <= len(outputs) <= config.max_alphabet):
            continue
        for enc in config.encodings:
            if enc == "one-hot" and not 2 < len(inputs) <= config.max_alphabet:
                continue
            reps.append((inputs if enc == "one-hot" else (), outputs if head == "classification" else ()))
    if not reps:
        raise ValueError(f"no representation of the search space fits {task.name}: heads {heads}, "
                         f"encodings {config.encodings}, {len(outputs)} output values")
    return reps


def candidates(config: SearchConfig, input_dim: int, output_dim: int,
               reps: Sequence[Representation] = (((), ()),)) -> list[RNNConfig]:
    """Every architecture of the search space, simplest first: (od, hd, representation, H, ow, hw), then the
    same order over the wide space."""
    out = []
    spaces = [(config.hidden_dims, config.widths)]
    if config.wide_hidden_dims:
        spaces.append((config.wide_hidden_dims, config.wide_widths))
    for hidden_dims, width_set in spaces:
        widths = sorted(set(width_set))
        for od, hd in sorted(set(config.depths)):
            for ins, outs in reps:
                for h in sorted(set(hidden_dims)):
                    if od > 1 and hd > 1:
                        pairs = [(w, w) for w in widths]
                    else:
                        pairs = [(ow, hw) for ow in (widths if od > 1 else [0])
                                 for hw in (widths if hd > 1 else [0])]
                    out += [RNNConfig(input_dim, output_dim, h, hd, hw, od, ow, ins, outs) for ow, hw in pairs]
    return out[: config.max_candidates] if config.max_candidates else out


def groups(space: Sequence[RNNConfig]) -> list[list[int]]:
    """Runs of consecutive candidates that share depths and representation (each trains as one stack)."""
    key = lambda c: (c.output_depth, c.hidden_depth, c.input_alphabet, c.output_alphabet)
    out: list[list[int]] = []
    for i, c in enumerate(space):
        if out and key(space[out[-1][0]]) == key(c):
            out[-1].append(i)
        else:
            out.append([i])
    return out


# ---------------------------------------------------------------------------------------------------------
# What happened to each candidate


@dataclass
class Outcome:
    """One candidate architecture after training all its seeds (a row of ``trace.json``).

    ``status`` is ``succeeded`` (a seed reached 100% on the whole test split), ``failed`` (every seed ran
    out of steps, stalled or diverged), ``pruned`` (successive halving dropped its seeds for less promising
    ones), ``stopped`` (an earlier candidate of its group succeeded first) or ``capped`` (the search's
    ``max_network_steps`` ran out while it trained). ``group`` numbers the stack it trained in.
    """

    index: int
    label: str
    config: dict
    n_params: int
    status: str
    seeds: list[int]
    stops: list[str]
    steps_run: list[int]
    best_eval_accuracy: float
    test_accuracy: float
    best_seed: int
    success_step: int | None
    group: int
    seconds: float
    network_steps: int = 0
    representation: str = "integer → regression"

    @property
    def finished(self) -> bool:
        """Trained to a conclusion (stopped and capped candidates were cut short)."""
        return self.status in ("succeeded", "failed", "pruned")


STATUS_ORDER = ("success", "capped", "stopped", "pruned")


def outcome(index: int, results: Sequence[TrainResult], group: int, seconds: float) -> Outcome:
    """Summarise the seeds of one candidate; its best seed is a success, else the most accurate."""
    best = max(results, key=lambda r: (r.success, r.test_accuracy or 0.0, r.best_eval_accuracy))
    stops = {r.stop for r in results}
    status = next((("succeeded" if s == "success" else s) for s in STATUS_ORDER if s in stops), "failed")
    config = results[0].member.config
    return Outcome(index=index, label=config.label(), config=asdict(config), n_params=config.n_params(),
                   status=status, seeds=[r.member.seed for r in results], stops=[r.stop for r in results],
                   steps_run=[r.steps_run for r in results],
                   best_eval_accuracy=max(r.best_eval_accuracy for r in results),
                   test_accuracy=float(best.test_accuracy or 0.0), best_seed=best.member.seed,
                   success_step=best.success_step, group=group, seconds=round(seconds, 3),
                   network_steps=sum(r.steps_run for r in results), representation=config.representation())


def curves_of(result: TrainResult) -> dict[str, np.ndarray]:
    """The training curves of one network, as arrays for ``curves.npz``."""
    return {"train_loss": result.train_loss, "eval_steps": result.eval_steps,
            "eval_accuracy": result.eval_accuracy, "eval_loss": result.eval_loss}


class Progress:
    """Finished groups on disk (a JSON file plus each candidate's best network and curves), so that an
    interrupted search resumes where it stopped. ``folder`` is None for a search kept in memory only."""

    def __init__(self, folder: Path | None):
        self.folder = Path(folder) if folder is not None else None
        self.outcomes: dict[int, Outcome] = {}
        self._memory: dict[int, tuple[RNN, dict]] = {}
        if self.folder is not None and (self.folder / "progress.json").exists():
            try:
                rows = json.loads((self.folder / "progress.json").read_text())
                self.outcomes = {row["index"]: Outcome(**row) for row in rows}
            except (json.JSONDecodeError, TypeError, KeyError) as exc:
                log.warning("ignoring unreadable search progress in %s (%s)", self.folder, exc)
            if self.outcomes:
                log.info("resuming the search: %d candidates already tried", len(self.outcomes))

    def add(self, rows: Sequence[tuple[Outcome, RNN, dict[str, np.ndarray]]]) -> None:
        """Record a group's outcomes, each with its best network and that network's curves."""
        for out, network, curves in rows:
            self.outcomes[out.index] = out
            if self.folder is None:
                self._memory[out.index] = (network, curves)
                continue
            self.folder.mkdir(parents=True, exist_ok=True)
            save_model(network, self.folder / f"{out.index}.pt")
            np.savez(self.folder / f"{out.index}.npz", **curves)
        if self.folder is not None and rows:
            write_json(self.folder / "progress.json", [asdict(o) for o in self.ordered()])

    def network(self, index: int) -> tuple[RNN, dict[str, np.ndarray]]:
        """The best network of a recorded candidate and its curves."""
        if self.folder is None:
            return self._memory[index]
        with np.load(self.folder / f"{index}.npz") as f:
            curves = {k: f[k] for k in f.files}
        return load_model(self.folder / f"{index}.pt"), curves

    def ordered(self) -> list[Outcome]:
        """The recorded candidates in the search's order."""
        return [self.outcomes[i] for i in sorted(self.outcomes)]

    def clear(self) -> None:
        """Delete the progress folder (the stage folder now holds everything)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# The search


@dataclass
class SearchResult:
    """The winner (or the best network when nothing succeeded) and every candidate tried."""

    success: bool
    network: RNN
    best: Outcome
    curves: dict[str, np.ndarray]
    trace: list[Outcome]
    n_candidates: int
    seconds: float
    message: str = ""
    config: SearchConfig = field(default_factory=SearchConfig)


Trainer = Callable[..., list[TrainResult]]


def search_space(task: Task, data: TrainData, config: SearchConfig) -> list[RNNConfig]:
    """The candidates of ``config`` for ``task``, in order."""
    return candidates(config, task.input_dim, task.output_dim, representations(config, task, data))


def search(task: Task, data: TrainData, config: SearchConfig, device: str = "cpu",
           progress: Progress | None = None, trainer: Trainer = train_stack) -> SearchResult:
    """Train the groups in order until one has a success (or the budget runs out)."""
    start = time.perf_counter()
    progress = progress or Progress(None)
    space = search_space(task, data, config)
    train_config = config.train_config(task)
    cap = config.max_network_steps
    win: int | None = -1                      # -1: every group failed; None: the budget ran out first
    for g, members in enumerate(groups(space)):
        if not all(i in progress.outcomes for i in members):
            spent = sum(o.network_steps for o in progress.outcomes.values())
            if cap and spent >= cap:
                win = None
                break
            _train_group(space, members, g, data, config, train_config, device, progress, trainer,
                         cap - spent if cap else None)
        group = [progress.outcomes[i] for i in members]
        if any(o.status == "succeeded" for o in group) or max(o.test_accuracy for o in group) >= config.near_miss:
            hit = _second_chance(space, members, g, data, config, train_config, device, progress, trainer)
            if hit is not None:
                win = hit
                break
            group = [progress.outcomes[i] for i in members]
        if any(o.status == "capped" for o in group):
            win = None
            break
    trace = progress.ordered()
    if win is not None and win >= 0:
        best, message = progress.outcomes[win], ""
        cut = [o.label for o in trace if o.index < win and o.status == "capped"]
        if cut:
            message = (f"the search's budget of {cap:,} network-steps ran out; {best.label} reached 100% "
                       f"on the whole test split, but {', '.join(cut)} before it in order "
                       f"{'was' if len(cut) == 1 else 'were'} cut short, so a smaller network may exist")
    else:
        best = max((o for o in trace if o.status != "stopped"), key=lambda o: (o.test_accuracy, -o.index))
        if win is None:
            message = (f"the search's budget of {cap:,} network-steps ran out after "
                       f"{sum(o.finished for o in trace)} of {len(space)} candidates (up to {trace[-1].label}) "
                       f"without a network at 100% on the whole test split")
        else:
            message = (f"no architecture of the search space ({len(space)} candidates) reached 100% on the "
                       f"whole test split")
        message += f"; kept the most accurate network, {best.label} at {best.test_accuracy:.4%}"
    network, curves = progress.network(best.index)
    return SearchResult(success=win is not None and win >= 0, network=network, best=best, curves=curves,
                        trace=trace, n_candidates=len(space), seconds=time.perf_counter() - start,
                        message=message, config=config)


def _second_chance(space, members, group_no, data, config, train_config, device, progress, trainer) -> int | None:
    """Halving may have dropped candidates before they could succeed. Train those pruned before the
    group's first success (or, in a group that came within ``near_miss`` of 100%, before its most
    accurate candidate) to a conclusion without halving; return the first success, if any."""
    def first() -> int | None:
        return next((i for i in members if progress.outcomes[i].status == "succeeded"), None)

    upto = first()
    if upto is None:
        upto = max(members, key=lambda i: (progress.outcomes[i].test_accuracy, -i))
    pruned = [i for i in members if i < upto and progress.outcomes[i].status == "pruned"]
    if pruned:
        cap = config.max_network_steps
        spent = sum(o.network_steps for o in progress.outcomes.values())
        _train_group(space, pruned, group_no, data, config, train_config, device, progress, trainer,
                     cap - spent if cap else None, halving=False)
    return first()


def halving_stop_rule(config: SearchConfig, steps: int, steps_left: int | None):
    """The group's stop rule.

    - Once a candidate succeeds, every later candidate stops; the smaller ones go on, unpruned, until they
      succeed or stall (patience): whether a smaller network also succeeds is the question left.
    - Before that, at each rung: a group whose best error and best loss have both not fallen by
      ``min_rung_gain`` since the last rung has plateaued and stops (a delay line's loss falls long before
      its rounded outputs become right); otherwise the best 1/eta of the running networks (most accurate,
      then lowest loss) go on, and at the first rung also every network no smaller-or-equal one beats.
      (Candidates smaller than the winner that were pruned get a second chance without halving: see
      ``search``.)
    - Once the search's budget is spent, everything still running is capped.
    """
    rungs = config.rungs(steps)
    last_error: list[tuple[float, float]] = []      # the group's best (error, loss) at each rung so far

    def halve(results: list[TrainResult], running: list[int]) -> dict[int, str]:
        error = (1.0 - max(r.best_eval_accuracy for r in results), min(r.best_eval_loss for r in results))
        if last_error and all(now > before * (1.0 - config.min_rung_gain)
                              for now, before in zip(error, last_error[-1], strict=True)):
            return {j: "plateau" for j in running}
        score = {j: (results[j].best_eval_accuracy, -results[j].best_eval_loss) for j in running}
        ranked = sorted(running, key=lambda j: (score[j], -results[j].member.tag, -j), reverse=True)
        keep = set(ranked[: math.ceil(len(running) / config.eta)])
        if not last_error:                           # the first rung: also every network no smaller one beats
            keep |= {j for j in running if not any(
                results[k].member.tag <= results[j].member.tag and score[k] > score[j] for k in running)}
        last_error.append(error)
        return {j: "pruned" for j in running if j not in keep}

    def stop_rule(results: list[TrainResult], active: list[int], step: int) -> dict[int, str]:
        won = [r.member.tag for r in results if r.success]
        stop = {j: "stopped" for j in active if won and results[j].member.tag >= min(won)}
        running = [j for j in active if j not in stop]
        if not won and step in rungs and running:
            stop |= halve(results, running)
        if steps_left is not None:
            used = sum(r.steps_run for r in results if r.stop) + step * len(active)
            if used >= steps_left:
                stop |= {j: "capped" for j in active if j not in stop}
        return stop

    return stop_rule


def _train_group(space, members, group_no, data, config, train_config, device, progress, trainer,
                 steps_left: int | None, halving: bool = True) -> None:
    """Train one group's candidates (all seeds) as one stack with successive halving (or without, for a
    second chance); record the group. ``steps_left`` is what remains of the search's network-step budget
    (None: no budget)."""
    t0 = time.perf_counter()
    nets = [Member(space[i], config.seed + s, tag=i) for i in members for s in range(config.seeds)]
    log.info("group %d: %s, %s, %d candidates x %d seeds", group_no, space[members[0]].representation(),
             f"depths {space[members[0]].output_depth}/{space[members[0]].hidden_depth}", len(members),
             config.seeds)
    rule_config = config if halving else dataclasses.replace(config, probe_steps=train_config.steps + 1)
    results = trainer(nets, data, train_config, device=device,
                      stop_rule=halving_stop_rule(rule_config, train_config.steps, steps_left))
    rows = []
    for i in members:
        mine = [r for r in results if r.member.tag == i]
        out = outcome(i, mine, group_no, time.perf_counter() - t0)
        best = next(r for r in mine if r.member.seed == out.best_seed)
        rows.append((out, best.network, curves_of(best)))
        log.info("  %-26s %-9s eval acc %.4f, test acc %.4f, steps %s", out.label, out.status,
                 out.best_eval_accuracy, out.test_accuracy, out.steps_run)
    progress.add(rows)


# ---------------------------------------------------------------------------------------------------------
# The stage


def progress_folder(task: Task, key: str, run_dir: Path | None) -> Path:
    """Where an unfinished search keeps its finished candidates: beside the stage folder, by stage key."""
    return stage_dir(task.id, "search", run_dir).parent / f".search-progress-{key}"


def run(task: Task, preset: str = "full", run_dir: Path | None = None, device: str = "cpu") -> Record:
    """The ``search`` stage: write the winner (``model.pt``), ``trace.json`` and ``curves.npz``."""
    config = search_config(preset)
    dataset_rec = require_record(task.id, "dataset", run_dir)
    key = datamod.dataset_key(task, datamod.preset_size(preset), datamod.DEFAULT_SEED)
    if dataset_rec.metrics.get("dataset_key") != key:
        raise ValueError(f"the dataset stage of {task.id} was run for another preset or task version; run "
                         f"`mips run --tasks {task.id} --stages dataset --preset {preset}` first")
    stage = StageRun(task.id, "search", asdict(config) | {"preset": preset, "dataset_key": key},
                     upstream={"dataset": dataset_rec.key}, run_dir=run_dir)
    if (rec := stage.cached()) is not None:
        return rec
    progress = Progress(progress_folder(task, stage.key, run_dir))
    try:
        data = TrainData.from_dataset(datamod.dataset_for(task, preset), device)
        result = search(task, data, config, device, progress)
        save_model(result.network.cpu(), stage.path("model.pt"))
        write_json(stage.path("trace.json"), [asdict(o) for o in result.trace])
        np.savez(stage.path("curves.npz"), **result.curves)
    except BaseException:
        stage.abandon()               # the progress folder stays: the next run resumes from it
        raise
    rec = stage.finish(search_metrics(result), success=result.success, message=result.message)
    progress.clear()
    return rec


def search_metrics(result: SearchResult) -> dict:
    """The record's numbers: the chosen architecture, its size and accuracy, and what the search cost."""
    c, best = result.network.config, result.best
    return {
        "architecture": c.label(), "hidden_dim": c.hidden_dim, "hidden_depth": c.hidden_depth,
        "hidden_width": c.canonical().hidden_width, "output_depth": c.output_depth,
        "output_width": c.canonical().output_width, "n_params": best.n_params,
        "steps": best.success_step if best.success_step is not None else max(best.steps_run),
        "test_accuracy": best.test_accuracy, "seed": best.best_seed, "is_linear": c.is_linear,
        "n_configs_tried": len(result.trace),
        "n_configs_failed": sum(o.status == "failed" for o in result.trace),
        "n_configs_stopped": sum(o.status == "stopped" for o in result.trace),
        "n_configs_pruned": sum(o.status == "pruned" for o in result.trace),
        "encoding": c.encoding, "head": c.head,
        "budget_exhausted": any(o.status == "capped" for o in result.trace),
        "n_candidates": result.n_candidates, "network_steps": sum(o.network_steps for o in result.trace),
        "wall_seconds": round(result.seconds, 3),
    }


@dataclass
class SearchArtifacts:
    """What the search stage wrote for a task, loaded back: its record, trace, winner and curves."""

    record: Record
    trace: list[Outcome]
    network: RNN
    curves: dict[str, np.ndarray]


def load_artifacts(task: Task, run_dir: Path | None = None, device: str = "cpu") -> SearchArtifacts:
    """Read ``runs/<task>/search/`` (the stage must have run)."""
    record = require_record(task.id, "search", run_dir)
    folder = stage_dir(task.id, "search", run_dir)
    trace = [Outcome(**row) for row in json.loads((folder / "trace.json").read_text())]
    with np.load(folder / "curves.npz") as f:
        curves = {k: f[k] for k in f.files}
    return SearchArtifacts(record, trace, load_model(folder / "model.pt", device), curves)
