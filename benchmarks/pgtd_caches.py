"""PG-TD's caches: model calls, test runs and wall time with each cache on and off, on a couple of tasks.

Prints one line per (task, setting). The search is deterministic, so every setting must score the same
programs; the last column says whether it did.

    python benchmarks/pgtd_caches.py                              # the tiny program GPT (seconds)
    python benchmarks/pgtd_caches.py --backend local --budget 4 --horizon 32 --tasks Sum_All
"""

from __future__ import annotations

import argparse
import time

import torch

from mips.pgtd import PGTDConfig, cache_ablation, make_lm, make_problem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="tiny", help="tiny | local | server | chat")
    parser.add_argument("--tasks", default="Add_Mod_5,Prev2", help="comma-separated task names")
    parser.add_argument("--budget", type=int, default=16, help="PG-TD rollouts")
    parser.add_argument("--horizon", type=int, default=256, help="new tokens per program")
    parser.add_argument("--action", default="token", choices=("token", "line"))
    parser.add_argument("--preset", default="smoke", help="dataset size of the private check")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    lm = make_lm(args.backend)
    print(f"model {lm.name} ready in {time.time() - start:.1f} s; budget {args.budget} rollouts, "
          f"horizon {args.horizon}, {args.action} actions", flush=True)
    print(f"{'task':<12} {'setting':<18} {'top-k':>6} {'rollout':>8} {'calls':>6} {'tests':>6} {'tokens':>7} "
          f"{'seconds':>8}  same programs")
    for name in args.tasks.split(","):
        problem = make_problem(name.strip(), args.preset)
        cfg = PGTDConfig(budget=args.budget, horizon=args.horizon, action=args.action)
        for r in cache_ablation(problem, lm, cfg):
            print(f"{name:<12} {r['setting']:<18} {r['topk calls']:>6} {r['rollout calls']:>8} {r['lm calls']:>6} "
                  f"{r['test runs']:>6} {r['lm tokens']:>7} {r['seconds']:>8.2f}  {r['same_programs']}", flush=True)


if __name__ == "__main__":
    main()
