"""PG-TD: Monte-Carlo tree search over decoding, each leaf scored by running its program on the tests.

The MDP (spec §1.2): a state is the prompt followed by the partial program; an action is one token
(``action="token"``, faithful) or one line (``action="line"``, the research notes' variant); a state is
terminal at EOS, when the function body ends (a line that is not indented) or at ``horizon`` new tokens.
Only terminal states carry a reward: the fraction of public tests (the prompt's examples) the program
passes. One iteration (dyna_gym's ``mcts_procedure``, §1.3):

1. **selection**: from the root, take ``argmax`` P-UCB over a decision node's chance nodes;
2. **expansion**: the first state not yet in the tree gets a decision node whose ``width`` children carry
   the model's top-k next actions with the prior renormalised over the k;
3. **evaluation**: a greedy rollout to a complete program, scored on the public tests;
4. **backpropagation**: each chance node on the path appends the return; Q = the **max** of its returns.

P-UCB (``var_p_uct``): Q + β(N)·P(a|s)·√(log N)/(1 + n), β(N) = log((N + c_base + 1)/c_base) + c, with N the
parent's visits (starting at 1) and n the child's number of returns. The candidate programs are every
program scored during search, in order; the final pick is the best public score, earliest on ties.

Three caches (§1.5), each with a switch so its saving is measured: the **top-k cache** (a greedy rollout
also yields the top-k at each of its positions, so expanding a node on that path needs no model call),
the **sequence cache** (a greedy continuation of a state on a cached greedy output is that output) and the
**reward cache** (a program is run on the tests once). The original's prompt cache flag is a no-op
(``# todo`` there), and is one here too. Explained in notebooks/pgtd.ipynb.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field

from mips.pgtd.lm import LM, Stop
from mips.pgtd.problems import Problem, pass_rate, run_tests

log = logging.getLogger(__name__)

UCT_ALGS = ("uct", "p_uct", "var_p_uct")


@dataclass
class PGTDConfig:
    """PG-TD's settings, named like the original's flags; the defaults are the paper's where it has one."""

    budget: int = 16                  # rollouts (search iterations), cached or not
    width: int = 3                    # children per decision node (top-k of the model)
    uct_alg: str = "var_p_uct"        # "uct" | "p_uct" | "var_p_uct" (P-UCB)
    ucb_constant: float = 4.0         # c
    ucb_base: float = 10.0            # c_base
    horizon: int = 256                # new tokens at most (the function body)
    action: str = "token"             # "token" (faithful) | "line" (the notes' variant)
    line_tokens: int = 32             # longest line considered as one action
    top_k_cache_steps: int = 1024     # positions of a rollout whose top-k is cached; 0: no top-k cache
    no_seq_cache: bool = False
    no_reward_cache: bool = False
    no_prompt_cache: bool = False     # kept for the original's flag set; the original never implemented it
    early_stop: bool = False          # stop once a program passes every public test (the original's
                                      # --early-stop, which crashes there on a misspelt attribute)

    def __post_init__(self):
        if self.uct_alg not in UCT_ALGS:
            raise ValueError(f"uct_alg must be one of {UCT_ALGS}, not {self.uct_alg!r}")
        if self.action not in ("token", "line"):
            raise ValueError(f"action must be 'token' or 'line', not {self.action!r}")
        if self.budget < 1 or self.width < 1 or self.horizon < 1:
            raise ValueError("budget, width and horizon must be positive")


def beta(N: float, c: float = 4.0, c_base: float = 10.0) -> float:
    """P-UCB's exploration weight: log((N + c_base + 1) / c_base) + c."""
    return math.log((N + c_base + 1) / c_base) + c


# ---------------------------------------------------------------------------------------------------------
# The tree


class ChanceNode:
    """A (state, action) pair: its prior, the decision nodes it led to and the returns seen through it."""

    __slots__ = ("parent", "action", "prob", "children", "sampled_returns")

    def __init__(self, parent: DecisionNode, action: tuple, prob: float):
        self.parent, self.action, self.prob = parent, action, prob
        self.children: dict[tuple, DecisionNode] = {}
        self.sampled_returns: list[float] = []

    @property
    def value(self) -> float:
        """Q: the best return seen through this action (0 before any)."""
        return max(self.sampled_returns, default=0.0)


class DecisionNode:
    """A state; ``visits`` starts at 1 as in dyna_gym; its children are sorted by prior, highest first."""

    __slots__ = ("parent", "state", "is_terminal", "visits", "children")

    def __init__(self, parent: ChanceNode | None, state: tuple, is_terminal: bool,
                 priors: list[tuple[tuple, float]]):
        self.parent, self.state, self.is_terminal = parent, state, is_terminal
        self.visits = 1
        ordered = sorted(priors, key=lambda ap: -ap[1])
        self.children = [ChanceNode(self, a, p) for a, p in ordered]


def ucb_score(child: ChanceNode, cfg: PGTDConfig) -> float:
    """The selection score of one chance node under ``cfg.uct_alg``."""
    N, n = child.parent.visits, len(child.sampled_returns)
    explore = math.sqrt(math.log(N)) / (1 + n)
    if cfg.uct_alg == "uct":
        return child.value + cfg.ucb_constant * explore
    if cfg.uct_alg == "p_uct":
        return child.value + cfg.ucb_constant * child.prob * explore
    return child.value + beta(N, cfg.ucb_constant, cfg.ucb_base) * child.prob * explore


def select_child(node: DecisionNode, cfg: PGTDConfig) -> ChanceNode:
    """argmax of the score; the first (highest-prior) child wins ties."""
    best, best_score = None, -math.inf
    for child in node.children:
        s = ucb_score(child, cfg)
        if s > best_score:
            best, best_score = child, s
    return best


def backpropagate(node: DecisionNode, rewards: list[float], estimate: float) -> None:
    """dyna_gym's update: the leaf's visit, then per chance node upward: return = reward + return (γ = 1)."""
    node.visits += 1
    while node.parent is not None:
        chance = node.parent
        estimate = rewards.pop() + estimate
        chance.sampled_returns.append(estimate)
        chance.parent.visits += 1
        node = chance.parent


# ---------------------------------------------------------------------------------------------------------
# Candidates and results


@dataclass
class Candidate:
    """A complete program the search scored on the public tests."""

    program: str
    public: list[str]          # outcome class per public test
    reward: float              # fraction of public tests passed
    rollout: int               # the iteration (or sample) that produced it
    seconds: float             # since the search started


@dataclass
class SearchResult:
    """What one algorithm produced on one problem, and what it cost."""

    algorithm: str
    candidates: list[Candidate]
    lm_calls: dict             # model calls by kind (topk, greedy, sample, beam, lines)
    rollouts: int              # iterations of the search (or samples drawn)
    evaluations: int           # sandbox runs of the public tests
    seconds: float
    lm_seconds: float
    lm_tokens: int
    tree_nodes: int = 0
    config: dict = field(default_factory=dict)

    @property
    def total_lm_calls(self) -> int:
        return int(sum(self.lm_calls.values()))

    def best(self, k: int | None = None) -> Candidate | None:
        """The pick among the first k candidates: best public score, earliest on ties."""
        pool = self.candidates[:k] if k else self.candidates
        return max(pool, key=lambda c: c.reward, default=None)   # max keeps the first of equal rewards

    def to_dict(self) -> dict:
        return asdict(self) | {"total_lm_calls": self.total_lm_calls}


class ProgramEnv:
    """The MDP over one problem's prompt: transitions, terminal test, public-test reward and its cache."""

    def __init__(self, problem: Problem, lm: LM, horizon: int, stop: Stop | None = None,
                 reward_cache: bool = True):
        self.problem, self.lm, self.horizon = problem, lm, horizon
        self.stop = stop or Stop()
        self.prompt = tuple(lm.encode(problem.prompt))
        self.reward_cache = reward_cache
        self.cached_reward: dict[str, tuple[float, list[str]]] = {}
        self.candidates: list[Candidate] = []
        self._seen: set[str] = set()
        self.evaluations = 0
        self.start = time.time()
        self.iteration = 0

    def body(self, state: tuple) -> str:
        text = self.lm.decode(state[len(self.prompt):])
        cut = self.stop.cut(text)
        return text if cut is None else text[:cut]

    def stop_after(self, state: tuple) -> Stop:
        """The end-of-body rule for a continuation of ``state``."""
        return self.stop.after(self.lm.decode(state[len(self.prompt):]))

    def program(self, state: tuple) -> str:
        return self.problem.program(self.body(state))

    def is_terminal(self, state: tuple) -> bool:
        new = state[len(self.prompt):]
        if not new:
            return False
        return (self.lm.eos is not None and new[-1] == self.lm.eos) or len(new) >= self.horizon or \
            self.stop.done(self.lm.decode(new))

    def score(self, program: str, record: bool = True) -> float:
        """The public pass rate of a program (run once when the reward cache is on)."""
        if self.reward_cache and program in self.cached_reward:
            return self.cached_reward[program][0]
        outcomes = run_tests(program, list(self.problem.public))
        self.evaluations += 1
        reward = pass_rate(outcomes)
        self.cached_reward[program] = (reward, outcomes)
        if record and program not in self._seen:
            self._seen.add(program)
            self.candidates.append(Candidate(program, outcomes, reward, self.iteration,
                                             round(time.time() - self.start, 3)))
        return reward

    def reward(self, state: tuple) -> float:
        return self.score(self.program(state))


class Caches:
    """The top-k (tree-structure) cache and the sequence cache of greedy rollouts."""

    def __init__(self, top_k_steps: int, seq: bool):
        self.top_k_steps, self.seq = top_k_steps, seq
        self.topk: dict[tuple, list] = {}
        self.outputs: list[tuple[int, tuple]] = []     # (length of the state it continued, full output)
        self.hits = {"topk": 0, "seq": 0}

    def get_topk(self, state: tuple) -> list | None:
        hit = self.topk.get(state)
        if hit is not None:
            self.hits["topk"] += 1
        return hit

    def get_seq(self, state: tuple) -> tuple | None:
        """A cached greedy output that runs through ``state`` past where it was generated from: exact."""
        if not self.seq:
            return None
        n = len(state)
        for start, out in self.outputs:
            if start <= n <= len(out) and out[:n] == state:
                self.hits["seq"] += 1
                return out
        return None

    def add(self, state: tuple, pieces: tuple, topk: list | None) -> None:
        full = state + pieces
        if self.seq:
            self.outputs.append((len(state), full))
        if self.top_k_steps and topk:
            for i, top in enumerate(topk[:self.top_k_steps]):
                self.topk.setdefault(full[:len(state) + i], [((tok,), p) for tok, p in top])


def pgtd(problem: Problem, lm: LM, config: PGTDConfig | None = None) -> SearchResult:
    """Run PG-TD on one problem for ``config.budget`` rollouts; returns every scored program and the costs."""
    cfg = config or PGTDConfig()
    env = ProgramEnv(problem, lm, cfg.horizon, reward_cache=not cfg.no_reward_cache)
    caches = Caches(cfg.top_k_cache_steps if cfg.action == "token" else 0, not cfg.no_seq_cache)
    calls0, sec0, tok0 = dict(lm.calls), lm.seconds, lm.tokens
    nodes = 0

    def expand(state: tuple) -> list[tuple[tuple, float]]:
        if cfg.action == "line":
            return lm.topk_lines(state, cfg.width, min(cfg.line_tokens, cfg.horizon - (len(state) - len(env.prompt))))
        hit = caches.get_topk(state)
        if hit is not None:
            return hit[:cfg.width]
        return [((tok,), p) for tok, p in lm.topk_next(state, cfg.width)]

    def rollout(state: tuple) -> tuple:
        hit = caches.get_seq(state)
        if hit is not None:
            return hit
        budget = cfg.horizon - (len(state) - len(env.prompt))
        r = lm.greedy(state, budget, env.stop_after(state), k=cfg.width if caches.top_k_steps else 0)
        caches.add(state, r.pieces, r.topk)
        return state + r.pieces

    root = DecisionNode(None, env.prompt, False, expand(env.prompt))
    nodes += 1
    for it in range(cfg.budget):
        env.iteration = it
        node, rewards = root, []
        while not node.is_terminal and node.children:
            chance = select_child(node, cfg)
            state = node.state + chance.action
            done = env.is_terminal(state)
            rewards.append(env.reward(state) if done else 0.0)
            child = chance.children.get(state)
            if child is None:
                child = DecisionNode(chance, state, done, [] if done else expand(state))
                chance.children[state] = child
                nodes += 1
                node = child
                break
            node = child
        estimate = 0.0 if node.is_terminal else env.reward(rollout(node.state))
        backpropagate(node, rewards, estimate)
        if cfg.early_stop and any(c.reward == 1.0 for c in env.candidates):
            break
    calls = {k: v - calls0.get(k, 0) for k, v in lm.calls.items() if v - calls0.get(k, 0)}
    return SearchResult(
        algorithm="pgtd", candidates=env.candidates, lm_calls=calls, rollouts=it + 1,
        evaluations=env.evaluations, seconds=round(time.time() - env.start, 3),
        lm_seconds=round(lm.seconds - sec0, 3), lm_tokens=lm.tokens - tok0, tree_nodes=nodes,
        config=asdict(cfg) | {"cache_hits": dict(caches.hits)})
