"""How fast is the exact enumerative symbolic regression (mips.symbolic)?

Prints two tables:
  1. the worst case: a target no short formula fits, so every expression up to the maximum length is
     enumerated (seconds, value vectors computed, expressions kept per length), for 1..4 variables;
  2. the time to find the formulas the MIPS tasks need (Abs_Diff, Max_Seen, Add_Mod_3, ...).

    .venv/bin/python benchmarks/symbolic_speed.py [--max-length 7] [--rows 5000] [--seed 0]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from mips import symbolic


def worst_case(n_vars: int, max_length: int, rows: int, seed: int) -> symbolic.SearchResult:
    """Enumerate everything: the target is random, so nothing fits and no search stops early."""
    rng = np.random.default_rng(seed)
    X = rng.integers(-100, 100, size=(rows, n_vars))
    target = rng.integers(-10**6, 10**6, size=rows)
    names = [chr(ord("a") + i) for i in range(n_vars)]
    return symbolic.search(X, target, names, symbolic.SearchConfig(max_length=max_length, max_seconds=600,
                                                                   seed=seed))


def known_targets(rows: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray, list[str]]]:
    rng = np.random.default_rng(seed)
    a, x = rng.integers(-100, 100, rows), rng.integers(-100, 100, rows)
    r, b = rng.integers(0, 3, rows), rng.integers(0, 2, rows)
    c, d = rng.integers(0, 10, rows), rng.integers(0, 10, rows)
    return [
        ("abs(x - a)            (Abs_Diff)", np.column_stack([a, x]), np.abs(x - a), ["a", "x"]),
        ("max(a, x)             (Max_Seen)", np.column_stack([a, x]), np.maximum(a, x), ["a", "x"]),
        ("(a + x) % 3           (Add_Mod_3)", np.column_stack([r, c % 3]), (r + c % 3) % 3, ["a", "x"]),
        ("x // 2", np.column_stack([a, x]), x // 2, ["a", "x"]),
        ("2 * (r % 3) + b       (Div_3 FSM)", np.column_stack([c, b]), 2 * (c % 3) + b, ["r", "b"]),
        ("(a * c + x) % 7       (4 vars, len 7)", np.column_stack([a, x, c, d]), (a * c + x) % 7,
         ["a", "x", "c", "d"]),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-length", type=int, default=7)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = symbolic.SearchConfig()
    print(f"mips.symbolic on {platform.processor() or platform.machine()}, numpy {np.__version__}; "
          f"{len(cfg.constants)} constants, {len(cfg.unary)} unary and {len(cfg.binary)} binary operators, "
          f"first sample {cfg.sample_rows} rows\n")
    print(f"1. Worst case: every expression up to length {args.max_length} ({args.rows} table rows)")
    print(f"{'variables':>9}  {'seconds':>8}  {'vectors computed':>16}  {'per second':>11}  "
          "expressions kept per length")
    for n_vars in (1, 2, 3, 4):
        res = worst_case(n_vars, args.max_length, args.rows, args.seed)
        rate = res.candidates / max(res.seconds, 1e-9)
        print(f"{n_vars:>9}  {res.seconds:>8.2f}  {res.candidates:>16,}  {rate:>11,.0f}  {res.bank_sizes}"
              + (f"  ({res.stopped})" if "no expression" not in res.stopped else ""))
    print("\n2. Formulas the tasks need")
    print(f"{'target':<38} {'found':<22} {'length':>6} {'seconds':>8} {'vectors':>10}")
    for label, X, t, names in known_targets(args.rows, args.seed):
        start = time.time()
        res = symbolic.search(X, t, names, symbolic.SearchConfig(max_length=args.max_length, seed=args.seed))
        print(f"{label:<38} {res.expression or '-':<22} {res.length:>6} {time.time() - start:>8.2f} "
              f"{res.candidates:>10,}")


if __name__ == "__main__":
    main()
