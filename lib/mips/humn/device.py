"""The original's device micro-benchmark, in PyTorch: SELU on a vector, eager vs ``jit.script`` vs ``compile``.

It has nothing to do with the model; the original kept it to choose a backend. Three ways to apply SELU
``loop_length`` times to a vector of ``n_elements`` floats are timed, each the best of ``repeats`` runs:

- ``eager``: a Python loop of ``torch.selu`` calls (each call one pass over memory);
- ``jit.script``: the same function compiled by TorchScript (the loop runs in the TorchScript interpreter);
- ``compile``: that function compiled by ``torch.compile`` (inductor can fuse the whole chain into one
  pass over memory). Its first call, which compiles, is timed separately. Where compilation fails (it
  needs a C compiler), the row says so instead of a time. Compiling takes minutes on a busy 2-core
  machine, so ``variants`` can leave it out (the book's smoke preset does, and says so).

Run it with ``python benchmarks/humn_device.py``. Explained in notebooks/humn_device.ipynb.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import torch

log = logging.getLogger(__name__)


VARIANTS = ("eager", "jit.script", "compile")


@dataclass
class DeviceBenchConfig:
    n_elements: int = 1_000_000   # floats in the vector (the original's size)
    loop_length: int = 100        # SELUs per timed run (the original: 1000 in the jitted loop)
    repeats: int = 5              # timed runs per variant; the best counts
    device: str = "cpu"
    seed: int = 0
    variants: tuple[str, ...] = VARIANTS  # which of VARIANTS to time

    def __post_init__(self) -> None:
        unknown = set(self.variants) - set(VARIANTS)
        if unknown:
            raise ValueError(f"unknown variant(s) {sorted(unknown)}; variants are {', '.join(VARIANTS)}")


@dataclass
class DeviceTiming:
    """One variant's figure: the best seconds per SELU, or why there is none."""

    variant: str
    seconds_per_selu: float | None
    first_call_seconds: float | None = None   # compile time included (jit.script, compile)
    error: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def selu_loop(x: torch.Tensor, n: int) -> torch.Tensor:
    """Apply SELU ``n`` times."""
    for _ in range(n):
        x = torch.selu(x)
    return x


def _best(fn, x: torch.Tensor, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        if x.is_cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def _first(fn, x: torch.Tensor) -> float:
    t = time.perf_counter()
    fn(x)
    return time.perf_counter() - t


def benchmark(config: DeviceBenchConfig | None = None) -> list[DeviceTiming]:
    """Time eager SELU (always: it is the reference) and the chosen compiled variants."""
    c = config or DeviceBenchConfig()
    n = c.loop_length
    gen = torch.Generator().manual_seed(c.seed)
    x = torch.randn(c.n_elements, generator=gen).to(c.device)
    reference = selu_loop(x, n)
    out = [DeviceTiming("eager", _best(lambda v: selu_loop(v, n), x, c.repeats) / n)]
    if "jit.script" in c.variants:
        out.append(_time_scripted(x, reference, c))
    if "compile" in c.variants:
        out.append(_time_compiled(x, reference, c))
    for row in out:
        log.info("%-22s %s", row.variant, f"{row.seconds_per_selu * 1e6:.1f} us/SELU" if row.seconds_per_selu
                 else row.error)
    return out


def _time_scripted(x: torch.Tensor, reference: torch.Tensor, c: DeviceBenchConfig) -> DeviceTiming:
    n = c.loop_length
    try:
        scripted = torch.jit.script(selu_loop)
        first = _first(lambda v: scripted(v, n), x)
        _check(scripted(x, n), reference, "jit.script")
        return DeviceTiming("jit.script", _best(lambda v: scripted(v, n), x, c.repeats) / n, first)
    except Exception as exc:  # a backend that does not work here is a result, reported on the page
        return DeviceTiming("jit.script", None, None, _error(exc))


def _time_compiled(x: torch.Tensor, reference: torch.Tensor, c: DeviceBenchConfig) -> DeviceTiming:
    n = c.loop_length
    try:
        compiled = torch.compile(lambda v: selu_loop(v, n))
        first = _first(compiled, x)
        _check(compiled(x), reference, "compile")
        return DeviceTiming("compile", _best(compiled, x, c.repeats) / n, first)
    except Exception as exc:  # e.g. no C compiler: reported on the page, not hidden
        return DeviceTiming("compile", None, None, _error(exc))


def _error(exc: BaseException) -> str:
    lines = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _check(got: torch.Tensor, want: torch.Tensor, name: str) -> None:
    """A compiled variant must agree with eager SELU within 1e-4.

    Not bit for bit: a compiler may evaluate ``exp(x) - 1`` as ``expm1(x)``, which differs near 0 by a
    rounding error that each further SELU (slope about 1.76 there) amplifies.
    """
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-4):
        err = (got - want).abs().max().item()
        raise ArithmeticError(f"{name} differs from eager SELU by up to {err:.2e} (more than 1e-4)")
