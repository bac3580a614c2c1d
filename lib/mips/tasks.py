"""Task registry: one small Python file per algorithmic sequence task, discovered at run time.

A task file defines ``TASK = Task(...)``: its paper name, input/output dims, input alphabet, sequence
length, a vectorized ``generate(rng, n) -> (x, y)`` and a plain-Python ``reference(xs) -> ys``.
Adding a task is adding a file to ``tasks/`` (or to a folder named by ``--tasks-dir`` / ``MIPS_TASKS_DIR``).
Explained in notebooks/dataset.ipynb.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

Generator = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]
Reference = Callable[[list], list]

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


class TaskError(ValueError):
    """A task name or a task file a user gave is wrong; the message says what to do."""


@dataclass(frozen=True)
class Task:
    """An algorithmic sequence task: inputs x (n, seq_len, input_dim) -> targets y (n, seq_len, output_dim).

    ``input_values`` is the alphabet of one input coordinate (used for exhaustive verification and by the
    LLM prompt); ``generate`` draws i.i.d. rows from the task's training distribution with a numpy RNG and
    returns integer arrays shaped (n, seq_len, input_dim) and (n, seq_len, output_dim).
    ``reference`` maps one input sequence to its outputs with plain loops, straight from the definition:
    elements are ints when the dim is 1, tuples otherwise (the same convention as synthesized programs).
    """

    name: str
    description: str
    input_dim: int
    output_dim: int
    seq_len: int
    input_values: tuple[int, ...]
    generate: Generator = field(repr=False)
    reference: Reference = field(repr=False)
    split: float = 0.9
    steps: int = 10_000
    loss: str = "log"
    origin: str = ""
    paper_index: int = 0
    column_vector: bool = False
    quirk: str = ""
    source_file: str = field(default="", compare=False)
    source_hash: str = field(default="", compare=False)

    @property
    def id(self) -> str:
        """The snake_case file name: what folders and URLs use."""
        return Path(self.source_file).stem if self.source_file else self.name.lower()

    @property
    def domain(self) -> str:
        """The input alphabet as a short human string, e.g. ``[0, 100)`` or ``{0, 1}``."""
        lo, hi = min(self.input_values), max(self.input_values)
        if len(self.input_values) == 2:
            return f"{{{lo}, {hi}}}"
        return f"[{lo}, {hi}]" if hi - lo + 1 == len(self.input_values) else str(self.input_values)

    def validate(self) -> None:
        """Check the metadata and one small generated batch; raise TaskError naming what is wrong."""
        where = self.source_file or self.name
        problems = []
        if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", self.name):
            problems.append(f"name {self.name!r} must be letters, digits and underscores")
        for attr in ("input_dim", "output_dim", "seq_len", "steps"):
            if not isinstance(getattr(self, attr), int) or getattr(self, attr) < 1:
                problems.append(f"{attr} must be a positive int, got {getattr(self, attr)!r}")
        if not 0 < self.split < 1:
            problems.append(f"split must be in (0, 1), got {self.split!r}")
        if self.loss not in ("log", "mse", "cross_entropy"):
            problems.append(f"loss must be 'log', 'mse' or 'cross_entropy', got {self.loss!r}")
        if not self.input_values:
            problems.append("input_values must list the input alphabet")
        if not callable(self.generate) or not callable(self.reference):
            problems.append("generate and reference must be functions")
        if problems:
            raise TaskError(f"{where}: " + "; ".join(problems))
        x, y = self.generate(np.random.default_rng(0), 4)
        want_x, want_y = (4, self.seq_len, self.input_dim), (4, self.seq_len, self.output_dim)
        if x.shape != want_x or y.shape != want_y:
            raise TaskError(f"{where}: generate(rng, 4) returned shapes x{x.shape}, y{y.shape}; "
                            f"expected x{want_x}, y{want_y}")
        if not (np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer)):
            raise TaskError(f"{where}: generate must return integer arrays, got {x.dtype}, {y.dtype}")
        outside = sorted(set(np.unique(x).tolist()) - set(self.input_values))
        if outside:
            raise TaskError(f"{where}: generate(rng, 4) produced inputs {outside[:5]} outside input_values; "
                            f"input_values must list every value an input can take")


# ---------------------------------------------------------------------------------------------------------
# Converting between arrays and the Python sequences that references and programs read and write.


def to_sequence(row: np.ndarray) -> list:
    """One (seq_len, dim) integer array -> list of ints (dim 1) or of int tuples (dim > 1)."""
    if row.shape[-1] == 1:
        return [int(v) for v in row[:, 0]]
    return [tuple(int(v) for v in step) for step in row]


def from_sequence(seq: Sequence, dim: int) -> np.ndarray:
    """Inverse of :func:`to_sequence`: a list of ints or tuples -> (len, dim) int64 array."""
    arr = np.asarray([list(v) if isinstance(v, list | tuple) else [v] for v in seq], dtype=np.int64)
    return arr.reshape(len(seq), dim)


def reference_outputs(task: Task, x: np.ndarray) -> np.ndarray:
    """Run the plain-Python reference on every row of x (n, T, I); returns y (n, T, O)."""
    return np.stack([from_sequence(task.reference(to_sequence(row)), task.output_dim) for row in x])


# ---------------------------------------------------------------------------------------------------------
# Discovery


def default_tasks_dirs() -> list[Path]:
    """``tasks/`` beside the package's project root, plus folders in ``MIPS_TASKS_DIR`` (os.pathsep list)."""
    from mips.artifacts import project_root

    dirs = [project_root() / "tasks"]
    extra = os.environ.get("MIPS_TASKS_DIR", "")
    dirs += [Path(p).expanduser() for p in extra.split(os.pathsep) if p]
    return dirs


def load_task_file(path: Path) -> Task:
    """Import one task file and return its validated ``TASK``; errors name the file and the problem."""
    path = Path(path)
    if not _SNAKE.match(path.stem):
        raise TaskError(f"{path}: task file names must be snake_case (e.g. add_mod_3.py)")
    source = path.read_text()
    spec = importlib.util.spec_from_file_location(f"mips_task_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # a user's file: any failure, even exit()
        raise TaskError(f"{path}: could not be imported: {type(exc).__name__}: {exc}") from exc
    task = getattr(module, "TASK", None)
    if not isinstance(task, Task):
        raise TaskError(f"{path}: must define TASK = Task(...) (found {type(task).__name__})")
    # The key covers the shared helpers too, so editing taskkit.py regenerates every dataset built with it.
    kit = Path(__file__).with_name("taskkit.py")
    shared = kit.read_text() if kit.exists() else ""
    digest = hashlib.sha256((source + "\0" + shared).encode()).hexdigest()[:16]
    task = _replace(task, source_file=str(path), source_hash=digest)
    try:
        task.validate()
    except TaskError:
        raise
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        raise TaskError(f"{path}: generate() failed on a small batch: {type(exc).__name__}: {exc}") from exc
    return task


def _replace(task: Task, **changes) -> Task:
    from dataclasses import replace

    return replace(task, **changes)


@dataclass
class Registry:
    """All tasks found in the task folders, keyed by paper name, plus the files that failed to load."""

    tasks: dict[str, Task]
    errors: dict[str, str]

    def get(self, name: str) -> Task:
        """Look a task up by paper name or file id, case-insensitively; suggest close names if unknown."""
        by_key = {k.lower(): t for k, t in self.tasks.items()} | {t.id: t for t in self.tasks.values()}
        task = by_key.get(name.lower())
        if task is not None:
            return task
        for file, err in self.errors.items():
            if Path(file).stem.lower() == name.lower():
                raise TaskError(f"task {name!r} exists but failed to load: {err}")
        close = difflib.get_close_matches(name, list(self.tasks), n=3, cutoff=0.5)
        close += [k for k in self.tasks if name.lower() in k.lower() and k not in close][:3]
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise TaskError(f"unknown task {name!r}.{hint} Run `mips tasks` to list them.")

    def select(self, spec: str | Sequence[str]) -> list[Task]:
        """Resolve 'all', a comma-separated string or a list of names into tasks in paper order."""
        names = spec.split(",") if isinstance(spec, str) else list(spec)
        names = [n.strip() for n in names if n.strip()]
        if names == ["all"]:
            return self.ordered()
        return [self.get(n) for n in names]

    def ordered(self) -> list[Task]:
        """Every task, in the paper's table order (then by name for tasks the paper did not have)."""
        return sorted(self.tasks.values(), key=lambda t: (t.paper_index or 10_000, t.name))


def discover(dirs: Sequence[Path] | None = None) -> Registry:
    """Load every ``*.py`` task file in the folders; a broken file is recorded, not fatal."""
    tasks: dict[str, Task] = {}
    errors: dict[str, str] = {}
    for folder in dirs if dirs is not None else default_tasks_dirs():
        folder = Path(folder)
        if not folder.is_dir():
            if folder.exists() or os.environ.get("MIPS_TASKS_DIR"):
                errors[str(folder)] = "is not a folder"
            continue
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            try:
                task = load_task_file(path)
            except TaskError as exc:
                errors[str(path)] = str(exc)
                log.warning("skipping task file: %s", exc)
                continue
            if task.name in tasks:
                errors[str(path)] = f"{path}: task name {task.name!r} already defined by {tasks[task.name].source_file}"
                continue
            same_id = next((t for t in tasks.values() if t.id == task.id), None)
            if same_id is not None:       # one runs folder and page per id: a second file would share them
                errors[str(path)] = (f"{path}: file id {task.id!r} is already taken by {same_id.source_file} "
                                     f"({same_id.name}); rename the file")
                continue
            tasks[task.name] = task
    return Registry(tasks, errors)


_REGISTRY: Registry | None = None


def registry(refresh: bool = False) -> Registry:
    """The registry of the default task folders, loaded once per process."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        _REGISTRY = discover()
    return _REGISTRY


def get_task(name: str) -> Task:
    """A task by paper name (``Add_Mod_3``) or file id (``add_mod_3``)."""
    return registry().get(name)


def all_tasks() -> list[Task]:
    """Every registered task in paper order."""
    return registry().ordered()
