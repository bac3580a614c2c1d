"""The ``search`` stage: the smallest GeneralRNN that reaches 100% accuracy on the whole test split.

Architectures are tried in the paper's order (spec §8): output depth first, then hidden depth, then hidden
size, then output width, then hidden width, i.e. the fewest layers first and, within those, the smallest
state. The original swept this order geometrically and then bisected, which assumes that success is
monotone in size; it is not (a seed can fail at H=3 and succeed at H=2). Here every candidate is tried in
order and the winner is the first one that succeeds after all earlier ones failed. To keep that affordable,
a window of consecutive candidates (all their seeds) trains as one stack (``mips.train``): when a
candidate succeeds, its other seeds and every later candidate of the window stop at once.

Every candidate tried is recorded (``trace.json``), and finished candidates are kept in a progress folder
beside the stage folder, so an interrupted search resumes without retraining them.
Explained in notebooks/search.ipynb.
"""

from __future__ import annotations

import json
import logging
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


@dataclass(frozen=True)
class SearchConfig:
    """The search space, in the paper's order, and how hard each candidate is trained.

    ``depths`` lists (output_depth, hidden_depth) pairs; ``hidden_dims`` and ``widths`` are tried for
    every depth pair (widths only where a depth is > 1). ``steps`` = 0 means the task's own step count.
    ``window`` candidates (times ``seeds`` networks) train together; ``patience`` stops a network that has
    not improved for that many steps; ``max_candidates`` caps the space and ``max_network_steps`` the
    search's total work, summed over every network trained (0 = no cap).
    """

    depths: tuple[tuple[int, int], ...] = ((1, 1), (1, 2), (2, 1), (2, 2))
    hidden_dims: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8)
    widths: tuple[int, ...] = (4, 8, 16)
    seeds: int = 3
    steps: int = 0
    batch_size: int = 256
    lr: float = 1e-3
    eval_every: int = 100
    eval_rows: int = 4096
    patience: int = 2000
    window: int = 4
    max_candidates: int = 0
    max_network_steps: int = 0
    seed: int = 0

    def __post_init__(self):
        for od, hd in self.depths:
            if od < 1 or hd < 1:
                raise ValueError(f"depths must be >= 1, got {(od, hd)}")
        if min(self.hidden_dims) < 1 or min(self.widths) < 1:
            raise ValueError("hidden_dims and widths must be >= 1")
        for name in ("seeds", "batch_size", "eval_every", "eval_rows", "window"):
            if getattr(self, name) < 1:
                raise ValueError(f"SearchConfig.{name} must be >= 1, got {getattr(self, name)}")

    def train_config(self, task: Task) -> TrainConfig:
        """How every candidate of this search trains on ``task``."""
        return TrainConfig(steps=self.steps or task.steps, batch_size=self.batch_size, lr=self.lr,
                           loss=task.loss, eval_every=self.eval_every, eval_rows=self.eval_rows,
                           patience=self.patience, data_seed=self.seed)


PRESETS = {
    # CI-sized: linear RNNs and one small ReLU depth, 1,500 steps, two seeds.
    "smoke": SearchConfig(depths=((1, 1), (1, 2)), hidden_dims=(1, 2, 3), widths=(4,), seeds=2, steps=1500,
                          batch_size=256, eval_rows=2000, patience=1000, window=3),
    # The book's: the paper's order over small networks, the task's steps, early stops, and a cap on the
    # total work so that a task no small network solves still ends in a few minutes.
    "full": SearchConfig(max_network_steps=300_000),
}


def search_config(preset: str) -> SearchConfig:
    """The search configuration of a preset (``smoke`` or ``full``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


# ---------------------------------------------------------------------------------------------------------
# The candidates, in the paper's order


def network_dims(task: Task, data: TrainData) -> tuple[int, int]:
    """(input_dim, output_dim) of the networks: the task's, or one logit per class for cross_entropy."""
    if task.loss == "cross_entropy":
        return task.input_dim, int(data.y_train.max()) + 1
    return task.input_dim, task.output_dim


def candidates(config: SearchConfig, input_dim: int, output_dim: int) -> list[RNNConfig]:
    """Every architecture of the search space, smallest first in the paper's order (od, hd, H, ow, hw)."""
    out = []
    for od, hd in sorted(set(config.depths)):
        for h in sorted(set(config.hidden_dims)):
            for ow in sorted(set(config.widths)) if od > 1 else [0]:
                for hw in sorted(set(config.widths)) if hd > 1 else [0]:
                    out.append(RNNConfig(input_dim, output_dim, h, hd, hw, od, ow))
    return out[: config.max_candidates] if config.max_candidates else out


# ---------------------------------------------------------------------------------------------------------
# What happened to each candidate


@dataclass
class Outcome:
    """One candidate architecture after training all its seeds (a row of ``trace.json``).

    ``status`` is ``succeeded`` (a seed reached 100% on the whole test split), ``failed`` (every seed ran
    out of steps, stalled or diverged), ``stopped`` (an earlier candidate of its window succeeded first) or
    ``capped`` (the search's ``max_network_steps`` ran out while it trained).
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
    window: int
    seconds: float
    network_steps: int = 0

    @property
    def finished(self) -> bool:
        """Trained to a conclusion (stopped and capped candidates were cut short)."""
        return self.status in ("succeeded", "failed")


def outcome(index: int, results: Sequence[TrainResult], window: int, seconds: float) -> Outcome:
    """Summarise the seeds of one candidate; its best seed is a success, else the most accurate."""
    best = max(results, key=lambda r: (r.success, r.test_accuracy or 0.0, r.best_eval_accuracy))
    stops = {r.stop for r in results}
    status = ("succeeded" if "success" in stops else "capped" if "capped" in stops
              else "stopped" if "stopped" in stops else "failed")
    config = results[0].member.config
    return Outcome(index=index, label=config.label(), config=asdict(config), n_params=config.n_params(),
                   status=status, seeds=[r.member.seed for r in results], stops=[r.stop for r in results],
                   steps_run=[r.steps_run for r in results],
                   best_eval_accuracy=max(r.best_eval_accuracy for r in results),
                   test_accuracy=float(best.test_accuracy or 0.0), best_seed=best.member.seed,
                   success_step=best.success_step, window=window, seconds=round(seconds, 3),
                   network_steps=sum(r.steps_run for r in results))


def curves_of(result: TrainResult) -> dict[str, np.ndarray]:
    """The training curves of one network, as arrays for ``curves.npz``."""
    return {"train_loss": result.train_loss, "eval_steps": result.eval_steps,
            "eval_accuracy": result.eval_accuracy, "eval_loss": result.eval_loss}


class Progress:
    """Finished candidates on disk (a JSON file plus each candidate's best network and curves), so that an
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

    def add(self, out: Outcome, network: RNN, curves: dict[str, np.ndarray]) -> None:
        """Record a candidate's outcome with its best network and that network's curves."""
        self.outcomes[out.index] = out
        if self.folder is None:
            self._memory[out.index] = (network, curves)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        save_model(network, self.folder / f"{out.index}.pt")
        np.savez(self.folder / f"{out.index}.npz", **curves)
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


def next_window(space: Sequence[RNNConfig], done: dict[int, Outcome], size: int) -> list[int]:
    """The next candidates to train: up to ``size`` unfinished ones in order, sharing depths (one stack).

    Candidates after a recorded success are never needed, whatever their record says.
    """
    first_success = min((i for i, o in done.items() if o.status == "succeeded"), default=len(space))
    pending = [i for i in range(first_success) if i not in done or not done[i].finished]
    if not pending:
        return []
    depth = lambda c: (c.output_depth, c.hidden_depth)
    first = space[pending[0]]
    return [i for i in pending if depth(space[i]) == depth(first)][:size]


def winner(space: Sequence[RNNConfig], done: dict[int, Outcome]) -> int | None:
    """The first candidate in order if it succeeded and all before it failed; -1 if all failed."""
    for i in range(len(space)):
        if i not in done or not done[i].finished:
            return None
        if done[i].status == "succeeded":
            return i
    return -1


def search(task: Task, data: TrainData, config: SearchConfig, device: str = "cpu",
           progress: Progress | None = None, trainer: Trainer = train_stack) -> SearchResult:
    """Try the candidates in order, a window at a time, until the first success in order is known."""
    start = time.perf_counter()
    progress = progress or Progress(None)
    space = candidates(config, *network_dims(task, data))
    train_config = config.train_config(task)
    n_windows = 1 + max((o.window for o in progress.outcomes.values()), default=-1)
    cap = config.max_network_steps
    while (win := winner(space, progress.outcomes)) is None:
        spent = sum(o.network_steps for o in progress.outcomes.values())
        if cap and spent >= cap:
            break
        window = next_window(space, progress.outcomes, config.window)
        _train_window(space, window, n_windows, data, config, train_config, device, progress, trainer,
                      cap - spent if cap else None)
        n_windows += 1
    trace = progress.ordered()
    message = ""
    if win is None:                   # the budget ran out; a network may still have reached 100% before it did
        win = next((o.index for o in trace if o.status == "succeeded"), None)
        if win is not None:
            cut = [o.label for o in trace if o.index < win and o.status == "capped"]
            message = (f"the search's budget of {cap:,} network-steps ran out; {space[win].label()} reached 100% "
                       f"on the whole test split, but {', '.join(cut)} before it in order "
                       f"{'was' if len(cut) == 1 else 'were'} cut short, so a smaller network may exist")
    if win is not None and win >= 0:
        best = progress.outcomes[win]
    else:
        best = max((o for o in trace if o.status != "stopped"), key=lambda o: (o.test_accuracy, -o.index))
        if win is None:
            done = sum(o.finished for o in trace)
            message = (f"the search's budget of {cap:,} network-steps ran out after {done} of {len(space)} "
                       f"candidates (up to {trace[-1].label}) without a network at 100% on the whole test split")
        else:
            message = (f"no architecture of the search space ({len(space)} candidates) reached 100% on the "
                       f"whole test split")
        message += f"; kept the most accurate network, {best.label} at {best.test_accuracy:.4%}"
    network, curves = progress.network(best.index)
    return SearchResult(success=win is not None and win >= 0, network=network, best=best, curves=curves,
                        trace=trace, n_candidates=len(space), seconds=time.perf_counter() - start,
                        message=message, config=config)


def _train_window(space, window, window_no, data, config, train_config, device, progress, trainer,
                  steps_left: int | None) -> None:
    """Train the window's candidates (all seeds) as one stack; record each candidate as it finishes.
    ``steps_left`` is what remains of the search's network-step budget (None: no budget)."""
    t0 = time.perf_counter()
    members = [Member(space[i], config.seed + s, tag=i) for i in window for s in range(config.seeds)]
    by_candidate: dict[int, list[TrainResult]] = {i: [] for i in window}
    log.info("window %d: %s x %d seeds", window_no, ", ".join(space[i].label() for i in window), config.seeds)

    def stop_rule(results: list[TrainResult], active: list[int], step: int) -> dict[int, str]:
        """Once a candidate succeeded, its other seeds and every later candidate are no longer needed;
        once the budget is spent, nothing runs on."""
        won = [r.member.tag for r in results if r.success]
        stop = {j: "stopped" for j in active if won and results[j].member.tag >= min(won)}
        if steps_left is not None:
            used = sum(r.steps_run for r in results if r.stop) + step * len(active)
            if used >= steps_left:
                stop |= {j: "capped" for j in active if j not in stop}
        return stop

    def on_finish(finished: list[TrainResult]) -> None:
        for r in finished:
            by_candidate[r.member.tag].append(r)
        for i, results in by_candidate.items():
            if len(results) == config.seeds and i not in progress.outcomes:
                out = outcome(i, results, window_no, time.perf_counter() - t0)
                best = next(r for r in results if r.member.seed == out.best_seed)
                progress.add(out, best.network, curves_of(best))
                log.info("  %-22s %-9s eval acc %.4f, test acc %.4f, steps %s", out.label, out.status,
                         out.best_eval_accuracy, out.test_accuracy, out.steps_run)

    trainer(members, data, train_config, device=device, stop_rule=stop_rule, on_finish=on_finish)


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
