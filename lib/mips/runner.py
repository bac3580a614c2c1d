"""The batch runner: execute the stage notebooks for many tasks with papermill, resumably and in parallel.

Each (task, stage) notebook is executed through papermill's Python API into
``book/generated/<task_id>/<stage>.ipynb`` beside a ``<stage>.status.json``. A task's stages run in order in
one worker; tasks run in parallel workers (local processes, or Slurm / submitit's local executor). A
notebook is reused when its status says it finished from the same inputs (notebook source, parameters,
task definition, the keys of the stages before it); a killed run restarts where it stopped, since a
notebook only counts as finished once its output and status were renamed into place. A failing notebook is
kept (readable, with its traceback) and the task's later stages are skipped with that reason, while every
other task goes on.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mips.artifacts import STAGES, clean_scratch, load_record, project_root, stable_hash, write_json
from mips.tasks import Task, registry

log = logging.getLogger(__name__)

OK, FAILED, SKIPPED, CACHED = "ok", "failed", "skipped", "cached"
DEFAULT_STAGES = ("dataset", "search", "simplify", "extract", "regress", "program")

# The sibling methods' chapters: their notebooks (in notebooks/), executed in this order into
# book/generated/chapters/ and listed in _toc.yml under the chapter's hand-written page.
CHAPTERS: dict[str, tuple[str, ...]] = {
    "das": ("das_counting", "das_mips"),
    "pgtd": ("pgtd",),
    "culture": ("culture_world", "culture_training", "culture_round", "culture_hooks", "culture_saes",
                "culture_universality"),
    "humn": ("humn_graph", "humn_cartpole", "humn_device"),
}


def check_chapters(chapters: Sequence[str]) -> list[str]:
    """Validate chapter names and check that their notebooks exist."""
    unknown = [c for c in chapters if c not in CHAPTERS]
    if unknown:
        raise ValueError(f"unknown chapter(s) {', '.join(unknown)}; chapters are {', '.join(CHAPTERS)}")
    missing = [n for c in chapters for n in CHAPTERS[c] if not (notebooks_dir() / f"{n}.ipynb").exists()]
    if missing:
        raise ValueError(f"chapter notebook(s) not written yet: {', '.join(missing)}")
    return list(chapters)


def notebooks_dir() -> Path:
    """The stage notebooks: ``MIPS_NOTEBOOKS`` or ``<project>/notebooks``."""
    return Path(os.environ.get("MIPS_NOTEBOOKS", project_root() / "notebooks"))


def generated_dir() -> Path:
    """Where executed notebooks go: ``MIPS_BOOK_OUT`` or ``<project>/book/generated``."""
    return Path(os.environ.get("MIPS_BOOK_OUT", project_root() / "book" / "generated"))


@dataclass
class RunOptions:
    """How a batch runs: preset, device, where artifacts and executed notebooks go, and reuse policy."""

    preset: str = "full"
    device: str = "cpu"
    run_dir: str = ""
    out_dir: str = ""
    force: bool = False
    kernel_name: str = "python3"
    threads_per_worker: int = 0
    timeout_seconds: int = 0

    def out(self) -> Path:
        return Path(self.out_dir) if self.out_dir else generated_dir()


@dataclass
class NotebookStatus:
    """The outcome of one (task, stage) notebook, as written beside it."""

    task: str
    stage: str
    status: str
    key: str = ""
    seconds: float = 0.0
    error: str = ""
    finished: str = ""
    notebook: str = ""
    record: str = ""     # the key of the stage record the notebook made or read, if any

    @classmethod
    def load(cls, path: Path) -> NotebookStatus | None:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError):
            return None


@dataclass
class BatchResult:
    """Every notebook's status from one batch, with counts."""

    statuses: list[NotebookStatus] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(s.status == status for s in self.statuses)

    @property
    def n_failed(self) -> int:
        return self.count(FAILED)

    def summary(self) -> str:
        return (f"{len(self.statuses)} notebooks: {self.count(OK)} ran, {self.count(CACHED)} reused, "
                f"{self.n_failed} failed, {self.count(SKIPPED)} skipped, in {self.seconds:.0f}s")


def order_stages(stages: Sequence[str]) -> list[str]:
    """Validate stage names and put them in pipeline order."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")
    missing = [s for s in stages if not (notebooks_dir() / f"{s}.ipynb").exists()]
    if missing:
        raise ValueError(f"no notebook for stage(s) {', '.join(missing)} in {notebooks_dir()}")
    return [s for s in STAGES if s in stages]


@dataclass
class Job:
    """One notebook to execute: which, with what parameters, into which folder of the book."""

    unit: str            # a task id, or "chapters"
    name: str            # the stage or chapter-notebook name; also the output file's stem
    notebook: Path
    params: dict
    salt: str = ""       # anything else the output depends on (e.g. the task definition's hash)


def job_key(job: Job, before: Sequence[str]) -> str:
    """What a notebook's output depends on: its source, its parameters, the salt, and earlier notebooks."""
    nb_hash = hashlib.sha256(job.notebook.read_bytes()).hexdigest()[:16]
    return stable_hash({"notebook": nb_hash, "params": job.params, "salt": job.salt, "before": list(before)})


def parameters(task: Task, opts: RunOptions) -> dict:
    """The values papermill injects into a stage notebook's ``parameters`` cell."""
    return {"task": task.name, "preset": opts.preset, "run_dir": opts.run_dir, "device": opts.device}


def task_jobs(task: Task, stages: Sequence[str], opts: RunOptions) -> list[Job]:
    return [Job(task.id, s, notebooks_dir() / f"{s}.ipynb", parameters(task, opts), task.source_hash)
            for s in stages]


def chapter_jobs(chapter: str, opts: RunOptions) -> list[Job]:
    params = {"preset": opts.preset, "run_dir": opts.run_dir, "device": opts.device}
    return [Job("chapters", n, notebooks_dir() / f"{n}.ipynb", params) for n in CHAPTERS[chapter]]


def status_path(out: Path, unit: str, name: str) -> Path:
    return out / unit / f"{name}.status.json"


def _write_status(out: Path, st: NotebookStatus) -> NotebookStatus:
    st.finished = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json(status_path(out, st.task, st.stage), asdict(st))
    return st


def execute_job(job: Job, opts: RunOptions, key: str) -> NotebookStatus:
    """Execute one notebook into place; a failure is recorded and the failed notebook kept."""
    import papermill as pm

    out = opts.out() / job.unit
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{job.name}.ipynb"
    tmp = out / f".{job.name}.{os.getpid()}.tmp.ipynb"
    start = time.time()
    status, error = OK, ""
    try:
        pm.execute_notebook(
            str(job.notebook), str(tmp), parameters=job.params, kernel_name=opts.kernel_name,
            progress_bar=False, cwd=str(notebooks_dir()), execution_timeout=opts.timeout_seconds or None,
            log_output=False)
    except Exception as exc:  # a notebook error is a result: recorded, and the batch goes on
        status, error = FAILED, _short_error(exc)
    if tmp.exists():
        _hide_parameters(tmp)
        os.replace(tmp, target)
    return _write_status(opts.out(), NotebookStatus(job.unit, job.name, status, key, round(time.time() - start, 2),
                                                    error, notebook=str(target), record=_record_key(job, opts)))


def _record_key(job: Job, opts: RunOptions) -> str:
    """The key of the stage record behind a task's stage notebook ("" for chapters or no record)."""
    if job.name not in STAGES:
        return ""
    rec = load_record(job.unit, job.name, Path(opts.run_dir) if opts.run_dir else None)
    return rec.key if rec is not None else ""


def _hide_parameters(path: Path) -> None:
    """Tag the parameters cells of an executed notebook so the book leaves them out."""
    import nbformat

    with contextlib.suppress(Exception):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            tags = set(cell.get("metadata", {}).get("tags", []))
            if tags & {"parameters", "injected-parameters"}:
                cell.metadata["tags"] = sorted(tags | {"remove-cell"})
        nbformat.write(nb, path)


def _short_error(exc: BaseException) -> str:
    name = getattr(exc, "ename", type(exc).__name__)
    value = getattr(exc, "evalue", str(exc))
    return f"{name}: {value}".strip()[:2000]


def run_chain(jobs: Sequence[Job], opts: RunOptions) -> list[NotebookStatus]:
    """Run notebooks in order; reuse finished ones, skip the rest after a failure."""
    out = opts.out()
    statuses: list[NotebookStatus] = []
    keys: list[str] = []
    blocked = ""
    for job in jobs:
        for leftover in (out / job.unit).glob(f".{job.name}.*.tmp.ipynb"):
            leftover.unlink(missing_ok=True)
        key = job_key(job, keys)
        keys.append(key)
        if blocked:
            statuses.append(_write_status(out, NotebookStatus(job.unit, job.name, SKIPPED, key, error=blocked)))
            continue
        prev = NotebookStatus.load(status_path(out, job.unit, job.name))
        if (not opts.force and prev is not None and prev.key == key and prev.status in (OK, CACHED)
                and (out / job.unit / f"{job.name}.ipynb").exists()
                and (not prev.record or prev.record == _record_key(job, opts))):   # its record still there
            statuses.append(NotebookStatus(job.unit, job.name, CACHED, key, prev.seconds, notebook=prev.notebook,
                                           record=prev.record))
            continue
        st = execute_job(job, opts, key)
        statuses.append(st)
        if st.status == FAILED:
            first = st.error.splitlines()[0] if st.error else ""
            blocked = f"skipped because {job.name!r} failed: {first}"
    return statuses


def _limit_threads(opts: RunOptions) -> None:
    if opts.threads_per_worker:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(opts.threads_per_worker)


def run_task(task_name: str, stages: Sequence[str], opts: RunOptions) -> list[NotebookStatus]:
    """Run one task's stages in order (in a worker), then rebuild its book page."""
    _limit_threads(opts)
    task = registry().get(task_name)
    clean_scratch(Path(opts.run_dir or _runs()) / task.id)
    statuses = run_chain(task_jobs(task, stages, opts), opts)
    with contextlib.suppress(Exception):
        from mips.book import write_task_page

        write_task_page(task, opts.out())
    return statuses


def run_chapter(chapter: str, opts: RunOptions) -> list[NotebookStatus]:
    """Run one chapter's notebooks in order (in a worker)."""
    _limit_threads(opts)
    return run_chain(chapter_jobs(chapter, opts), opts)


def _runs() -> Path:
    from mips.artifacts import runs_dir

    return runs_dir()


def _run_unit_safe(unit: str, stages: Sequence[str], opts: RunOptions) -> list[NotebookStatus]:
    """Run a task (or ``chapter:<name>``) and turn an unexpected crash into failed statuses."""
    try:
        if unit.startswith("chapter:"):
            return run_chapter(unit.split(":", 1)[1], opts)
        return run_task(unit, stages, opts)
    except Exception:
        err = traceback.format_exc(limit=3)
        names = CHAPTERS.get(unit.split(":", 1)[-1], []) if unit.startswith("chapter:") else stages
        return [NotebookStatus(unit, s, FAILED, error=err) for s in names]


class RunsFolderBusy(ValueError):
    """Another ``mips run`` holds the runs folder (a ValueError: the command reports it as a usage error)."""


@contextlib.contextmanager
def runs_lock(run_dir: Path):
    """Hold ``<run_dir>/.mips-run.lock`` for the batch: two runs in one folder would recompute the same
    stages and delete each other's scratch files. The kernel drops the lock when the holder dies, even by
    ``kill -9``, and also keeps it while a worker of that run is still alive."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".mips-run.lock"
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise RunsFolderBusy(f"another `mips run` (pid {holder}) is using {run_dir}; wait for it to finish, "
                             f"stop it, or give this run its own --run-dir") from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    try:
        yield
    finally:
        fh.close()


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies (Linux; a no-op elsewhere), so a worker
    of a ``mips run`` killed with ``kill -9`` does not go on executing notebooks beside the rerun."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:             # the parent died before the request took effect
        os._exit(1)


def run_batch(tasks: Sequence[Task], stages: Sequence[str], opts: RunOptions, workers: int = 0,
              executor: str = "local", slurm_options: dict | None = None, quiet: bool = False,
              chapters: Sequence[str] = ()) -> BatchResult:
    """Run every (task, stage) notebook and every chapter notebook; one progress bar, a line per notebook."""
    from tqdm.auto import tqdm

    stages = order_stages(stages) if stages else []
    chapters = check_chapters(chapters)
    workers = workers or os.cpu_count() or 1
    if not opts.threads_per_worker:
        opts.threads_per_worker = max(1, (os.cpu_count() or 1) // min(workers, max(1, len(tasks))))
    start = time.time()
    total = len(tasks) * len(stages) + sum(len(CHAPTERS[c]) for c in chapters)
    reported: set[tuple[str, str]] = set()
    result = BatchResult()
    bar = tqdm(total=total, desc="notebooks", unit="nb", disable=quiet, file=sys.stderr)

    def report(st: NotebookStatus) -> None:
        if (st.task, st.stage) in reported:
            return
        reported.add((st.task, st.stage))
        mark = {OK: "done", CACHED: "reused", FAILED: "FAILED", SKIPPED: "skipped"}[st.status]
        extra = f" - {st.error.splitlines()[0]}" if st.error and st.status != CACHED else ""
        bar.write(f"{mark:>7}  {st.task}/{st.stage}  {st.seconds:.1f}s{extra}")
        bar.update(1)

    watched = [(t.id, s) for t in tasks for s in stages] + [("chapters", n) for c in chapters for n in CHAPTERS[c]]

    def poll_disk() -> None:
        for unit, name in watched:
            st = NotebookStatus.load(status_path(opts.out(), unit, name))
            if st is not None and st.finished and _ts(st.finished) >= start - 1:
                report(st)

    names = ([t.name for t in tasks] if stages else []) + [f"chapter:{c}" for c in chapters]
    with runs_lock(Path(opts.run_dir or _runs())):
        _run_units(names, stages, opts, workers, executor, slurm_options, report, poll_disk, result)
    bar.close()
    result.seconds = time.time() - start
    return result


def _run_units(names, stages, opts, workers, executor, slurm_options, report, poll_disk, result) -> None:
    """Execute the units with the chosen executor, reporting each notebook as it finishes."""
    if executor == "local":
        with cf.ProcessPoolExecutor(max_workers=min(workers, max(1, len(names))),
                                    initializer=die_with_parent) as pool:
            futures = {pool.submit(_run_unit_safe, n, stages, opts): n for n in names}
            pending = set(futures)
            while pending:
                done, pending = cf.wait(pending, timeout=1.0, return_when=cf.FIRST_COMPLETED)
                poll_disk()
                for fut in done:
                    for st in fut.result():
                        report(st)
                        result.statuses.append(st)
    elif executor in ("slurm", "submitit-local"):
        jobs = _submit(names, stages, opts, executor, slurm_options or {})
        pending = list(jobs)
        while pending:
            time.sleep(1.0)
            poll_disk()
            for job in [j for j in pending if j.done()]:
                pending.remove(job)
                try:
                    statuses = job.result()
                except Exception as exc:
                    statuses = [NotebookStatus(job.task_name, "?", FAILED, error=_short_error(exc))]
                for st in statuses:
                    report(st)
                    result.statuses.append(st)
    else:
        raise ValueError(f"unknown executor {executor!r}; use local, slurm or submitit-local")


def _ts(stamp: str) -> float:
    return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))


def _submit(names: Sequence[str], stages: Sequence[str], opts: RunOptions, executor: str, slurm: dict):
    """Submit one job per task through submitit (Slurm, or its local executor for testing)."""
    import submitit

    folder = Path(opts.run_dir or _runs()) / "_submitit"
    if executor == "slurm":
        ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    else:
        ex = submitit.LocalExecutor(folder=str(folder))
    params = {"timeout_min": int(slurm.pop("timeout_min", 240))}
    if executor == "slurm":
        params.update({f"slurm_{k}" if not k.startswith("slurm_") else k: v for k, v in slurm.items()})
    ex.update_parameters(**params)
    env = {"MIPS_HOME": str(project_root()), "MIPS_BOOK_OUT": str(opts.out())}
    jobs = []
    for n in names:
        job = ex.submit(_run_task_with_env, n, list(stages), opts, env)
        job.task_name = n
        jobs.append(job)
    return jobs


def _run_task_with_env(unit: str, stages: list[str], opts: RunOptions, env: dict) -> list[NotebookStatus]:
    os.environ.update(env)
    return _run_unit_safe(unit, stages, opts)


def execute_results(opts: RunOptions, tasks: Sequence[Task]) -> NotebookStatus:
    """Execute the results notebook (the leaderboard) over the given tasks into the book."""
    import papermill as pm

    out = opts.out()
    out.mkdir(parents=True, exist_ok=True)
    tmp, target = out / ".results.tmp.ipynb", out / "results.ipynb"
    start = time.time()
    status, error = OK, ""
    try:
        pm.execute_notebook(str(notebooks_dir() / "results.ipynb"), str(tmp),
                            parameters={"tasks": ",".join(t.name for t in tasks), "run_dir": opts.run_dir,
                                        "book_dir": str(out)},
                            kernel_name=opts.kernel_name, progress_bar=False, cwd=str(notebooks_dir()))
    except Exception as exc:
        status, error = FAILED, _short_error(exc)
    if tmp.exists():
        _hide_parameters(tmp)
        os.replace(tmp, target)
    return NotebookStatus("all", "results", status, seconds=round(time.time() - start, 2), error=error,
                          notebook=str(target))


def clear_outputs(out: Path) -> None:
    """Remove everything the batch rendered (the book's generated part)."""
    shutil.rmtree(out, ignore_errors=True)
