"""The stage graph: which module runs each stage and what it reads, so any stage can be asked for directly.

Every stage module exposes ``UPSTREAM`` (stage names it reads) and
``run(task, preset="full", run_dir=None, device="cpu") -> Record``, which reuses a cached result when the
config and upstream records are unchanged. ``ensure`` runs the missing upstream stages first, so a reader
can open any stage notebook for any task and it just works.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from mips.artifacts import STAGES, Record
from mips.tasks import Task, get_task

log = logging.getLogger(__name__)

STAGE_MODULES = {
    "dataset": "mips.data",
    "search": "mips.search",
    "simplify": "mips.simplify",
    "extract": "mips.extract",
    "regress": "mips.regress",
    "program": "mips.program",
    "llm_baseline": "mips.llm",
}
PRESETS = ("smoke", "full")


def stage_module(stage: str):
    """The module implementing a stage."""
    if stage not in STAGE_MODULES:
        raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    return importlib.import_module(STAGE_MODULES[stage])


def upstream(stage: str) -> tuple[str, ...]:
    """The stages a stage reads directly."""
    return tuple(getattr(stage_module(stage), "UPSTREAM", ()))


def ancestors(stage: str) -> list[str]:
    """All stages that must have run before ``stage``, in pipeline order."""
    seen: set[str] = set()

    def visit(s: str) -> None:
        for u in upstream(s):
            if u not in seen:
                seen.add(u)
                visit(u)

    visit(stage)
    return [s for s in STAGES if s in seen]


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return preset


def run_stage(task: Task | str, stage: str, preset: str = "full", run_dir: Path | str | None = None,
              device: str = "cpu") -> Record:
    """Run one stage (its upstream records must exist)."""
    task = get_task(task) if isinstance(task, str) else task
    run_dir = Path(run_dir) if run_dir else None
    return stage_module(stage).run(task, preset=check_preset(preset), run_dir=run_dir, device=device)


def ensure(task: Task | str, stage: str, preset: str = "full", run_dir: Path | str | None = None,
           device: str = "cpu") -> Record:
    """Run every missing or stale upstream stage, then ``stage``; each reuses its cache when fresh."""
    task = get_task(task) if isinstance(task, str) else task
    for s in ancestors(stage):
        run_stage(task, s, preset, run_dir, device)
    return run_stage(task, stage, preset, run_dir, device)
