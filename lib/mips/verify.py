"""One verifier for every synthesizer: MIPS programs, LLM programs and tree-search programs alike.

A program's source defines ``f(xs) -> ys`` over Python sequences (ints for dim 1, tuples for dim > 1) and is
judged, always inside the sandbox, on
  (a) the whole hidden test split against the ground truth,
  (b) every input sequence of length 1..L over the task's alphabet against ``task.reference``, with L the
      largest length whose sequences (summed over lengths) fit the budget,
  (c) agreement with the network's rounded outputs on the test split, when those are given.
A task is *solved* when (a) and (b) hold. Explained in notebooks/program.ipynb.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from mips import sandbox
from mips.data import Dataset
from mips.tasks import Task, from_sequence, to_sequence

log = logging.getLogger(__name__)

PASS, WRONG_OUTPUT = "pass", "wrong_output"
EXHAUSTIVE_BATCH = 1 << 17   # sequences per sandbox process in the exhaustive check


@dataclass
class Verdict:
    """How a program fared: (a) test split, (b) exhaustive short sequences, (c) agreement with the network."""

    # "pass" | "wrong_output" | "runtime_error" | "timeout" | "syntax_error" | "no_entry" | "memory_error"
    outcome: str
    test_rows: int               # rows of the hidden test split checked
    test_rows_correct: int       # rows whose every output matches
    test_ok: bool                # (a) all test rows correct
    exhaustive_length: int       # L: every input sequence of length 1..L was checked (0 if not run)
    exhaustive_count: int        # how many sequences that was
    exhaustive_ok: bool          # (b) all of them match task.reference
    network_agreement: float | None  # (c) fraction of test positions where program == network, or None
    counterexample: dict | None  # first failing input, expected, got
    error: str                   # sandbox error text, if any
    seconds: float

    @property
    def solved(self) -> bool:
        """Right on the whole test split and on every short sequence."""
        return self.test_ok and self.exhaustive_ok

    def to_dict(self) -> dict:
        return asdict(self) | {"solved": self.solved}


def exhaustive_length(task: Task, budget: int = 2**20) -> int:
    """Largest L <= seq_len with sum_{l<=L} |alphabet|^(input_dim*l) <= budget (0 if even L=1 is too many)."""
    per_step = len(task.input_values) ** task.input_dim
    total, L = 0, 0
    while L < task.seq_len and total + per_step ** (L + 1) <= budget:
        L += 1
        total += per_step ** L
    return L


def all_sequences(task: Task, length: int) -> Iterator[list]:
    """Every input sequence of one length, in the program convention (ints or tuples), in a fixed order."""
    steps = list(task.input_values) if task.input_dim == 1 else \
        list(itertools.product(task.input_values, repeat=task.input_dim))
    return (list(s) for s in itertools.product(steps, repeat=length))


def _normalize(out, length: int, dim: int) -> list | None:
    """A program's output for one sequence as a list of int tuples, or None if it is malformed.

    Lists stand in for tuples and bools for ints; floats count by value (3.0 == 3), like Python's ``==``.
    """
    if not isinstance(out, list | tuple) or len(out) != length:
        return None
    rows = []
    for v in out:
        vals = list(v) if isinstance(v, list | tuple) else [v]
        if len(vals) != dim or not all(isinstance(e, int | float) for e in vals):
            return None
        rows.append(tuple(vals))
    return rows


def _as_array(outputs: list, shape: tuple[int, int, int]) -> np.ndarray | None:
    """Fast path: well-formed numeric outputs as a float array shaped like the targets, else None."""
    try:
        arr = np.asarray(outputs)
    except (ValueError, TypeError):
        return None
    if arr.dtype.kind not in "biuf":
        return None
    if arr.ndim == 2 and shape[2] == 1:
        arr = arr[..., None]
    return arr.astype(np.float64) if arr.shape == shape else None


def _compare(outputs: list, expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row correctness and the program's outputs as a float array (NaN where a row was malformed)."""
    n, T, d_out = expected.shape
    got = _as_array(outputs, expected.shape)
    if got is None:
        got = np.full((n, T, d_out), np.nan)
        for r, out in enumerate(outputs):
            rows = _normalize(out, T, d_out)
            if rows is not None:
                try:
                    got[r] = np.asarray(rows, dtype=np.float64)
                except OverflowError:            # an int beyond any float (10**400): wrong, not a crash
                    pass
    return np.all(got == expected, axis=(1, 2)), got


def _example(x_row: np.ndarray, expected: np.ndarray, raw, split: str, dim_out: int) -> dict:
    seq = to_sequence(x_row)
    want = to_sequence(expected)
    return {"split": split, "input": seq, "expected": want, "got": raw,
            "length": len(seq), "first_wrong_step": _first_wrong(raw, want, dim_out)}


def _first_wrong(raw, want: list, dim_out: int) -> int | None:
    rows = _normalize(raw, len(want), dim_out)
    if rows is None:
        return None
    for t, (g, w) in enumerate(zip(rows, want, strict=True)):
        if list(g) != (list(w) if isinstance(w, tuple) else [w]):
            return t
    return None


def verify_source(source: str, task: Task, dataset: Dataset, *, entry: str = "f",
                  network_outputs: np.ndarray | None = None, exhaustive_budget: int = 2**20,
                  limits: sandbox.Limits | None = None) -> Verdict:
    """Judge a program's source on (a) the test split, (b) all short sequences, (c) the network's outputs.

    The program runs in the sandbox (one process for the test split, one per batch of short sequences).
    With ``exhaustive_budget=0`` the exhaustive check is not run and (b) holds vacuously (length 0).
    """
    start = time.time()
    limits = limits or sandbox.Limits()
    x_test, y_test = dataset.x_test, dataset.y_test.astype(np.int64)
    res = sandbox.run_program(source, [to_sequence(r) for r in x_test], entry=entry, limits=limits)
    verdict = Verdict(outcome=res.outcome, test_rows=len(x_test), test_rows_correct=0, test_ok=False,
                      exhaustive_length=0, exhaustive_count=0, exhaustive_ok=False, network_agreement=None,
                      counterexample=None, error=res.error, seconds=0.0)
    if res.outcome != sandbox.OK:
        verdict.counterexample = _crash_example(res, None, task, "test", x_test)
        verdict.seconds = time.time() - start
        return verdict
    ok, got = _compare(res.outputs, y_test)
    verdict.test_rows_correct = int(ok.sum())
    verdict.test_ok = bool(ok.all())
    if network_outputs is not None:
        net = np.asarray(network_outputs, dtype=np.int64).reshape(y_test.shape)
        verdict.network_agreement = float(np.mean(np.all(got == net, axis=2)))
    test_counterexample = None
    if not verdict.test_ok:
        r = int(np.flatnonzero(~ok)[0])
        test_counterexample = _example(x_test[r], y_test[r], res.outputs[r], "test", task.output_dim)

    L = exhaustive_length(task, exhaustive_budget) if exhaustive_budget > 0 else 0
    verdict.exhaustive_length = L
    exhaustive = _exhaustive(source, task, L, entry, limits)
    verdict.exhaustive_count, verdict.exhaustive_ok = exhaustive["count"], exhaustive["ok"]
    if exhaustive["outcome"] != sandbox.OK:
        verdict.outcome, verdict.error = exhaustive["outcome"], exhaustive["error"]
    else:
        verdict.outcome = PASS if verdict.solved else WRONG_OUTPUT
    # A short counterexample reads better than a long one.
    verdict.counterexample = exhaustive["counterexample"] or test_counterexample
    verdict.seconds = time.time() - start
    return verdict


def _exhaustive(source: str, task: Task, L: int, entry: str, limits: sandbox.Limits) -> dict:
    """Check every sequence of length 1..L in increasing length; stop at the first failing batch."""
    count = 0
    for length in range(1, L + 1):
        seqs = all_sequences(task, length)
        while batch := list(itertools.islice(seqs, EXHAUSTIVE_BATCH)):
            res = sandbox.run_program(source, batch, entry=entry, limits=limits)
            if res.outcome != sandbox.OK:
                return {"ok": False, "count": count, "outcome": res.outcome,
                        "counterexample": _crash_example(res, batch, task, "exhaustive"),
                        "error": f"on sequences of length {length}: {res.error}"}
            x = np.asarray(batch, dtype=np.int64).reshape(len(batch), length, task.input_dim)
            expected = np.asarray([task.reference(list(s)) for s in batch], dtype=np.int64)
            expected = expected.reshape(len(batch), length, task.output_dim)
            ok, _ = _compare(res.outputs, expected)
            if not ok.all():
                r = int(np.flatnonzero(~ok)[0])
                count += r
                return {"ok": False, "count": count, "outcome": sandbox.OK, "error": "",
                        "counterexample": _example(x[r], expected[r], res.outputs[r], "exhaustive",
                                                   task.output_dim)}
            count += len(batch)
    return {"ok": True, "count": count, "outcome": sandbox.OK, "counterexample": None, "error": ""}


def _crash_example(res: sandbox.SandboxResult, batch: list | None, task: Task, split: str,
                   x: np.ndarray | None = None) -> dict | None:
    """The input a program raised on, when the sandbox names its row ("row 12: ...")."""
    m = re.match(r"row (\d+):", res.error or "")
    if not m:
        return None
    r = int(m.group(1))
    seq = batch[r] if batch is not None else to_sequence(x[r])
    return {"split": split, "input": seq, "expected": task.reference(list(seq)), "got": None,
            "length": len(seq), "first_wrong_step": None, "error": res.error}


def program_outputs(source: str, task: Task, x: np.ndarray, entry: str = "f",
                    limits: sandbox.Limits | None = None) -> np.ndarray:
    """A program's outputs on rows of x (n, T, I), run in the sandbox: (n, T, O) floats, NaN where malformed.

    Raises RuntimeError with the sandbox's message if the program does not run.
    """
    res = sandbox.run_program(source, [to_sequence(r) for r in x], entry=entry, limits=limits or sandbox.Limits())
    if res.outcome != sandbox.OK:
        raise RuntimeError(f"the program did not run ({res.outcome}): {res.error}")
    return _compare(res.outputs, np.zeros((len(x), x.shape[1], task.output_dim)))[1]


def verdict_table(verdict: dict) -> str:
    """The three checks as a Markdown table (check, what was checked, result) for the book."""
    def mark(ok: bool | None) -> str:
        return "—" if ok is None else ("pass" if ok else "**fail**")

    agreement = verdict.get("network_agreement")
    rows = [
        ("(a) test split", f"{verdict.get('test_rows', 0):,} hidden test sequences against the targets; "
                           f"{verdict.get('test_rows_correct', 0):,} right", mark(verdict.get("test_ok"))),
        ("(b) exhaustive", f"all {verdict.get('exhaustive_count', 0):,} input sequences of length "
                           f"1..{verdict.get('exhaustive_length', 0)} against the task's reference",
         mark(verdict.get("exhaustive_ok"))),
        ("(c) network", "test positions where program and network agree" if agreement is not None
         else "no network outputs given", "—" if agreement is None else f"{100 * agreement:.3f}%"),
    ]
    return "| check | what | result |\n|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)


def verify_function(fn, task: Task, x: np.ndarray) -> np.ndarray:
    """Run a trusted in-process ``fn`` on rows of x (n, T, I) and return its outputs (n, T, O).

    For the project's own code (references, freshly emitted programs in tests); untrusted code must go
    through :func:`verify_source`.
    """
    return np.stack([from_sequence(fn(to_sequence(r)), task.output_dim) for r in x])
