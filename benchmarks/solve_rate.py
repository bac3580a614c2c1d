"""How many tasks the MIPS pipeline solves: every stage, computed directly (no notebooks), one line per task.

By default it runs the task variants in benchmarks/variants/ (other moduli, bases, windows and alphabets of
the paper's families, none of them among the 62): the pipeline is measured on tasks it was never tuned on.
``--suite builtin`` runs the 62 tasks instead. Records land in the runs folder like any ``mips run``, so a
second call reuses them (resumable) and ``mips run`` renders their pages without recomputing.

    .venv/bin/python benchmarks/solve_rate.py                      # the variants, full preset, 2 workers
    .venv/bin/python benchmarks/solve_rate.py --suite builtin --tasks Div_3,Add_Mod_5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

VARIANTS = Path(__file__).resolve().parent / "variants"


def solve(task_id: str, preset: str, run_dir: str | None) -> dict:
    """Run every pipeline stage of one task (each reuses its record when fresh) and summarise the result."""
    import torch

    from mips import pipeline
    from mips.artifacts import load_record
    from mips.results import task_result
    from mips.tasks import get_task

    torch.set_num_threads(1)
    task = get_task(task_id)
    t0 = time.perf_counter()
    error = ""
    try:
        pipeline.ensure(task, "program", preset, run_dir)
    except Exception as exc:          # a failed stage is a result, not the end of the benchmark
        error = f"{type(exc).__name__}: {exc}"
    row = task_result(task, Path(run_dir) if run_dir else None)
    search = load_record(task.id, "search", Path(run_dir) if run_dir else None)
    return {"task": task.name, "solved": row.solved, "failed_stage": row.failed_stage or ("error" if error else ""),
            "architecture": row.architecture, "representation": row.representation, "kind": row.state_kind,
            "n_states": row.n_states, "program_lines": row.program_lines,
            "search_seconds": round(search.seconds, 1) if search else None,
            "network_steps": search.metrics.get("network_steps") if search else None,
            "best_accuracy": search.metrics.get("test_accuracy") if search else None,
            "seconds": round(time.perf_counter() - t0, 1), "error": error[:200]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", choices=["variants", "builtin"], default="variants")
    ap.add_argument("--tasks", default="all", help="'all' or comma-separated names within the suite")
    ap.add_argument("--preset", default="full")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--run-dir", default="", help="artifacts root (default runs/)")
    ap.add_argument("--json", default="", help="also write the rows to this file")
    args = ap.parse_args(argv)
    if args.suite == "variants":
        os.environ["MIPS_TASKS_DIR"] = os.pathsep.join(filter(None, [str(VARIANTS),
                                                                     os.environ.get("MIPS_TASKS_DIR", "")]))
    from mips.tasks import all_tasks, get_task

    if args.tasks == "all":
        pool = [t for t in all_tasks() if (Path(t.source_file).parent == VARIANTS) == (args.suite == "variants")]
    else:
        pool = [get_task(name) for name in args.tasks.split(",")]
    print(f"{len(pool)} tasks, preset {args.preset}, {args.workers} worker(s)", flush=True)
    rows, start = [], time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as ex:
        futures = [ex.submit(solve, t.id, args.preset, args.run_dir or None) for t in pool]
        for fut in as_completed(futures):
            r = fut.result()
            rows.append(r)
            what = "solved" if r["solved"] else f"failed at {r['failed_stage']}"
            size = (f"{r['n_states']} states" if r["kind"] == "fsm" else r["kind"]) if r["kind"] else ""
            print(f"  {r['task']:<24} {what:<20} {r['architecture']:<22} {r['representation']:<28} {size:<12} "
                  f"{r['program_lines'] or '':>4} lines  search {r['search_seconds'] or 0:6.0f} s "
                  f"({r['network_steps'] or 0:,} network-steps, best {r['best_accuracy'] or 0:.4f})"
                  + (f"  {r['error']}" if r["error"] else ""), flush=True)
    solved = sum(r["solved"] for r in rows)
    search_s = sum(r["search_seconds"] or 0 for r in rows)
    print(f"solved {solved} of {len(rows)} ({solved / max(1, len(rows)):.0%}); search compute {search_s / 60:.1f} "
          f"min; wall {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(sorted(rows, key=lambda r: r["task"]), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
