"""SELU on a 1M-float vector: eager vs torch.jit.script vs torch.compile (the HUMN chapter's device page).

Prints one line per variant: the best time per SELU, the speed-up over eager, and the
first call (compile time included) for the compiled variants. A variant that cannot run here prints why.

    python benchmarks/humn_device.py
    python benchmarks/humn_device.py --elements 100000 --loop 1000 --threads 1 --no-compile
"""

from __future__ import annotations

import argparse

import torch

from mips.humn.device import VARIANTS, DeviceBenchConfig, benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=DeviceBenchConfig.n_elements)
    parser.add_argument("--loop", type=int, default=DeviceBenchConfig.loop_length, help="SELUs per timed run")
    parser.add_argument("--repeats", type=int, default=DeviceBenchConfig.repeats)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile (it compiles for minutes)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = tuple(v for v in VARIANTS if not (args.no_compile and v == "compile"))
    rows = benchmark(DeviceBenchConfig(args.elements, args.loop, args.repeats, args.device, variants=variants))
    base = rows[0].seconds_per_selu
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.elements} floats, "
          f"{args.loop} SELUs per run, best of {args.repeats}")
    print(f"{'variant':<24}{'us/SELU':>10}{'speed-up':>10}{'first call s':>14}")
    for r in rows:
        if r.seconds_per_selu is None:
            print(f"{r.variant:<24}{'failed':>10}  {r.error}")
            continue
        first = f"{r.first_call_seconds:.2f}" if r.first_call_seconds is not None else ""
        print(f"{r.variant:<24}{r.seconds_per_selu * 1e6:>10.1f}{base / r.seconds_per_selu:>10.2f}{first:>14}")


if __name__ == "__main__":
    main()
