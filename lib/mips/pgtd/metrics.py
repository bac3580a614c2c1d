"""The paper's metrics (spec §1.9) on one search result: the pick's private pass rate and strict accuracy,
n@k, compile and runtime error rates, model calls and wall time, plus per-test outcomes for the heatmaps.

Private tests are the project's verifier (:func:`mips.pgtd.problems.private_verdict`): the **pass rate**
is the fraction of hidden test rows the picked program gets right, **strict** means it passes the whole
hidden split and every short sequence (the book's "solved"). Explained in notebooks/pgtd.ipynb.
"""

from __future__ import annotations

import numpy as np

from mips.pgtd.problems import COMPILE, RUNTIME, TIMEOUT, Problem, run_tests
from mips.pgtd.tree import Candidate, SearchResult


class Verdicts:
    """Private verdicts memoised by program text (a program is verified once per problem)."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self._memo: dict[str, dict] = {}

    def __call__(self, program: str) -> dict:
        from mips.pgtd.problems import private_verdict

        if program not in self._memo:
            v = private_verdict(self.problem, program)
            self._memo[program] = {"pass_rate": v["test_rows_correct"] / max(1, v["test_rows"]),
                                   "strict": bool(v["solved"]), "outcome": v["outcome"]}
        return self._memo[program]


def top_n(candidates: list[Candidate], n: int, k: int | None) -> list[Candidate]:
    """The n best of the first k candidates by public score (earliest first among equals)."""
    pool = candidates[:k] if k else candidates
    return sorted(pool, key=lambda c: -c.reward)[:n]


def n_at_k(candidates: list[Candidate], verdicts: Verdicts, n: int = 1, k: int | None = None) -> dict:
    """n@k: rank the first k candidates by public score, keep n, report the best private result."""
    chosen = top_n(candidates, n, k)
    if not chosen:
        return {"pass_rate": 0.0, "strict": False}
    vs = [verdicts(c.program) for c in chosen]
    return {"pass_rate": max(v["pass_rate"] for v in vs), "strict": any(v["strict"] for v in vs)}


def summarize(result: SearchResult, verdicts: Verdicts, k_list: tuple = (1, 4, None),
              private_rows: int = 8) -> dict:
    """One algorithm on one problem: the pick, its public and private results, n@k, errors and costs."""
    problem = verdicts.problem
    best = result.best()
    out = {"algorithm": result.algorithm, "n_candidates": len(result.candidates),
           "rollouts": result.rollouts, "evaluations": result.evaluations, "lm_calls": result.total_lm_calls,
           "lm_calls_by_kind": dict(result.lm_calls), "lm_tokens": result.lm_tokens,
           "seconds": result.seconds, "lm_seconds": result.lm_seconds, "tree_nodes": result.tree_nodes}
    if best is None:
        return out | {"public_pass_rate": 0.0, "public_strict": False, "pass_rate": 0.0, "strict": False,
                      "program": None, "tests": []}
    v = verdicts(best.program)
    outs = [c.public for c in result.candidates]
    compile_err = [np.mean([o == COMPILE for o in t]) for t in outs]
    runtime_err = [np.mean([o in (RUNTIME, TIMEOUT) for o in t]) for t in outs]
    private = run_tests(best.program, problem.private_rows(private_rows)) if private_rows else []
    out |= {
        "program": best.program, "found_at": best.rollout, "found_seconds": best.seconds,
        "public_pass_rate": best.reward, "public_strict": best.reward == 1.0,
        "pass_rate": v["pass_rate"], "strict": v["strict"], "private_outcome": v["outcome"],
        "compile_error_rate": float(np.mean(compile_err)), "runtime_error_rate": float(np.mean(runtime_err)),
        "has_compile_error": bool(any(compile_err)), "has_runtime_error": bool(any(runtime_err)),
        "n_at_k": {str(k or "all"): n_at_k(result.candidates, verdicts, 1, k) for k in k_list},
        "tests": [{"test": f"public {i}", "outcome": o} for i, o in enumerate(best.public)] +
                 [{"test": f"private {i}", "outcome": o} for i, o in enumerate(private)],
    }
    return out
