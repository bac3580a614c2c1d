"""The graph task: find paths on a random directed graph by hierarchical goal pursuit.

A 32-node random directed graph (each ordered pair an edge with probability 0.2, redrawn from the seed until
every node can reach every other). Every planner starts at node 0 and is asked, for each goal node, for a
path there. The figure of merit is the **average path length** over all goals, counted in states including
the start; a failure counts ``max_steps``. A path only counts if every step follows an edge of the graph
(the original did not check that; here an invalid step is a failure). Baselines: a random walk without
revisits (averaged over many walks) and Dijkstra's shortest paths.

Planners (the original's three parameter sets, plus a table on the exploration walks as a control, and the
entropy planner trained with the original's sparse hindsight, to show what dense hindsight changes):

==================  ========  ============================================================  =========
planner             kernel    demonstrations                                                pivots
==================  ========  ============================================================  =========
``table``           table     Dijkstra paths for every ordered pair + random walks          skip step
``table_walks``     table     exploration random walks only                                 skip step
``skip``            slot MLP  exploration random walks only                                 skip step
``entropy``         slot MLP  exploration random walks only                                 entropy
``entropy_sparse``  slot MLP  as ``entropy``; upper layers taught at their own states only  entropy
==================  ========  ============================================================  =========

Every planner but ``entropy_sparse`` learns by dense hindsight (``GraphConfig.dense_hindsight``; see
:func:`layer_examples`); it matters most for the neural kernels, which answer every key, seen or not.

Explained in notebooks/humn_graph.ipynb.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.csgraph import connected_components, dijkstra

from mips.artifacts import Record, StageRun, stage_dir, write_json
from mips.humn.abstraction import VisitStatistics, layer_paths, skip_pivots
from mips.humn.algebra import OneHotAlgebra
from mips.humn.cortex import Cortex, Hindsight, TrainerConfig, hindsight
from mips.humn.hippocampus import Hippocampus
from mips.humn.kernels import SlotKernel, SlotKernelConfig, TableKernel
from mips.humn.model import HUMN, MaxSubStepReached

log = logging.getLogger(__name__)

CHAPTER = "chapter-humn"
STAGE = "graph"
PLANNERS = ("table", "table_walks", "skip", "entropy", "entropy_sparse")
MODES = ("react", "think")
PRESETS = ("smoke", "full")


@dataclass
class GraphConfig:
    """Everything that decides the graph chapter's numbers."""

    n_nodes: int = 32              # nodes of the random graph
    edge_prob: float = 0.2         # probability of each directed edge
    graph_seed: int = 0            # the graph's seed
    seed: int = 0                  # walks, demonstrations, training order and initialisation
    n_walks: int = 5000            # exploration random walks (walk i starts at node floor(n_nodes * i / n_walks))
    max_walk_states: int = 31      # states per random walk at most (walks never revisit a node)
    n_random_per_pair: int = 4     # random walks added to the Dijkstra demonstrations, per ordered pair
    n_layers: int = 3              # layers of the hierarchy
    skip_step: int = 4             # skip-step abstraction: a pivot every this many states
    context_length: int = 1        # states of context the cortex reads
    start: int = 0                 # every path starts here
    max_steps: int = 32            # a failed or longer path counts this many states
    max_sub_steps: int = 16        # think: steps one layer may take toward one sub-goal
    n_updates: int = 2000          # minibatch updates per layer for the neural kernels
    batch_size: int = 256          # examples per update
    kernel: SlotKernelConfig = field(default_factory=lambda: SlotKernelConfig(lr=3e-3, lse_weight=0.1))
    n_random_trials: int = 200     # random-walk baseline: walks per goal
    planners: tuple[str, ...] = PLANNERS
    ablate_layers: bool = True     # also evaluate each planner with only its lowest 1, 2, ... layers
    dense_hindsight: bool = True   # upper layers also learn from the states between their own (see layer_examples)

    def __post_init__(self) -> None:
        if isinstance(self.kernel, dict):
            self.kernel = SlotKernelConfig(**self.kernel)
        self.planners = tuple(self.planners)
        unknown = set(self.planners) - set(PLANNERS)
        if unknown:
            raise ValueError(f"unknown planner(s) {sorted(unknown)}; planners are {', '.join(PLANNERS)}")


def graph_config(preset: str = "full") -> GraphConfig:
    """The smoke preset (CI, well under a minute) or the full one (the book)."""
    if preset == "full":
        return GraphConfig()
    if preset == "smoke":
        return GraphConfig(n_walks=800, n_random_per_pair=1, n_updates=150, batch_size=64, n_random_trials=20,
                           kernel=SlotKernelConfig(hidden_dim=32, lr=3e-3, lse_weight=0.1))
    raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")


# ---------------------------------------------------------------------------------------------- the graph

def random_graph(n_nodes: int, edge_prob: float, seed: int, max_draws: int = 1000) -> np.ndarray:
    """A random directed graph ``adj[from, to]`` without self-loops, redrawn until strongly connected."""
    rng = np.random.default_rng(seed)
    for _ in range(max_draws):
        adj = rng.random((n_nodes, n_nodes)) < edge_prob
        np.fill_diagonal(adj, False)
        if connected_components(adj, directed=True, connection="strong")[0] == 1:
            return adj
    raise ValueError(f"no strongly connected graph in {max_draws} draws: raise edge_prob ({edge_prob})")


def random_walk(adj: np.ndarray, start: int, max_states: int, rng: np.random.Generator) -> list[int]:
    """A walk that never revisits a node: at most ``max_states`` states, ending early at a dead end."""
    visited = np.zeros(len(adj), dtype=bool)
    path = [start]
    visited[start] = True
    while len(path) < max_states:
        candidates = np.flatnonzero(adj[path[-1]] & ~visited)
        if len(candidates) == 0:
            break
        nxt = int(rng.choice(candidates))
        path.append(nxt)
        visited[nxt] = True
    return path


def exploration_walks(adj: np.ndarray, n_walks: int, max_states: int, seed: int) -> list[list[int]]:
    """``n_walks`` random walks; walk ``i`` starts at node ``floor(n_nodes * i / n_walks)``."""
    rng = np.random.default_rng(seed)
    n = len(adj)
    return [random_walk(adj, n * i // n_walks, max_states, rng) for i in range(n_walks)]


def shortest_paths(adj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dijkstra from every node (every edge costs 1): distances ``(n, n)`` and predecessors."""
    dist, pred = dijkstra(adj.astype(np.float64), directed=True, return_predecessors=True)
    return dist, pred


def path_from(pred: np.ndarray, source: int, target: int) -> list[int]:
    """The shortest path ``source -> target`` read back from Dijkstra's predecessors."""
    path = [target]
    while path[-1] != source:
        prev = int(pred[source, path[-1]])
        if prev < 0:
            raise ValueError(f"node {target} is unreachable from {source}")
        path.append(prev)
    return path[::-1]


def demonstrations(adj: np.ndarray, n_random_per_pair: int, max_states: int, seed: int) -> list[list[int]]:
    """The "optimal" demonstrations: a Dijkstra path for every ordered pair, then random walks."""
    _, pred = shortest_paths(adj)
    n = len(adj)
    optimal = [path_from(pred, s, g) for s in range(n) for g in range(n) if s != g]
    return optimal + exploration_walks(adj, n_random_per_pair * len(optimal), max_states, seed)


# --------------------------------------------------------------------------------------------- training

def layer_examples(paths: Sequence[Sequence[int]], n_nodes: int, n_layers: int, pivots, max_steps: int,
                   context_length: int = 1, dense: bool = False) -> list[Hindsight]:
    """Hindsight examples for every layer from node paths.

    At layer ``i`` a path's states are the pivots of layer ``i - 1``; the step from a state is the next
    state of that layer's path (a one-hot action); the score of reaching pivot ``p`` from state ``t`` is
    ``1 - (d(p) - d(t)) / (2 * max_steps)`` with ``d`` counted in steps of the original path.

    ``dense=True`` also gives every upper layer the states in between its own: from any state of the
    original path, that layer's step is its next state ahead. ``react`` asks every layer at every state,
    and the original (``dense=False``) trains an upper layer only at its own states, so in closed loop its
    neural kernel answers off its training data.
    """
    eye = np.eye(n_nodes, dtype=np.float32)
    per_layer: list[list[Hindsight]] = [[] for _ in range(n_layers)]
    for path in paths:
        nodes = np.asarray(path, dtype=np.int64)
        for i, lp in enumerate(layer_paths(nodes, n_layers, pivots)):
            at = np.arange(len(nodes)) if dense else lp.positions      # original positions of the states
            ahead = np.searchsorted(lp.positions, at, side="right")    # this layer's next state after each
            steps = np.zeros((len(at), n_nodes), np.float32)
            has_next = ahead < len(lp.positions)
            steps[has_next] = eye[nodes[lp.positions[ahead[has_next]]]]
            pivot_at = np.searchsorted(at, lp.positions[lp.pivots])    # pivots as indices into ``at``
            d = at.astype(np.float32)
            scores = 1.0 - (d[pivot_at][:, None] - d[None, :]) / (2.0 * max_steps)
            per_layer[i].append(hindsight(eye[nodes[at]], steps, pivot_at, eye[nodes[at[pivot_at]]], scores,
                                          context_length))
    return [Hindsight.cat(parts) for parts in per_layer]


def build_planner(kind: str, examples: Sequence[Hindsight], config: GraphConfig, device: str = "cpu",
                  progress: bool = True) -> tuple[HUMN, list[list[float]]]:
    """Fit one HUMN per planner kind on its layers' examples; returns the model and each layer's losses."""
    n = config.n_nodes
    algebra = OneHotAlgebra(n)
    cortices = []
    for i in range(config.n_layers):
        if kind.startswith("table"):
            kernel = TableKernel(n, config.context_length, device=device)
        else:
            kcfg = SlotKernelConfig(**{**asdict(config.kernel), "seed": config.kernel.seed + 101 * i})
            kernel = SlotKernel(n, n, n, config.context_length, kcfg, device)
        cortices.append(Cortex(kernel, algebra, config.context_length))
    model = HUMN(cortices, [Hippocampus(config.context_length) for _ in range(config.n_layers)], algebra)
    tcfgs = [TrainerConfig(config.n_updates, config.batch_size, config.seed + i) for i in range(config.n_layers)]
    losses = [t.fit(desc=f"{kind} layer {i}", progress=progress)
              for i, t in enumerate(model.observe(examples, tcfgs, device))]
    return model, losses


# ------------------------------------------------------------------------------------------- evaluation

@dataclass
class Trial:
    """One attempt to reach ``goal`` from the start: the node path, and what it counts."""

    goal: int
    path: list[int]
    reached: bool
    length: int            # states including the start; max_steps on failure
    failure: str = ""      # "", "invalid step", "no step", "too long", "max sub steps", "stopped short"


def _trial(goal: int, path: list[int], adj: np.ndarray, max_steps: int, failure: str = "") -> Trial:
    if not failure:
        bad = [k for k in range(len(path) - 1) if not adj[path[k], path[k + 1]]]
        if bad:
            failure = "invalid step"
        elif len(path) > max_steps:
            failure = "too long"
        elif path[-1] != goal:
            failure = "stopped short"
    ok = not failure
    return Trial(goal, path, ok, len(path) if ok else max_steps, failure)


def evaluate_react(model: HUMN, adj: np.ndarray, start: int, goals: Sequence[int], max_steps: int,
                   device: str = "cpu") -> list[Trial]:
    """Closed loop, all goals at once: one ``react`` per step until the goal, a failure, or ``max_steps``."""
    algebra = model.algebra
    goals = list(goals)
    goal_states = algebra.state(torch.tensor(goals, device=device))
    state = algebra.state(torch.full((len(goals),), start, device=device))
    paths = [[start] for _ in goals]
    failure = ["" for _ in goals]
    done = [g == start for g in goals]
    model.refresh()
    while not all(done):
        action = model.react(state, algebra.sub(goal_states, state))
        nxt = algebra.add(state, action)
        nodes = algebra.index(nxt).tolist()
        for k, node in enumerate(nodes):
            if done[k]:
                continue
            here = paths[k][-1]
            if node == here:
                failure[k], done[k] = "no step", True
            elif not adj[here, node]:
                paths[k].append(node)
                failure[k], done[k] = "invalid step", True
            else:
                paths[k].append(node)
                if node == goals[k]:
                    done[k] = True
                elif len(paths[k]) >= max_steps:
                    failure[k], done[k] = "too long", True
        state = nxt
    return [_trial(g, p, adj, max_steps, f) for g, p, f in zip(goals, paths, failure, strict=True)]


def evaluate_think(model: HUMN, adj: np.ndarray, start: int, goals: Sequence[int], max_steps: int,
                   max_sub_steps: int, device: str = "cpu") -> list[Trial]:
    """Open loop: the whole plan from ``think``, then checked edge by edge."""
    algebra = model.algebra
    trials = []
    for goal in goals:
        s, g = algebra.state(torch.tensor([start], device=device)), algebra.state(torch.tensor([goal], device=device))
        path, failure = [start], ""
        try:
            for state in model.think(s, algebra.sub(g, s), max_sub_steps):
                path.append(int(algebra.index(state)[0]))
                if len(path) > max_steps:
                    failure = "too long"
                    break
        except MaxSubStepReached:
            failure = "max sub steps"
        trials.append(_trial(goal, path, adj, max_steps, failure))
    return trials


def lower_layers(model: HUMN, n_layers: int) -> HUMN:
    """The same planner with only its lowest ``n_layers`` layers: the top one kept is handed the final goal."""
    return HUMN(model.cortices[:n_layers], [Hippocampus(h.context_length) for h in model.hippocampi[:n_layers]],
                model.algebra)


def random_walk_lengths(adj: np.ndarray, start: int, goals: Sequence[int], max_steps: int, n_trials: int,
                        seed: int) -> np.ndarray:
    """The random planner: per goal, the mean length of ``n_trials`` walks (without revisits) until it is hit."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(goals))
    for k, goal in enumerate(goals):
        total = 0
        for _ in range(n_trials):
            walk = random_walk(adj, start, max_steps, rng)
            total += walk.index(goal) + 1 if goal in walk else max_steps
        out[k] = total / n_trials
    return out


# ------------------------------------------------------------------------------------------------ stage

@dataclass
class GraphResult:
    """What the graph stage measured, read back from its folder."""

    config: dict
    adjacency: np.ndarray
    distances: np.ndarray
    trials: dict[str, dict[str, list[Trial]]]   # planner -> mode -> one trial per goal
    random_lengths: np.ndarray                  # per goal
    dijkstra_lengths: np.ndarray                # per goal, states including the start
    losses: dict[str, list[list[float]]]        # planner -> layer -> loss per update
    n_examples: dict[str, list[int]]            # planner -> examples per layer
    train_seconds: dict[str, float]
    ablation: dict[str, dict[str, dict[str, float]]]  # planner -> layers kept ("1", "2", ...) -> mode -> average
    record: Record

    def average(self, planner: str, mode: str) -> float:
        return float(np.mean([t.length for t in self.trials[planner][mode]]))

    def success_rate(self, planner: str, mode: str) -> float:
        return float(np.mean([t.reached for t in self.trials[planner][mode]]))

    @property
    def random_average(self) -> float:
        return float(self.random_lengths.mean())

    @property
    def dijkstra_average(self) -> float:
        return float(self.dijkstra_lengths.mean())

    @classmethod
    def load(cls, folder: Path) -> GraphResult:
        folder = Path(folder)
        data = json.loads((folder / "results.json").read_text())
        arrays = np.load(folder / "graph.npz")
        trials = {p: {m: [Trial(**t) for t in ts] for m, ts in modes.items()} for p, modes in data["trials"].items()}
        return cls(data["config"], arrays["adjacency"], arrays["distances"], trials, arrays["random_lengths"],
                   arrays["dijkstra_lengths"], data["losses"], data["n_examples"], data["train_seconds"],
                   data.get("ablation", {}), Record.load(folder / "record.json"))


def run(preset: str = "full", run_dir: Path | str | None = None, device: str = "cpu",
        config: GraphConfig | None = None, progress: bool = True) -> GraphResult:
    """The graph stage: build the graph and data, train every planner, evaluate react and think.

    Artifacts go to ``runs/chapter-humn/graph/``; an unchanged config is reused, not recomputed.
    """
    config = config or graph_config(preset)
    run_dir = Path(run_dir) if run_dir else None
    stage = StageRun(CHAPTER, STAGE, asdict(config), run_dir=run_dir)
    stage.cached_or_compute(lambda st: _compute(config, st, device, progress))
    return GraphResult.load(stage_dir(CHAPTER, STAGE, run_dir))


def _skip(states: Sequence, step: int) -> np.ndarray:
    return skip_pivots(len(states), step)


def _compute(config: GraphConfig, stage: StageRun, device: str, progress: bool) -> dict:
    c = config
    adj = random_graph(c.n_nodes, c.edge_prob, c.graph_seed)
    dist, _ = shortest_paths(adj)
    goals = list(range(c.n_nodes))
    walks = exploration_walks(adj, c.n_walks, c.max_walk_states, c.seed)
    stats = VisitStatistics(c.n_nodes).fit(walks)
    skip = partial(_skip, step=c.skip_step)
    data_of = {"table": lambda: demonstrations(adj, c.n_random_per_pair, c.max_walk_states, c.seed + 1),
               "table_walks": lambda: walks, "skip": lambda: walks, "entropy": lambda: walks,
               "entropy_sparse": lambda: walks}
    pivots_of = {"table": skip, "table_walks": skip, "skip": skip, "entropy": stats.pivots,
                 "entropy_sparse": stats.pivots}

    trials, losses, n_examples, seconds, ablation = {}, {}, {}, {}, {}
    for kind in c.planners:
        t0 = time.time()
        examples = layer_examples(data_of[kind](), c.n_nodes, c.n_layers, pivots_of[kind], c.max_steps,
                                  c.context_length, c.dense_hindsight and kind != "entropy_sparse")
        model, losses[kind] = build_planner(kind, examples, c, device, progress)
        seconds[kind] = round(time.time() - t0, 2)
        n_examples[kind] = [len(e) for e in examples]
        with torch.no_grad():
            trials[kind] = {"react": evaluate_react(model, adj, c.start, goals, c.max_steps, device),
                            "think": evaluate_think(model, adj, c.start, goals, c.max_steps, c.max_sub_steps,
                                                    device)}
        log.info("%s: trained in %.1fs; react %.2f, think %.2f", kind, seconds[kind],
                 np.mean([t.length for t in trials[kind]["react"]]), np.mean([t.length for t in trials[kind]["think"]]))
        if c.ablate_layers:
            ablation[kind] = {}
            for depth in range(1, c.n_layers + 1):
                lower = lower_layers(model, depth)
                with torch.no_grad():
                    runs = {"react": evaluate_react(lower, adj, c.start, goals, c.max_steps, device),
                            "think": evaluate_think(lower, adj, c.start, goals, c.max_steps, c.max_sub_steps, device)}
                ablation[kind][str(depth)] = {m: float(np.mean([t.length for t in ts])) for m, ts in runs.items()}
        if hasattr(model.cortices[0].kernel, "state_dict"):
            torch.save([cx.kernel.state_dict() for cx in model.cortices], stage.path(f"kernels_{kind}.pt"))

    random_lengths = random_walk_lengths(adj, c.start, goals, c.max_steps, c.n_random_trials, c.seed + 2)
    dijkstra_lengths = dist[c.start, goals] + 1
    np.savez(stage.path("graph.npz"), adjacency=adj, distances=dist, random_lengths=random_lengths,
             dijkstra_lengths=dijkstra_lengths)
    write_json(stage.path("results.json"), {
        "config": asdict(c), "losses": losses, "n_examples": n_examples, "train_seconds": seconds,
        "ablation": ablation,
        "trials": {k: {m: [asdict(t) for t in ts] for m, ts in v.items()} for k, v in trials.items()}})
    metrics = {"random_average": float(random_lengths.mean()), "dijkstra_average": float(dijkstra_lengths.mean())}
    for kind in c.planners:
        for mode in MODES:
            metrics[f"{kind}_{mode}_average"] = float(np.mean([t.length for t in trials[kind][mode]]))
            metrics[f"{kind}_{mode}_reached"] = int(sum(t.reached for t in trials[kind][mode]))
    return metrics
