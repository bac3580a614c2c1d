"""The baselines PG-TD is compared with (spec §1.6), producing the same :class:`SearchResult`.

- **Sampling + filtering**: ``n_samples`` independent completions (top-k = width = 3, temperature 1 as in
  the original's code; the temperature is swept in the notebook), each scored on the public tests; the
  pick is the best public score, earliest on ties. Given PG-TD's budget, it makes the same number of
  program evaluations.
- **Beam search**: one program, the top beam (``num_beams = 5``).
- **Greedy**: one program, the greedy continuation (PG-TD's first rollout).

Explained in notebooks/pgtd.ipynb.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mips.pgtd.lm import LM
from mips.pgtd.problems import Problem
from mips.pgtd.tree import Candidate, ProgramEnv, SearchResult


@dataclass
class SamplingConfig:
    """Sampling + filtering: how many programs, from which distribution."""

    n_samples: int = 16
    temperature: float = 1.0
    top_k: int = 3
    horizon: int = 256
    seed: int = 0


def _result(name: str, env: ProgramEnv, lm: LM, calls0: dict, sec0: float, tok0: int, n: int,
            config: dict) -> SearchResult:
    calls = {k: v - calls0.get(k, 0) for k, v in lm.calls.items() if v - calls0.get(k, 0)}
    return SearchResult(algorithm=name, candidates=env.candidates, lm_calls=calls, rollouts=n,
                        evaluations=env.evaluations, seconds=round(time.time() - env.start, 3),
                        lm_seconds=round(lm.seconds - sec0, 3), lm_tokens=lm.tokens - tok0, config=config)


class _AllSamples(ProgramEnv):
    """Keeps every sample as a candidate (duplicates too: n@k counts samples), runs each program once."""

    def score(self, program: str, record: bool = True) -> float:
        reward = super().score(program, record=False)
        self.candidates.append(_candidate(self, program, reward))
        return reward


def _candidate(env: ProgramEnv, program: str, reward: float) -> Candidate:
    return Candidate(program, env.cached_reward[program][1], reward, env.iteration,
                     round(time.time() - env.start, 3))


def sampling(problem: Problem, lm: LM, config: SamplingConfig | None = None) -> SearchResult:
    """Sampling + filtering: ``n_samples`` seeded samples, every one scored on the public tests."""
    cfg = config or SamplingConfig()
    env = _AllSamples(problem, lm, cfg.horizon)
    calls0, sec0, tok0 = dict(lm.calls), lm.seconds, lm.tokens
    for i in range(cfg.n_samples):
        env.iteration = i
        r = lm.sample(env.prompt, cfg.horizon, env.stop, cfg.temperature, cfg.top_k, cfg.seed + i)
        env.reward(env.prompt + r.pieces)
    return _result("sampling", env, lm, calls0, sec0, tok0, cfg.n_samples, vars(cfg).copy())


def beam_search(problem: Problem, lm: LM, num_beams: int = 5, horizon: int = 256) -> SearchResult:
    """The top beam of a beam search: one program."""
    env = ProgramEnv(problem, lm, horizon)
    calls0, sec0, tok0 = dict(lm.calls), lm.seconds, lm.tokens
    r = lm.beam(env.prompt, horizon, env.stop, num_beams)
    env.reward(env.prompt + r.pieces)
    return _result("beam", env, lm, calls0, sec0, tok0, 1, {"num_beams": num_beams, "horizon": horizon})


def greedy(problem: Problem, lm: LM, horizon: int = 256) -> SearchResult:
    """The greedy continuation: one program."""
    env = ProgramEnv(problem, lm, horizon)
    calls0, sec0, tok0 = dict(lm.calls), lm.seconds, lm.tokens
    r = lm.greedy(env.prompt, horizon, env.stop)
    env.reward(env.prompt + r.pieces)
    return _result("greedy", env, lm, calls0, sec0, tok0, 1, {"horizon": horizon})
