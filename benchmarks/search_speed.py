"""How long the architecture search takes: the original's procedure against the project's, per task.

(a) benchmarks/original_search.py: one network at a time, seeds one after another, batch 4096, a 65,536-row
    test batch every 100 steps, the geometric sweep and the bisection (spec §7-§8).
(b) mips.search with the full preset: candidates simplest first (depths, representation, size), each group
    of candidates and seeds trained as one stack with successive halving, batch 256, early stops, success
    checked on the whole test split.

Both get the same step budget per network (``--steps``; the paper's is 10,000 or 20,000) and the same
number of torch threads. The original can be capped (``--original-max-seconds``): a capped run did not
finish, so its time and the ratio are lower bounds and are printed with ">=".

Then the raw training throughput of (b)'s batched step, in sequence-steps per second, for M networks in one
stack against the same networks one at a time (and the original's module loop), at equal batch sizes:
the gain from batching alone, apart from the search strategy.

    .venv/bin/python benchmarks/search_speed.py --tasks Sum_All,Parity_All,Add_Mod_5 --steps 2000
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import original_search as original  # noqa: E402

from mips.data import dataset_for  # noqa: E402
from mips.models import RNNConfig  # noqa: E402
from mips.search import search, search_config  # noqa: E402
from mips.tasks import get_task  # noqa: E402
from mips.train import Member, RNNStack, StackedAdamW, TrainData, elementwise_loss  # noqa: E402


def label(arch) -> str:
    """An original (od, hd, h, ow, hw) tuple in the project's notation."""
    od, hd, h, ow, hw = arch
    return RNNConfig(1, 1, h, hd, hw, od, ow).label()


def compare(task_name: str, steps: int, max_seconds: float | None) -> dict:
    """Run both searches on one task; return their outcomes."""
    task = get_task(task_name)
    ds = dataset_for(task, "full")
    print(f"\n{task.name}: {len(ds.x_train):,} train / {len(ds.x_test):,} test rows, {steps:,} steps per network",
          flush=True)

    config = dataclasses.replace(search_config("full"), steps=steps)
    t0 = time.perf_counter()
    ours = search(task, TrainData.from_dataset(ds), config)
    ours_s = time.perf_counter() - t0
    found = ours.best.label if ours.success else f"none (best {ours.best.label})"
    print(f"  project : {found:<22} {ours_s:8.1f} s   {len(ours.trace)} candidates, "
          f"{sum(o.network_steps for o in ours.trace):,} network-steps", flush=True)

    data = original.load_data(task)
    theirs = original.architecture_search(data, task.input_dim, task.output_dim, steps,
                                          max_seconds=max_seconds, log=lambda s: None)
    done = "" if theirs.finished else " (capped, unfinished)"
    t_found = label(theirs.found) if theirs.found else ("none" if theirs.finished else "not yet")
    print(f"  original: {t_found:<22} {theirs.seconds:8.1f} s   {theirs.networks_trained} networks, "
          f"{theirs.steps_trained:,} network-steps{done}", flush=True)
    bound = "" if theirs.finished else ">="
    print(f"  speed-up: {bound}{theirs.seconds / ours_s:.1f}x", flush=True)
    return {"task": task.name, "ours": found, "ours_s": ours_s, "theirs": t_found, "theirs_s": theirs.seconds,
            "finished": theirs.finished}


def throughput(batch_sizes=(256, 4096), n_steps: int = 30) -> None:
    """Sequence-steps per second of a training step: M stacked networks vs. one at a time."""
    task = get_task("Parity_All")
    ds = dataset_for(task, "full")
    x_all, y_all = torch.as_tensor(ds.x_train[:65_536]).float(), torch.as_tensor(ds.y_train[:65_536]).float()
    window = [RNNConfig(1, 1, h, 2, w) for h, w in ((1, 4), (1, 8), (1, 16), (2, 4))]
    members = [Member(c, s) for c in window for s in range(3)]
    T = x_all.shape[1]
    print(f"\nraw training throughput, a window of {len(window)} ReLU candidates x 3 seeds "
          f"({', '.join(c.label() for c in window)}), T={T}, sequence-steps per second:")

    def timed(step_fn) -> float:
        for _ in range(3):
            step_fn()
        t0 = time.perf_counter()
        for _ in range(n_steps):
            step_fn()
        return (time.perf_counter() - t0) / n_steps

    for B in batch_sizes:
        x, y = x_all[:B], y_all[:B]

        def stack_step(ms, x=x, y=y):
            stack = RNNStack(ms)
            opt = StackedAdamW(stack.params)

            def step():
                loss = elementwise_loss(stack.forward(x), y.transpose(0, 1), "log").flatten(1).mean(1).sum()
                for p in stack.params:
                    p.grad = None
                loss.backward()
                opt.step()
            return step

        def module_step(c: RNNConfig, seed: int, x=x, y=y):
            original.set_seeds(seed)
            model = original.GeneralRNN(c.input_dim, c.output_dim, c.hidden_dim, c.hidden_depth, c.hidden_width,
                                        c.output_depth, c.output_width)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)

            def step():
                model.zero_grad()
                original.log_loss(model.forward_sequence(x)[0], y).mean().backward()
                opt.step()
            return step

        same = [Member(window[-1], s) for s in range(len(members))]      # no padding: one architecture
        seq = len(members) * B * T
        batched, padded = timed(stack_step(same)), timed(stack_step(members))
        one_by_one = sum(timed(stack_step([m])) for m in members)
        modules = sum(timed(module_step(m.config, m.seed)) for m in members)
        print(f"  batch {B:>5}: window stacked (padded) {seq / padded:>11,.0f}   "
              f"one at a time {seq / one_by_one:>11,.0f}   original's module loop {seq / modules:>11,.0f}   "
              f"batching gain {one_by_one / padded:.1f}x", flush=True)
        one = timed(stack_step(same[:1])) * len(same)
        print(f"  batch {B:>5}: {len(same)} x {window[-1].label()} stacked {seq / batched:>11,.0f}   one at a time "
              f"{seq / one:>11,.0f}   batching gain {one / batched:.1f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="Sum_All,Parity_All,Add_Mod_5")
    ap.add_argument("--steps", type=int, default=2000, help="training steps per network, for both searches")
    ap.add_argument("--original-max-seconds", type=float, default=600.0,
                    help="cap on the original's search per task (0 = none)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads, for both")
    ap.add_argument("--skip-search", action="store_true", help="only the throughput figures")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"budget: {args.steps:,} steps per network; original capped at "
          f"{args.original_max_seconds or 'no limit'} s per task; {args.threads} torch thread(s)")
    rows = []
    if not args.skip_search:
        for name in args.tasks.split(","):
            rows.append(compare(name.strip(), args.steps, args.original_max_seconds or None))
    if rows:
        print(f"\n{'task':<16} {'original':>22} {'s':>8} {'project':>22} {'s':>8} {'speed-up':>9}")
        for r in rows:
            bound = "" if r["finished"] else ">="
            print(f"{r['task']:<16} {r['theirs']:>22} {r['theirs_s']:8.1f} {r['ours']:>22} {r['ours_s']:8.1f} "
                  f"{bound + format(r['theirs_s'] / r['ours_s'], '.1f') + 'x':>9}")
        total_t, total_o = sum(r["theirs_s"] for r in rows), sum(r["ours_s"] for r in rows)
        bound = "" if all(r["finished"] for r in rows) else ">="
        print(f"{'all':<16} {'':>22} {total_t:8.1f} {'':>22} {total_o:8.1f} {bound}{total_t / total_o:.1f}x")
    throughput()


if __name__ == "__main__":
    main()
