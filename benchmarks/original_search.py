"""The original MIPS architecture search, re-implemented from its description (spec §7-§8) as a baseline.

Written for benchmarks/search_speed.py; nothing here uses the library's training or search code. What it
reproduces, on purpose:

* GeneralRNN: h_0 = 0, h_t = f([h_{t-1}, x_t]), y_t = g(h_t), f and g MLPs (nn.Sequential, ReLU between
  layers), stepped one time step at a time with the output MLP applied at every step.
* Training one network: seeds set before init and again before the loaders; shuffled epochs of the whole
  training split (a permutation and a copy per epoch), batch 4096, AdamW(lr=1e-3, weight_decay=0), the
  ``log`` loss, train accuracy computed every step; every 100 steps (and at the last) accuracy on the next
  batch of 65,536 test rows. A network "succeeds" if any of those batch accuracies is 1.0.
* The search: architectures as a mixed-radix integer (output depth, hidden depth, hidden dim, output width,
  hidden width; ranges 3, 3, 128, 256, 256), a geometric sweep n <- int(n * 2**0.25) from n = 256 * 256
  skipping equivalent architectures, seeds 0..4 one after another until one succeeds, then bisection between
  n // 2 and the first success, copying the outcome of an equivalent neighbour.

It does not write the original's per-run folders (checkpoints, metrics, yaml): a few milliseconds per network.

Run alone:  .venv/bin/python benchmarks/original_search.py Sum_All --steps 2000
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

RANGES = [(1, 3), (1, 3), (1, 128), (1, 256), (1, 256)]   # od, hd, hidden_dim, ow, hw (most significant first)


# ---------------------------------------------------------------------------------------------------------
# The model


class MLP(nn.Module):
    """Linear layers with ReLU between them, none after the last."""

    def __init__(self, d_in: int, d_out: int, width: int, depth: int):
        super().__init__()
        shp = [d_in] + [width] * (depth - 1) + [d_out]
        layers: list[nn.Module] = []
        for i in range(depth):
            layers.append(nn.Linear(shp[i], shp[i + 1]))
            if i < depth - 1:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)

    def forward(self, x):
        return self.mlp(x)


class GeneralRNN(nn.Module):
    """The paper's GeneralRNN, stepped one time step at a time as the original does."""

    def __init__(self, input_dim, output_dim, hidden_dim, hidden_depth, hidden_width, output_depth,
                 output_width):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.hmlp = MLP(hidden_dim + input_dim, hidden_dim, hidden_width, hidden_depth)
        self.ymlp = MLP(hidden_dim, output_dim, output_width, output_depth)

    def forward(self, x_t, h):
        h = self.hmlp(torch.cat([h, x_t], dim=1))
        return self.ymlp(h), h

    def forward_sequence(self, x):
        h = torch.zeros(x.shape[0], self.hidden_dim)
        outs = []
        for t in range(x.shape[1]):
            y, h = self.forward(x[:, t, :], h)
            outs.append(y)
        return torch.stack(outs, dim=1), h


# ---------------------------------------------------------------------------------------------------------
# Data loading as the original does it


class FastTensorDataLoader:
    """Batches of tensors; with shuffle, a fresh permutation (and copy) of the whole split per epoch."""

    def __init__(self, *tensors, batch_size: int, shuffle: bool):
        self.tensors, self.batch_size, self.shuffle = tensors, batch_size, shuffle
        self.n = len(tensors[0])

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.n)                 # one permutation for x and y together
            self.data = [t[order] for t in self.tensors]
        else:
            self.data = self.tensors
        self.i = 0
        return self

    def __next__(self):
        if self.i >= self.n:
            raise StopIteration
        batch = tuple(t[self.i:self.i + self.batch_size] for t in self.data)
        self.i += self.batch_size
        return batch

    def __len__(self):
        return math.ceil(self.n / self.batch_size)


def cycle(iterable):
    while True:
        yield from iterable


def set_seeds(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def log_loss(y_pred, y):
    return 0.5 * torch.log(1 + (y_pred - y) ** 2)


# ---------------------------------------------------------------------------------------------------------
# Training one network


def train_network(data, arch: tuple[int, int, int, int, int], seed: int, steps: int, input_dim: int,
                  output_dim: int, train_batch: int = 4096, test_batch: int = 65_536) -> list[float]:
    """Train one GeneralRNN (arch = od, hd, h, ow, hw); return its test-batch accuracies."""
    od, hd, h, ow, hw = arch
    x_train, y_train, x_test, y_test = data
    set_seeds(seed)
    model = GeneralRNN(input_dim, output_dim, h, hd, hw, od, ow)
    set_seeds(seed)
    train_loader = cycle(FastTensorDataLoader(x_train, y_train, batch_size=train_batch, shuffle=True))
    test_loader = cycle(FastTensorDataLoader(x_test, y_test, batch_size=test_batch, shuffle=True))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    test_accuracies, train_losses, train_accuracies = [], [], []
    for step in range(steps):
        if step % 100 == 0 or step == steps - 1:
            model.eval()
            with torch.no_grad():
                x, y = next(test_loader)
                y_pred, _ = model.forward_sequence(x)
                test_accuracies.append((torch.round(y_pred) == y).float().mean().item())
        model.train()
        model.zero_grad()
        x, y = next(train_loader)
        y_pred, _ = model.forward_sequence(x)
        loss = log_loss(y_pred, y).mean()
        train_losses.append(loss.item())
        train_accuracies.append((torch.round(y_pred) == y).float().mean().item())
        loss.backward()
        optimizer.step()
    return test_accuracies


# ---------------------------------------------------------------------------------------------------------
# The search


def range_product(ranges=RANGES) -> int:
    out = 1
    for lo, hi in ranges:
        out *= hi - lo + 1
    return out


def int_to_tuple(i: int, ranges=RANGES) -> tuple[int, ...]:
    """Mixed-radix decoding, most significant first; values past the end clamp to the last."""
    i = min(i, range_product(ranges) - 1)
    out = []
    for lo, hi in reversed(ranges):
        size = hi - lo + 1
        out.append(i % size + lo)
        i //= size
    return tuple(reversed(out))


def equivalent(n1: int, n2: int, ranges=RANGES) -> bool:
    """Same network: equal depths and hidden dim, and widths equal where their depth is above 1."""
    t1, t2 = int_to_tuple(n1, ranges), int_to_tuple(n2, ranges)
    same = t1[:3] == t2[:3]
    if not t1[0] == t2[0] == 1:
        same = same and t1[3] == t2[3]
    if not t1[1] == t2[1] == 1:
        same = same and t1[4] == t2[4]
    return same


@dataclass
class OriginalSearch:
    """The outcome: the architecture found (od, hd, h, ow, hw) or None, what was trained, how long it took."""

    found: tuple[int, ...] | None = None
    seed: int | None = None
    finished: bool = True
    networks_trained: int = 0
    steps_trained: int = 0
    seconds: float = 0.0
    configs: list[tuple[tuple[int, ...], str]] = field(default_factory=list)


def architecture_search(data, input_dim: int, output_dim: int, steps: int, seeds_per_run: int = 5,
                        max_seconds: float | None = None, log=print) -> OriginalSearch:
    """The geometric sweep then the bisection; stops early (finished=False) past ``max_seconds``."""
    start = time.perf_counter()
    out = OriginalSearch()
    N = range_product()

    class OutOfTime(Exception):
        pass

    def try_arch(n: int) -> bool:
        arch = int_to_tuple(n)
        for seed in range(seeds_per_run):
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                raise OutOfTime
            accs = train_network(data, arch, seed, steps, input_dim, output_dim)
            out.networks_trained += 1
            out.steps_trained += steps
            if max(accs) == 1.0:
                out.configs.append((arch, f"succeeded (seed {seed})"))
                log(f"  original: {arch} succeeded with seed {seed}")
                return True
        out.configs.append((arch, "failed"))
        log(f"  original: {arch} failed")
        return False

    try:
        n, prev_n, success_n = 256 * 256, -1, None
        while n <= 2 * N:
            if equivalent(n, prev_n):
                prev_n, n = n, int(n * 2 ** 0.25)
                continue
            if try_arch(n):
                success_n = n
                break
            prev_n, n = n, int(n * 2 ** 0.25)
        if success_n is not None:
            prev_n, failed_n = success_n, success_n // 2
            while success_n - failed_n > 1:
                n = (success_n + failed_n) // 2
                if equivalent(n, prev_n):
                    if prev_n == success_n:
                        success_n = n
                    else:
                        failed_n = n
                    prev_n = n
                    continue
                if try_arch(n):
                    success_n = n
                else:
                    failed_n = n
                prev_n = n
            out.found = int_to_tuple(success_n)
    except OutOfTime:
        out.finished = False
    out.seconds = time.perf_counter() - start
    return out


def load_data(task, preset: str = "full"):
    """The project's dataset for a task as the original's float tensors (x (n,T,I), y (n,T,O))."""
    from mips.data import dataset_for

    ds = dataset_for(task, preset)
    conv = lambda a: torch.as_tensor(a).float()
    return conv(ds.x_train), conv(ds.y_train), conv(ds.x_test), conv(ds.y_test)


def main() -> None:
    from mips.tasks import get_task

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task")
    ap.add_argument("--steps", type=int, default=2000, help="training steps per network (the paper: 10k/20k)")
    ap.add_argument("--max-seconds", type=float, default=None, help="stop the search after this long")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    result = architecture_search(load_data(task), task.input_dim, task.output_dim, args.steps,
                                 max_seconds=args.max_seconds)
    print(result)


if __name__ == "__main__":
    main()
