"""The ``mips`` command: list tasks, build a dataset, run the stage notebooks in batch, build the book."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

DEFAULT_TASKS = "Sum_All,Parity_All,Add_Mod_3,Binary_Addition"


def _tasks_dir(args: argparse.Namespace) -> None:
    if getattr(args, "tasks_dir", None):
        folders = [str(Path(p).resolve()) for p in args.tasks_dir]
        missing = [p for p in folders if not Path(p).is_dir()]
        if missing:
            raise SystemExit(f"error: --tasks-dir {', '.join(missing)} is not a folder")
        old = os.environ.get("MIPS_TASKS_DIR", "")
        os.environ["MIPS_TASKS_DIR"] = os.pathsep.join(folders + ([old] if old else []))


def cmd_tasks(args: argparse.Namespace) -> int:
    """Print every task with its dims, input alphabet and length."""
    from mips.tasks import registry

    reg = registry(refresh=True)
    print(f"{'#':>3}  {'task':<26} {'id':<26} {'in':>2} {'out':>3} {'T':>3}  {'split':>5} {'steps':>6}  domain")
    for t in reg.ordered():
        print(f"{t.paper_index or '':>3}  {t.name:<26} {t.id:<26} {t.input_dim:>2} {t.output_dim:>3} "
              f"{t.seq_len:>3}  {t.split:>5} {t.steps:>6}  {t.domain}")
    print(f"\n{len(reg.tasks)} tasks")
    for file, err in reg.errors.items():
        print(f"could not load {file}: {err}", file=sys.stderr)
    return 1 if reg.errors else 0


def cmd_data(args: argparse.Namespace) -> int:
    """Build or load a task's dataset and show a few rows."""
    from mips.data import load_dataset
    from mips.tasks import get_task, to_sequence

    task = get_task(args.task)
    ds = load_dataset(task, args.size, args.seed)
    print(ds)
    for x, y in zip(ds.x_train[: args.rows], ds.y_train[: args.rows], strict=True):
        print(f"  x = {to_sequence(x)}\n  y = {to_sequence(y)}")
    return 0


def _parse_kv(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"error: --slurm expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = int(v) if v.isdigit() else v
    return out


def cmd_run(args: argparse.Namespace) -> int:
    """Execute stage notebooks for tasks (resumable, parallel); then the results page and task pages."""
    from mips.pipeline import check_preset
    from mips.runner import RunOptions, execute_results, order_stages, run_batch
    from mips.tasks import registry

    check_preset(args.preset)
    if args.workers < 0:
        raise ValueError(f"--workers must be 0 (one per core) or a positive number, got {args.workers}")
    tasks = [] if args.tasks.strip().lower() in ("", "none") else registry(refresh=True).select(args.tasks)
    stages = order_stages([s.strip() for s in args.stages.split(",") if s.strip()]) if tasks else []
    chapters = [c.strip() for c in args.chapters.split(",") if c.strip()]
    opts = RunOptions(preset=args.preset, device=args.device, run_dir=args.run_dir or "",
                      out_dir=args.out or "", force=args.force, timeout_seconds=args.timeout)
    print(f"running {len(stages)} stage(s) for {len(tasks)} task(s)"
          + (f" and chapter(s) {', '.join(chapters)}" if chapters else "")
          + f", preset {args.preset}, {args.workers or os.cpu_count()} worker(s), executor {args.executor}")
    result = run_batch(tasks, stages, opts, workers=args.workers, executor=args.executor,
                       slurm_options=_parse_kv(args.slurm), chapters=chapters)
    print(result.summary())
    if not args.no_results and tasks:
        all_tasks = registry().ordered()
        st = execute_results(opts, all_tasks)
        print(f"results page: {st.status} ({st.notebook})" + (f" - {st.error}" if st.error else ""))
    for st in result.statuses:
        if st.status == "failed":
            print(f"FAILED {st.task}/{st.stage}: {st.error.splitlines()[0] if st.error else ''}")
    return min(result.n_failed, 100)


def cmd_book(args: argparse.Namespace) -> int:
    """Build the HTML book from what the batch produced (no execution)."""
    from mips.book import build_book
    from mips.runner import RunOptions, execute_results
    from mips.tasks import registry

    if not args.no_results:  # the leaderboard always reflects the records on disk now
        st = execute_results(RunOptions(run_dir=args.run_dir or ""), registry(refresh=True).ordered())
        print(f"results page: {st.status}" + (f" - {st.error}" if st.error else ""))
    index = build_book(strict=not args.lenient)
    print(f"book built: {index}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mips", description=__doc__)
    p.add_argument("--tasks-dir", action="append", metavar="DIR",
                   help="an extra folder of task files (repeatable; also MIPS_TASKS_DIR)")
    p.add_argument("-v", "--verbose", action="store_true", help="log INFO messages")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("tasks", help="list every task").set_defaults(func=cmd_tasks)

    d = sub.add_parser("data", help="build or load a task's dataset and print a few rows")
    d.add_argument("task")
    d.add_argument("--size", type=int, default=1_000_000, help="rows to generate (default 1e6)")
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--rows", type=int, default=5, help="rows to print")
    d.set_defaults(func=cmd_data)

    r = sub.add_parser("run", help="execute stage notebooks for tasks into book/generated")
    r.add_argument("--tasks", default=DEFAULT_TASKS, help="'all', 'none' or comma-separated names")
    r.add_argument("--stages", default="dataset,search,simplify,extract,regress,program",
                   help="comma-separated stages (dataset,search,simplify,extract,regress,program,llm_baseline)")
    r.add_argument("--chapters", default="", help="sibling-method chapters to run too, e.g. das,humn")
    r.add_argument("--preset", default="full", help="smoke (CI-sized) or full")
    r.add_argument("--workers", type=int, default=0, help="parallel workers (default: number of cores)")
    r.add_argument("--device", default="cpu", help="cpu or cuda")
    r.add_argument("--force", action="store_true", help="re-execute notebooks even if finished")
    r.add_argument("--run-dir", default="", help="artifacts root (default runs/)")
    r.add_argument("--out", default="", help="executed notebooks root (default book/generated)")
    r.add_argument("--executor", default="local", choices=["local", "slurm", "submitit-local"])
    r.add_argument("--slurm", action="append", metavar="KEY=VALUE",
                   help="submitit/Slurm option, e.g. partition=gpu, gpus_per_node=1, timeout_min=120")
    r.add_argument("--timeout", type=int, default=0, help="per-cell timeout in seconds (0 = none)")
    r.add_argument("--no-results", action="store_true", help="don't execute the results notebook")
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("book", help="build the HTML book with Jupyter Book (no execution)")
    b.add_argument("--lenient", action="store_true", help="don't treat Sphinx warnings as errors")
    b.add_argument("--no-results", action="store_true", help="don't re-execute the results page first")
    b.add_argument("--run-dir", default="", help="artifacts root the results page reads (default runs/)")
    b.set_defaults(func=cmd_book)
    return p


def main(argv: list[str] | None = None) -> int:
    from mips.tasks import TaskError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    _tasks_dir(args)
    try:
        return args.func(args)
    except (TaskError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
