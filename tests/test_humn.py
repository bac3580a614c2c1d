"""The HUMN chapter: kernels, pivots, react/think on graphs the chapter builds, and its stages at small size."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from mips.humn import HUMN, Cortex, Hippocampus, MaxSubStepReached, OneHotAlgebra, TableKernel, graph
from mips.humn.abstraction import VisitStatistics, layer_paths, local_maxima, skip_pivots
from mips.humn.cartpole import Episode, cartpole_config, episode_examples, play, survival_value
from mips.humn.cortex import pivot_windows
from mips.humn.device import DeviceBenchConfig, benchmark
from mips.humn.kernels import SlotKernel, SlotKernelConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def line_graph(n: int) -> np.ndarray:
    adj = np.zeros((n, n), dtype=bool)
    adj[np.arange(n - 1), np.arange(1, n)] = True
    return adj


def all_subpaths(n: int) -> list[list[int]]:
    """The shortest-path demonstrations of a line graph: every i -> j with i < j."""
    return [list(range(i, j + 1)) for i in range(n) for j in range(i + 1, n)]


def table_planner(adj: np.ndarray, paths, n_layers: int, skip: int = 2) -> HUMN:
    cfg = graph.GraphConfig(n_nodes=len(adj), n_layers=n_layers, skip_step=skip, planners=("table",))
    examples = graph.layer_examples(paths, len(adj), n_layers, lambda s: skip_pivots(len(s), skip), cfg.max_steps)
    model, _ = graph.build_planner("table", examples, cfg, progress=False)
    return model


# ------------------------------------------------------------------------------------------- algebra, kernels

def test_one_hot_algebra_moves_to_the_argmax_and_stays_on_zero():
    alg = OneHotAlgebra(5)
    s, g = alg.state(1), alg.state(3)
    assert int(alg.index(alg.add(s[None], alg.sub(g, s)[None]))[0]) == 3
    assert bool(alg.is_zero(alg.sub(s, s)))
    assert torch.equal(alg.add(s[None], torch.zeros(1, 5)), s[None])


def test_table_kernel_keeps_the_best_score_and_ignores_lower_ones():
    n = 4
    k = TableKernel(n)
    eye = torch.eye(n)
    ctx, goal = eye[[0]][:, None], eye[[3]]

    def fit(step: int, score: float) -> float:
        return k.fit(ctx, eye[[step]], goal, torch.tensor([score]))

    fit(1, 0.5)
    fit(2, 0.3)                      # lower: ignored
    assert int(k.infer(ctx, goal)[0].argmax()) == 1
    fit(2, 0.7)                      # higher: overwrites
    fit(1, 0.7)                      # a tie does not overwrite
    value, score = k.infer(ctx, goal)
    assert int(value.argmax()) == 2 and float(score) == pytest.approx(0.7)
    # one batch gives what one-at-a-time would: the first of the best scores wins
    k2 = TableKernel(n)
    k2.fit(ctx.repeat(4, 1, 1), eye[[1, 2, 3, 0]], goal.repeat(4, 1), torch.tensor([0.5, 0.9, 0.9, 0.1]))
    assert int(k2.infer(ctx, goal)[0].argmax()) == 2
    assert float(k2.infer(eye[[1]][:, None], goal)[1]) == 0.0     # never written: zero step, score 0


def test_slot_kernel_learns_valid_steps_on_a_random_graph():
    adj = graph.random_graph(8, 0.35, seed=1)
    walks = graph.exploration_walks(adj, 300, 8, seed=0)
    examples = graph.layer_examples(walks, 8, 1, lambda s: skip_pivots(len(s), math.inf), 16)[0]
    kernel = SlotKernel(8, 8, 8, 1, SlotKernelConfig(hidden_dim=32, memory_size=8, lr=3e-3, lse_weight=0.1))
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        rows = torch.randint(len(examples), (64,), generator=gen)
        b = examples.take(rows)
        kernel.fit(b.context, b.step, b.goal, b.score)
    seen = {(int(c.argmax()), int(g.argmax())) for c, g in zip(examples.context[:, -1], examples.goal, strict=True)}
    s, g = map(torch.tensor, zip(*sorted(seen), strict=True))
    step, _ = kernel.infer(torch.eye(8)[s][:, None], torch.eye(8)[g])
    valid = adj[s.numpy(), step.argmax(1).numpy()].mean()
    assert valid >= 0.9, f"only {valid:.0%} of the proposed steps are edges"


def test_slot_kernel_config_rejects_unknown_access():
    with pytest.raises(ValueError, match="access"):
        SlotKernelConfig(access="nearest")


# ----------------------------------------------------------------------------------------------- pivots

def test_pivot_windows_reach_the_next_two_pivots():
    mask = pivot_windows([0, 3, 7], 8)
    assert mask[0].sum() == 0                                   # nothing lies before the first state
    assert np.flatnonzero(mask[1]).tolist() == [0, 1, 2]
    assert np.flatnonzero(mask[2]).tolist() == [0, 1, 2, 3, 4, 5, 6]   # from pivot j-2 (index 0) on


def test_skip_and_entropy_pivots():
    assert skip_pivots(10, 4).tolist() == [0, 4, 8, 9]
    assert skip_pivots(9, 4).tolist() == [0, 4, 8]
    assert skip_pivots(5, math.inf).tolist() == [0, 4]
    assert local_maxima([1, 2, 3, 3, 2, 1, 1, 2, 3, 2, 1]).tolist() == [0, 3, 8, 10]
    stats = VisitStatistics(4).fit([[0, 1, 2], [1, 2], [3, 1]])
    assert stats.counts_.tolist() == [1, 3, 2, 1]
    assert stats.pivots([0, 1, 2, 3]).tolist() == [0, 1, 3]
    layers = layer_paths(list(range(10)), 3, lambda s: skip_pivots(len(s), 2))
    assert [lp.positions.tolist() for lp in layers] == [list(range(10)), [0, 2, 4, 6, 8, 9], [0, 4, 8, 9]]
    assert layers[-1].pivots.tolist() == [0, 3]                 # the top layer heads for the last state


# ------------------------------------------------------------------------------------------ react, think

def test_dense_hindsight_teaches_upper_layers_the_states_in_between():
    path = [[5, 3, 7, 1, 6, 2, 4]]                                 # skip 3: layer 1 is 5, 1, 4
    pivots = lambda s: skip_pivots(len(s), 3)                      # noqa: E731
    sparse = graph.layer_examples(path, 8, 2, pivots, 16)[1]
    dense = graph.layer_examples(path, 8, 2, pivots, 16, dense=True)[1]
    assert {int(c.argmax()) for c in sparse.context[:, -1]} == {5, 1}
    assert {int(c.argmax()) for c in dense.context[:, -1]} == {5, 3, 7, 1, 6, 2}
    # from any state the upper layer's step is its next own state ahead, and its goal the same pivots
    nxt = {int(c.argmax()): int(s.argmax()) for c, s in zip(dense.context[:, -1], dense.step, strict=True)}
    assert nxt == {5: 1, 3: 1, 7: 1, 1: 4, 6: 4, 2: 4}
    assert {int(g.argmax()) for g in dense.goal} == {int(g.argmax()) for g in sparse.goal} == {4}
    # the layer-0 examples do not change
    assert torch.equal(graph.layer_examples(path, 8, 2, pivots, 16)[0].step,
                       graph.layer_examples(path, 8, 2, pivots, 16, dense=True)[0].step)


def test_react_on_a_line_graph_takes_the_true_next_step():
    adj = line_graph(8)
    model = table_planner(adj, all_subpaths(8), n_layers=2)
    alg = model.algebra
    trials = graph.evaluate_react(model, adj, 0, range(8), max_steps=16)
    assert [t.path for t in trials] == [list(range(g + 1)) for g in range(8)]
    model.refresh()
    s = alg.state(torch.tensor([2]))
    assert int(alg.index(model.react(s, alg.sub(alg.state(torch.tensor([6])), s)))[0]) == 3


def test_think_plans_open_loop_and_raises_past_max_sub_steps():
    adj = line_graph(10)
    alg = OneHotAlgebra(10)
    flat = table_planner(adj, [list(range(10))], n_layers=1)
    s, g = alg.state(torch.tensor([0])), alg.state(torch.tensor([9]))
    plan = [int(alg.index(x)[0]) for x in flat.think(s, alg.sub(g, s), max_sub_steps=9)]
    assert plan == list(range(1, 10))
    with pytest.raises(MaxSubStepReached):
        list(flat.think(s, alg.sub(g, s), max_sub_steps=3))
    deep = table_planner(adj, all_subpaths(10), n_layers=3)     # sub-goals keep every layer's steps short
    assert [int(alg.index(x)[0]) for x in deep.think(s, alg.sub(g, s), max_sub_steps=3)] == list(range(1, 10))


def test_think_stops_silently_when_a_layer_has_no_step():
    alg = OneHotAlgebra(6)
    untrained = HUMN([Cortex(TableKernel(6), alg)], [Hippocampus()], alg)
    s, g = alg.state(torch.tensor([0])), alg.state(torch.tensor([5]))
    assert list(untrained.think(s, alg.sub(g, s))) == []


# ----------------------------------------------------------------------------------------- graph stage

def test_random_graph_is_seeded_and_strongly_connected():
    a, b = graph.random_graph(32, 0.2, 3), graph.random_graph(32, 0.2, 3)
    assert np.array_equal(a, b) and not a.diagonal().any()
    dist, _ = graph.shortest_paths(a)
    assert np.isfinite(dist).all()
    with pytest.raises(ValueError, match="edge_prob"):
        graph.random_graph(12, 0.0, 0, max_draws=3)


def test_graph_stage_table_planner_matches_dijkstra_and_is_cached(tmp_path):
    config = replace(graph.graph_config("smoke"), planners=("table", "table_walks"), n_random_trials=10)
    result = graph.run(config=config, run_dir=tmp_path, progress=False)
    for mode in graph.MODES:
        assert result.average("table", mode) == pytest.approx(result.dijkstra_average)
        assert all(t.reached for t in result.trials["table"][mode])
    assert result.dijkstra_average < result.random_average <= config.max_steps
    for trials in result.trials["table_walks"].values():
        for t in trials:      # every reported success is a real path along the graph's edges
            steps = zip(t.path[:-1], t.path[1:], strict=True)
            assert not t.reached or (t.path[0] == 0 and t.path[-1] == t.goal
                                     and all(result.adjacency[a, b] for a, b in steps))
    full_stack = result.ablation["table"][str(config.n_layers)]
    assert full_stack == {m: result.average("table", m) for m in graph.MODES}   # cutting nothing changes nothing
    again = graph.run(config=config, run_dir=tmp_path, progress=False)
    assert again.record.key == result.record.key and again.record.created == result.record.created


def test_unknown_preset_and_planner_are_clear_errors():
    with pytest.raises(ValueError, match="preset"):
        graph.graph_config("huge")
    with pytest.raises(ValueError, match="planner"):
        graph.GraphConfig(planners=("table", "oracle"))


# ---------------------------------------------------------------------------------------------- cart pole

def test_survival_value_counts_falls_but_not_time_limits():
    fell = Episode(np.zeros((5, 4), np.float32), np.zeros(5, np.int64), terminated=True)
    capped = Episode(np.zeros((5, 4), np.float32), np.zeros(5, np.int64), terminated=False)
    assert survival_value(fell, 4).tolist() == [1.0, 1.0, 0.75, 0.5, 0.25]
    assert survival_value(capped, 4).tolist() == [1.0] * 5


def test_cartpole_play_is_seeded_and_examples_are_scored_by_discount():
    pytest.importorskip("gymnasium")
    a = play(None, 6, 200, seed=5, n_envs=3)
    b = play(None, 6, 200, seed=5, n_envs=3)
    assert [len(e) for e in a] == [len(e) for e in b]
    assert all(np.array_equal(x.states, y.states) for x, y in zip(a, b, strict=True))
    assert all(e.terminated for e in a)                    # random play drops the pole long before 200 steps
    config = cartpole_config("smoke")
    low, high = episode_examples(a[0], config)
    k = np.round(np.log(low.score.numpy()) / np.log(config.discount))
    assert np.allclose(config.discount ** k, low.score.numpy(), atol=1e-5)
    assert set(low.step.flatten().tolist()) <= {0.0, 1.0} and high.goal.eq(1).all()
    assert (high.score <= 1).all() and (high.score >= 0).all()


# ------------------------------------------------------------------------------------------------- device

def test_device_benchmark_times_eager_and_torchscript():
    rows = benchmark(DeviceBenchConfig(n_elements=10_000, loop_length=5, repeats=2, variants=("eager", "jit.script")))
    assert [r.variant for r in rows] == ["eager", "jit.script"]
    assert all(r.seconds_per_selu and r.seconds_per_selu > 0 for r in rows), rows
    with pytest.raises(ValueError, match="variant"):
        DeviceBenchConfig(variants=("xla",))
