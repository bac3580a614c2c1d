"""How long it takes to generate every task's full dataset (1e6 rows) with ``mips.data.generate``.

Bypasses the cache: this times the vectorized generators themselves. Prints one line per task: the first
run (what a cold pipeline sees; it includes the OS handing the process fresh memory, which makes the first
task of each array size look slow) and the best of ``--repeat`` runs (the generator's own speed), then the
total of the first runs, rows/s, and any task much slower than the median of the best times.

    python benchmarks/datasets.py                  # all 62 tasks, 1e6 rows each
    python benchmarks/datasets.py --repeat 1 --size 100000 --tasks Sum_All,Bit_Palindrome
"""

from __future__ import annotations

import argparse
import statistics
import time

from mips import data
from mips.tasks import registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=data.DEFAULT_SIZE, help="rows per dataset")
    parser.add_argument("--seed", type=int, default=data.DEFAULT_SEED)
    parser.add_argument("--tasks", default="all", help="'all' or comma-separated task names")
    parser.add_argument("--repeat", type=int, default=2, help="runs per task; 'best' is the fastest")
    parser.add_argument("--slow-factor", type=float, default=5.0,
                        help="flag tasks whose best time exceeds this many times the median")
    args = parser.parse_args()

    tasks = registry().select(args.tasks)
    first, best, rows = {}, {}, {}
    print(f"{'#':>3} {'task':<26} {'first s':>8} {'best s':>8} {'rows/s (best)':>14} {'MB':>7}")
    for task in tasks:
        runs = []
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            x, y = data.generate(task, args.size, args.seed)
            runs.append(time.perf_counter() - t0)
        first[task.name], best[task.name], rows[task.name] = runs[0], min(runs), len(x)
        print(f"{task.paper_index:>3} {task.name:<26} {runs[0]:>8.3f} {min(runs):>8.3f} "
              f"{len(x) / min(runs):>14,.0f} {(x.nbytes + y.nbytes) / 1e6:>7.1f}")
        del x, y

    n_rows, total = sum(rows.values()), sum(first.values())
    print(f"\ntotal (first runs): {len(tasks)} datasets, {n_rows:,} rows in {total:.1f} s "
          f"({n_rows / total:,.0f} rows/s); best runs: {sum(best.values()):.1f} s")
    median = statistics.median(best.values())
    slowest = max(best, key=best.get)
    print(f"median {median:.3f} s per task (best runs); slowest {slowest} {best[slowest]:.3f} s")
    slow = {k: v for k, v in best.items() if v > args.slow_factor * median}
    if slow:
        print(f"SLOW (> {args.slow_factor:g}x median): "
              + ", ".join(f"{k} {v:.2f} s" for k, v in slow.items()))


if __name__ == "__main__":
    main()
