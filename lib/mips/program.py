"""The `program` stage: emit the Python program from the regressed formulas, then verify it.

Reads ``regress``'s formulas.json and ``extract``'s network outputs on the test split (for agreement),
writes ``program.py`` and ``verdict.json``. A task is solved when the program is right on the whole test
split and on every short input sequence (see :mod:`mips.verify`). When an upstream stage failed, this stage
still finishes, unsolved, naming the stage that failed. Explained in notebooks/program.ipynb.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mips import artifacts, codegen, data, sandbox, verify
from mips.tasks import Task

log = logging.getLogger(__name__)

UPSTREAM = ("regress",)
# The stages before this one, in order: the first whose record says success=False is where a task failed.
PIPELINE = ("dataset", "search", "simplify", "extract", "regress")


@dataclass(frozen=True)
class ProgramConfig:
    """How hard the verifier checks: the exhaustive budget and the sandbox limits."""

    exhaustive_budget: int = 2**20
    cpu_seconds: int = 300
    wall_seconds: float = 600.0
    memory_mb: int = 2048

    def limits(self) -> sandbox.Limits:
        return sandbox.Limits(cpu_seconds=self.cpu_seconds, wall_seconds=self.wall_seconds,
                              memory_mb=self.memory_mb)


PRESETS = {"smoke": ProgramConfig(exhaustive_budget=2**14, cpu_seconds=60, wall_seconds=120.0),
           "full": ProgramConfig()}


def config_for(preset: str) -> ProgramConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def failed_stage(task_id: str, run_dir: Path | None = None) -> str | None:
    """The first upstream stage whose record says success=False (None if all that ran succeeded)."""
    for stage in PIPELINE:
        rec = artifacts.load_record(task_id, stage, run_dir)
        if rec is not None and not rec.success:
            return stage
    return None


def network_outputs(task_id: str, n_test: int, run_dir: Path | None = None) -> np.ndarray | None:
    """extract's rounded network outputs on the test split, or None if absent or of another split size."""
    path = artifacts.stage_dir(task_id, "extract", run_dir) / "states.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as f:
        if "y_net_test" not in f.files:
            return None
        net = f["y_net_test"]
    if len(net) != n_test:
        log.warning("%s: y_net_test has %d rows but the test split %d; skipping network agreement",
                    task_id, len(net), n_test)
        return None
    return net


def method_of(machine: dict) -> str:
    """linear / boolean / symbolic / pysr / table when one method made every formula, else mixed."""
    used = {f["method"] for f in machine["updates"] + machine["outputs"]}
    return used.pop() if len(used) == 1 else "mixed"


def _unsolved(stage: artifacts.StageRun, failed: str, why: str) -> artifacts.Record:
    metrics = {"method": None, "program_lines": 0, "test_ok": False, "exhaustive_ok": False,
               "exhaustive_length": 0, "network_agreement": None, "solved": False, "failed_stage": failed}
    artifacts.write_json(stage.path("verdict.json"), {"solved": False, "failed_stage": failed, "message": why})
    return stage.finish(metrics, success=False, message=why)


def run(task: Task, preset: str = "full", run_dir: Path | None = None,
        device: str = "cpu") -> artifacts.Record:
    """Emit program.py from formulas.json, verify it on the test split, exhaustively and against the network."""
    cfg = config_for(preset)
    reg = artifacts.require_record(task.id, "regress", run_dir)
    ext = artifacts.require_record(task.id, "extract", run_dir)
    ds = data.dataset_for(task, preset)
    stage = artifacts.StageRun(task.id, "program", asdict(cfg) | {"dataset_key": ds.key},
                               upstream={"regress": reg.key, "extract": ext.key}, run_dir=run_dir)
    if (rec := stage.cached()) is not None:
        return rec
    if not reg.success:
        failed = failed_stage(task.id, run_dir) or "regress"
        rec = artifacts.load_record(task.id, failed, run_dir)
        return _unsolved(stage, failed, f"no program: the {failed} stage failed ({rec.message if rec else ''})")
    machine = json.loads((artifacts.stage_dir(task.id, "regress", run_dir) / "formulas.json").read_text())
    try:
        source = codegen.emit(machine)
    except ValueError as exc:
        return _unsolved(stage, "regress", f"no program: {exc}")
    stage.path("program.py").write_text(source)
    net = network_outputs(task.id, len(ds.x_test), run_dir)
    verdict = verify.verify_source(source, task, ds, network_outputs=net,
                                   exhaustive_budget=cfg.exhaustive_budget, limits=cfg.limits())
    artifacts.write_json(stage.path("verdict.json"), verdict.to_dict())
    metrics = {
        "method": method_of(machine),
        "program_lines": codegen.program_lines(source),
        "outcome": verdict.outcome,
        "test_ok": verdict.test_ok,
        "test_rows": verdict.test_rows,
        "test_rows_correct": verdict.test_rows_correct,
        "exhaustive_ok": verdict.exhaustive_ok,
        "exhaustive_length": verdict.exhaustive_length,
        "exhaustive_count": verdict.exhaustive_count,
        "network_agreement": verdict.network_agreement,
        "solved": verdict.solved,
        "failed_stage": None if verdict.solved else "verify",
    }
    message = "" if verdict.solved else f"the program is wrong ({verdict.outcome}): {verdict.error or ''}".strip()
    log.info("%s: program %s (%s)", task.name, "solved" if verdict.solved else "NOT solved", verdict.outcome)
    return stage.finish(metrics, success=verdict.solved, message=message)


def load(task_id: str, run_dir: Path | None = None) -> tuple[str, dict]:
    """The emitted program's source ("" if none) and its verdict.json."""
    folder = artifacts.stage_dir(task_id, "program", run_dir)
    src = folder / "program.py"
    return (src.read_text() if src.exists() else ""), json.loads((folder / "verdict.json").read_text())
