"""Datasets: deterministic arrays drawn from a task's generator, split into train/test, cached on disk.

The cache key is the task file's content hash + seed + size, so editing a task regenerates its data.
Each cache file stores a checksum of its arrays; a truncated or corrupt file is detected and rebuilt.
Explained in notebooks/dataset.ipynb.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mips.artifacts import cache_dir
from mips.tasks import Task

log = logging.getLogger(__name__)

DEFAULT_SIZE = 1_000_000
DEFAULT_SEED = 42
PRESET_SIZES = {"smoke": 20_000, "full": DEFAULT_SIZE}
FORMAT_VERSION = 1


@dataclass
class Dataset:
    """A task's rows as integer arrays shaped (n, seq_len, dim), split into a train prefix and test rest."""

    task: Task
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    seed: int
    size: int
    key: str

    def __repr__(self) -> str:
        return (f"Dataset({self.task.name}, train={len(self.x_train):,}, test={len(self.x_test):,}, "
                f"seed={self.seed}, key={self.key})")


def dataset_key(task: Task, size: int, seed: int) -> str:
    """Cache key: the task definition's hash, the seed, the size and the file format."""
    text = f"{task.name}|{task.source_hash}|{seed}|{size}|v{FORMAT_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def generate(task: Task, size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``size`` rows with the task's vectorized generator from ``np.random.default_rng(seed)``."""
    if size < 2:
        raise ValueError(f"dataset size must be at least 2, got {size}")
    x, y = task.generate(np.random.default_rng(seed), size)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def _checksum(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def _save(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    os.close(fd)
    np.savez(tmp, x=x, y=y, checksum=np.array(_checksum(x, y)))
    os.replace(tmp, path)


def _load(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """Arrays from a cache file, or None (with a warning) if it is missing, truncated or corrupt."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y, checksum = f["x"], f["y"], str(f["checksum"])
    except Exception as exc:  # any damage (zip, header, dtype) means: do not use this file
        log.warning("dataset cache %s is unreadable (%s); regenerating", path, exc)
        return None
    if _checksum(x, y) != checksum:
        log.warning("dataset cache %s fails its checksum; regenerating", path)
        return None
    return x, y


def cache_path(task: Task, size: int, seed: int) -> Path:
    return cache_dir() / "datasets" / f"{task.id}-{dataset_key(task, size, seed)}.npz"


def load_dataset(task: Task, size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED, cache: bool = True) -> Dataset:
    """The task's dataset: from the cache when valid, else generated (and cached)."""
    path = cache_path(task, size, seed)
    arrays = _load(path) if cache else None
    if arrays is None:
        arrays = generate(task, size, seed)
        if cache:
            _save(path, *arrays)
    x, y = arrays
    n_train = int(len(x) * task.split)
    return Dataset(task, x[:n_train], y[:n_train], x[n_train:], y[n_train:], seed, size,
                   dataset_key(task, size, seed))


def preset_size(preset: str) -> int:
    """Rows for a preset: ``smoke`` (small, for CI) or ``full`` (the paper's 1e6)."""
    if preset not in PRESET_SIZES:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_SIZES)}")
    return PRESET_SIZES[preset]


# ---------------------------------------------------------------------------------------------------------
# The dataset stage

UPSTREAM: tuple[str, ...] = ()


def dataset_for(task: Task, preset: str = "full") -> Dataset:
    """The dataset a preset uses (what downstream stages load)."""
    return load_dataset(task, preset_size(preset), DEFAULT_SEED)


def run(task: Task, preset: str = "full", run_dir: Path | None = None, device: str = "cpu"):
    """Build (or load) the task's dataset and record its size, key and label statistics."""
    from mips.artifacts import StageRun

    size = preset_size(preset)
    stage = StageRun(task.id, "dataset", {"size": size, "seed": DEFAULT_SEED, "task_hash": task.source_hash},
                     run_dir=run_dir)
    if (rec := stage.cached()) is not None:
        return rec
    ds = load_dataset(task, size, DEFAULT_SEED)
    values, counts = np.unique(ds.y_train, return_counts=True)
    metrics = {
        "n_train": len(ds.x_train), "n_test": len(ds.x_test), "dataset_key": ds.key,
        "y_min": int(values.min()), "y_max": int(values.max()), "n_distinct_y": len(values),
        "y_mode": int(values[counts.argmax()]), "y_mode_fraction": float(counts.max() / counts.sum()),
    }
    return stage.finish(metrics, success=True)
