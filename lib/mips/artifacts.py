"""Where things live on disk, and the record every stage writes.

Each stage writes ``runs/<task>/<stage>/`` with its files and a ``record.json`` (config, the keys of the
upstream records it read, metrics, success, seconds, versions). A stage folder is built under a temporary
name and renamed into place only when complete, so a killed run never leaves a half-written stage that
looks finished. A stage whose config and upstream keys are unchanged is reused, not recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RECORD = "record.json"

# The pipeline's stages, in order. The same word names the notebook, the runs/ folder and Record.stage.
STAGES = ("dataset", "search", "simplify", "extract", "regress", "program", "llm_baseline")


def project_root() -> Path:
    """The checkout that holds ``tasks/`` and ``notebooks/``: ``MIPS_HOME``, else the package's repo."""
    if os.environ.get("MIPS_HOME"):
        return Path(os.environ["MIPS_HOME"]).resolve()
    here = Path(__file__).resolve().parents[2]
    if (here / "tasks").is_dir():
        return here
    return Path.cwd()


def runs_dir() -> Path:
    """Root of stage artifacts: ``MIPS_RUNS`` or ``<project>/runs``."""
    return Path(os.environ.get("MIPS_RUNS", project_root() / "runs"))


def cache_dir() -> Path:
    """Root of regenerable caches (datasets): ``MIPS_CACHE`` or ``<project>/.cache``."""
    return Path(os.environ.get("MIPS_CACHE", project_root() / ".cache"))


def stable_hash(obj: Any, n: int = 16) -> str:
    """A short sha256 of a JSON-able object (keys sorted), used as a cache key."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=_json_default)
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def versions() -> dict[str, str]:
    """Versions of the packages that decide a stage's numbers."""
    import platform

    import numpy

    out = {"python": platform.python_version(), "numpy": numpy.__version__}
    with contextlib.suppress(ImportError):
        import torch

        out["torch"] = torch.__version__
    return out


@dataclass
class Record:
    """What a stage did: its config, the upstream records it read, its metrics and whether it succeeded."""

    stage: str
    task: str
    key: str
    config: dict
    upstream: dict[str, str] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    success: bool = False
    message: str = ""
    seconds: float = 0.0
    created: str = ""
    versions: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    files: dict = field(default_factory=dict)    # sha256 of every file the stage wrote, to detect damage

    @classmethod
    def load(cls, path: Path) -> Record:
        data = json.loads(Path(path).read_text())
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def file_digest(path: Path) -> str | None:
    """sha256 of a file's bytes (None if it is missing)."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except (FileNotFoundError, IsADirectoryError):
        return None


def stage_dir(task_id: str, stage: str, run_dir: Path | None = None) -> Path:
    """The folder of one task's stage: ``<run_dir>/<task_id>/<stage>``."""
    return Path(run_dir or runs_dir()) / task_id / stage


def load_record(task_id: str, stage: str, run_dir: Path | None = None) -> Record | None:
    """The finished record of a stage, or None when the stage has not completed."""
    path = stage_dir(task_id, stage, run_dir) / RECORD
    if not path.exists():
        return None
    try:
        return Record.load(path)
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        log.warning("ignoring unreadable record %s: %s", path, exc)
        return None


def require_record(task_id: str, stage: str, run_dir: Path | None = None) -> Record:
    """The upstream record a stage needs; a clear error says which stage to run first."""
    rec = load_record(task_id, stage, run_dir)
    if rec is None:
        raise FileNotFoundError(
            f"stage {stage!r} has not been run for task {task_id!r} (no {stage_dir(task_id, stage, run_dir)}/"
            f"{RECORD}); run `mips run --tasks {task_id} --stages {stage}` first")
    return rec


class StageRun:
    """One execution of a stage for a task: a scratch folder that becomes the stage folder on ``finish``.

    >>> run = StageRun("sum_all", "search", config, upstream={"dataset": rec.key})
    >>> if (rec := run.cached()) is None:
    ...     torch.save(model, run.path("model.pt")); rec = run.finish(metrics, success=True)
    """

    def __init__(self, task_id: str, stage: str, config: dict, upstream: dict[str, str] | None = None,
                 run_dir: Path | None = None):
        self.task_id, self.stage = task_id, stage
        self.config = config
        self.upstream = dict(upstream or {})
        self.final = stage_dir(task_id, stage, run_dir)
        self.key = stable_hash({"stage": stage, "task": task_id, "config": config, "upstream": self.upstream})
        self._scratch: Path | None = None
        self._scratch_lock = threading.Lock()   # threads of one run (e.g. concurrent conversations) share it
        self._start = time.time()

    def cached(self) -> Record | None:
        """The existing record if it was made from the same config and upstream records and its files are
        intact (a missing or altered file means the stage is computed again)."""
        rec = load_record(self.task_id, self.stage, self.final.parent.parent)
        if rec is None or rec.key != self.key:
            return None
        damaged = [name for name, digest in rec.files.items() if file_digest(self.final / name) != digest]
        if damaged:
            log.warning("%s: %s missing or changed since the stage wrote them; computing the stage again",
                        self.final, ", ".join(damaged))
            return None
        return rec

    @property
    def dir(self) -> Path:
        """The scratch folder this run writes into (created on first use, once even across threads)."""
        with self._scratch_lock:
            if self._scratch is None:
                self.final.parent.mkdir(parents=True, exist_ok=True)
                scratch = self.final.parent / f".{self.stage}.tmp-{uuid.uuid4().hex[:8]}"
                scratch.mkdir()
                self._scratch = scratch
            return self._scratch

    def path(self, name: str) -> Path:
        """A file inside the scratch folder."""
        return self.dir / name

    def finish(self, metrics: dict, success: bool, message: str = "") -> Record:
        """Write the record and move the scratch folder into place atomically."""
        files = {str(f.relative_to(self.dir)): file_digest(f) for f in sorted(self.dir.rglob("*"))
                 if f.is_file() and f.name != RECORD}
        rec = Record(stage=self.stage, task=self.task_id, key=self.key, config=self.config,
                     upstream=self.upstream, metrics=metrics, success=bool(success), message=message,
                     seconds=round(time.time() - self._start, 3),
                     created=time.strftime("%Y-%m-%dT%H:%M:%S"), versions=versions(), files=files)
        write_json(self.dir / RECORD, asdict(rec))
        trash = self.final.parent / f".{self.stage}.old-{uuid.uuid4().hex[:8]}"
        if self.final.exists():
            os.replace(self.final, trash)
        os.replace(self.dir, self.final)
        shutil.rmtree(trash, ignore_errors=True)
        self._scratch = None
        return rec

    def cached_or_compute(self, compute) -> Record:
        """The cached record, or ``compute(self) -> metrics`` finished as a success; on any error (or an
        interrupt) the scratch folder is removed and the error re-raised, so nothing half-written remains."""
        if (rec := self.cached()) is not None:
            return rec
        try:
            metrics = compute(self)
        except BaseException:
            self.abandon()
            raise
        return self.finish(metrics, success=True)

    def abandon(self) -> None:
        """Remove the scratch folder of a failed run."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def clean_scratch(task_dir: Path) -> None:
    """Remove leftovers of killed stage runs (``.<stage>.tmp-*`` and ``.<stage>.old-*``)."""
    for p in Path(task_dir).glob(".*.tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in Path(task_dir).glob(".*.old-*"):
        shutil.rmtree(p, ignore_errors=True)
