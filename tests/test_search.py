"""The search stage: the paper's order, no monotonicity assumption, resume, and a real smoke search."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from mips import pipeline
from mips.artifacts import load_record, stage_dir
from mips.data import load_dataset
from mips.models import RNNConfig, accuracy, load_model, predict
from mips.search import (
    Progress,
    SearchConfig,
    candidates,
    groups,
    halving_stop_rule,
    progress_folder,
    representations,
    search,
    search_config,
)
from mips.tasks import get_task
from mips.train import Member, TrainData, TrainResult, init_network


def small(**settings) -> SearchConfig:
    """A search space without the wide extension (the tests name every candidate)."""
    return SearchConfig(wide_hidden_dims=(), **settings)


LINEAR_ONLY = small(depths=((1, 1),), hidden_dims=(1, 2, 3, 4, 5), seeds=2, steps=100)


@pytest.fixture(scope="module")
def sum_all():
    task = get_task("Sum_All")
    ds = load_dataset(task, size=1000, seed=3, cache=False)
    return task, TrainData.from_dataset(ds)


class FakeTrainer:
    """Stands in for ``train_stack``: a member succeeds iff its architecture is in ``solves``.

    It "evaluates" every 10 steps: solvers succeed at ``solve_step``, the others fail when the steps run out,
    and the search's stop rule is consulted after every evaluation, as in the real trainer. ``crash_after``
    raises after that many members finished, like a killed process.
    """

    def __init__(self, solves, crash_after=None, solve_step=10):
        self.solves, self.solve_step = set(solves), solve_step
        self.trained: list[RNNConfig] = []
        self.crash_after = crash_after
        self.n_finished = 0

    def __call__(self, members, data, config, device="cpu", stop_rule=None, on_finish=None):
        self.trained += [m.config for m in members]
        results = [TrainResult(m) for m in members]
        active = list(range(len(members)))
        for step in range(0, config.steps + 1, 10):
            solved = {i for i in active if results[i].member.config in self.solves and step >= self.solve_step}
            reasons = {i: "success" if i in solved else "budget" for i in active
                       if i in solved or step == config.steps}
            active = self._retire(results, active, reasons, step)
            if stop_rule and active:
                active = self._retire(results, active, stop_rule(results, active, step), step)
            if not active:
                break
        return results

    def _retire(self, results, active, reasons, step):
        for i, why in reasons.items():
            if self.crash_after is not None and self.n_finished >= self.crash_after:
                raise KeyboardInterrupt("simulated kill")
            r = results[i]
            r.steps_run, r.stop, r.success = step, why, why == "success"
            r.success_step = step if r.success else None
            r.best_eval_accuracy = r.test_accuracy = 1.0 if r.success else 0.5 + 0.01 * r.member.config.hidden_dim
            r.network = init_network(r.member.config, r.member.seed)
            self.n_finished += 1
        return [i for i in active if i not in reasons]


def linear(h):
    return RNNConfig(1, 1, h)


def test_candidates_follow_the_order():
    config = small(depths=((2, 1), (1, 2), (1, 1)), hidden_dims=(2, 1), widths=(8, 4))
    space = candidates(config, 1, 1)
    keys = [(c.output_depth, c.hidden_depth, c.hidden_dim, c.output_width, c.hidden_width) for c in space]
    assert keys == sorted(keys)                                   # od, then hd, then H, then ow, then hw
    assert [c.label() for c in space[:4]] == ["H=1 f1 g1", "H=2 f1 g1", "H=1 f2x4 g1", "H=1 f2x8 g1"]
    assert len(space) == 2 + 2 * 2 + 2 * 2
    assert all(c.is_linear for c in space[:2]) and not any(c.is_linear for c in space[2:])
    both = candidates(small(depths=((2, 2),), hidden_dims=(1,), widths=(4, 8)), 1, 1)
    assert [(c.output_width, c.hidden_width) for c in both] == [(4, 4), (8, 8)]   # tied widths
    wide = SearchConfig(depths=((1, 1), (1, 2)), hidden_dims=(1, 2), widths=(4,), wide_hidden_dims=(16,),
                        wide_widths=(64,))
    assert [c.label() for c in candidates(wide, 1, 1)] == ["H=1 f1 g1", "H=2 f1 g1", "H=1 f2x4 g1", "H=2 f2x4 g1",
                                                           "H=16 f1 g1", "H=16 f2x64 g1"]   # widened last
    assert [len(g) for g in groups(candidates(wide, 1, 1))] == [2, 2, 1, 1]


def test_representations_come_after_depth_and_before_size():
    """Add_Mod_5 (5 input values, 5 output values) gets all four representations, bits get no one-hot
    (it spans what the integer does), and a cross-entropy task gets classification heads only."""
    config = small(depths=((1, 1), (1, 2)), hidden_dims=(1, 2), widths=(4,))
    task = get_task("Add_Mod_5")
    data = TrainData.from_dataset(load_dataset(task, size=500, seed=1, cache=False))
    reps = representations(config, task, data)
    assert reps == [((), ()), ((0, 1, 2, 3, 4), ()), ((), (0, 1, 2, 3, 4)), ((0, 1, 2, 3, 4), (0, 1, 2, 3, 4))]
    space = candidates(config, 1, 1, reps)
    assert [c.label() for c in space[:8]] == ["H=1 f1 g1", "H=2 f1 g1", "H=1 f1 g1 1hot", "H=2 f1 g1 1hot",
                                              "H=1 f1 g1 cls", "H=2 f1 g1 cls", "H=1 f1 g1 1hot cls",
                                              "H=2 f1 g1 1hot cls"]
    assert space[7].n_inputs == 5 and space[7].n_outputs == 5 and space[8].hidden_depth == 2
    assert [len(g) for g in groups(space)] == [2, 2, 2, 2, 2, 2, 2, 2]

    parity = get_task("Parity_All")
    pdata = TrainData.from_dataset(load_dataset(parity, size=500, seed=1, cache=False))
    assert representations(config, parity, pdata) == [((), ()), ((), (0, 1))]
    ce = dataclasses.replace(parity, loss="cross_entropy")
    assert representations(config, ce, pdata) == [((), (0, 1))]
    with pytest.raises(ValueError, match="no representation"):
        representations(dataclasses.replace(config, heads=("classification",)), get_task("Sum_All"),
                        TrainData.from_dataset(load_dataset(get_task("Sum_All"), size=200, seed=1, cache=False)))


def test_first_success_in_order_without_monotonicity(sum_all):
    """H=2 succeeds, H=3 fails, H=4 succeeds: a bisection from 4 would stop at 4; the answer is 2."""
    task, data = sum_all
    trainer = FakeTrainer(solves={linear(2), linear(4)})
    result = search(task, data, LINEAR_ONLY, trainer=trainer)
    assert result.success and result.network.config == linear(2)
    status = {o.label: o.status for o in result.trace}
    assert status["H=1 f1 g1"] == "failed" and status["H=2 f1 g1"] == "succeeded"
    assert status["H=3 f1 g1"] == status["H=5 f1 g1"] == "stopped"   # stopped once H=2 succeeded


def test_later_group_and_later_depth(sum_all):
    """Only a ReLU network solves it: every linear candidate is tried and failed first."""
    task, data = sum_all
    config = small(depths=((1, 1), (1, 2)), hidden_dims=(1, 2, 3), widths=(4, 8), seeds=1, steps=100)
    target = RNNConfig(1, 1, 2, 2, 4)
    result = search(task, data, config, trainer=FakeTrainer(solves={target, RNNConfig(1, 1, 3, 2, 8)}))
    assert result.network.config == target
    failed = [o.label for o in result.trace if o.status == "failed"]
    assert failed == ["H=1 f1 g1", "H=2 f1 g1", "H=3 f1 g1", "H=1 f2x4 g1", "H=1 f2x8 g1"]
    assert [o.group for o in result.trace[:3]] == [0, 0, 0] and result.trace[3].group == 1


def test_the_winners_later_group_mates_are_stopped(sum_all):
    task, data = sum_all
    config = small(depths=((1, 1),), hidden_dims=(1, 2, 3), seeds=2, steps=100)
    result = search(task, data, config, trainer=FakeTrainer(solves={linear(1)}))
    assert result.network.config == linear(1)
    assert [o.status for o in result.trace] == ["succeeded", "stopped", "stopped"]


def test_nothing_succeeds_keeps_the_most_accurate(sum_all):
    task, data = sum_all
    result = search(task, data, LINEAR_ONLY, trainer=FakeTrainer(solves=set()))
    assert not result.success and result.network.config == linear(5)   # the fake's best accuracy
    assert len(result.trace) == 5 and all(o.status == "failed" for o in result.trace)
    assert "no architecture" in result.message and "5 candidates" in result.message


def test_budget_cap_ends_the_search(sum_all):
    """Past ``max_network_steps`` the running candidates are capped and the search ends unsolved."""
    task, data = sum_all
    config = small(depths=((1, 1), (1, 2)), hidden_dims=(1, 2), widths=(4,), seeds=2, steps=100,
                          max_network_steps=500)
    result = search(task, data, config, trainer=FakeTrainer({RNNConfig(1, 1, 2, 2, 4)}, solve_step=60))
    assert not result.success and "budget of 500 network-steps ran out" in result.message
    assert [o.status for o in result.trace] == ["failed", "failed", "capped", "capped"]
    assert sum(o.network_steps for o in result.trace) <= 500 + 2 * 2 * 10     # one evaluation's overshoot


def test_halving_keeps_the_best_third_and_every_unbeaten_smaller_network():
    """At the first rung the most accurate third go on, and so does any network no smaller-or-equal one
    beats (a slow small learner is not dropped for a fast large one); the rest are pruned."""
    config = SearchConfig(probe_steps=100, eta=3)
    assert config.rungs(1000) == [100, 300, 900]
    later = halving_stop_rule(config, 1000, None)
    rule = halving_stop_rule(config, 1000, None)
    acc = {1: 0.10, 2: 0.05, 3: 0.90, 4: 0.95, 5: 0.50, 6: 0.97}
    results = [TrainResult(Member(linear(h), 0, tag=h), best_eval_accuracy=a) for h, a in acc.items()]
    active = list(range(len(results)))
    assert rule(results, active, 50) == {}                                  # not a rung
    pruned = rule(results, active, 100)
    assert {results[j].member.tag for j in pruned} == {2, 5}                # beaten by H=1 and by H=3/H=4
    assert set(pruned.values()) == {"pruned"}
    # at later rungs only the best third go on (a second chance comes after a success, in search)
    later(results, active, 100)
    results[1].best_eval_accuracy = 0.60                                    # H=2: error 0.95 -> 0.40
    results[5].best_eval_accuracy = 0.99                                    # the group's best improves too
    assert {results[j].member.tag for j in later(results, active, 300)} == {1, 2, 3, 5}


def test_candidates_pruned_before_the_winner_get_a_second_chance(sum_all):
    """Halving pruned H=1..3 early and H=4 won the group; the pruned ones then train again without
    halving, H=2 succeeds with the longer budget, and it is the winner."""
    task, data = sum_all
    script = [{1: "pruned", 2: "pruned", 3: "pruned", 4: "success", 5: "stopped"},
              {1: "budget", 2: "success", 3: "stopped"}]
    calls = []

    def trainer(members, data, config, device="cpu", stop_rule=None, on_finish=None):
        outcome = script[len(calls)]
        calls.append(sorted({m.config.hidden_dim for m in members}))
        results = []
        for m in members:
            why = outcome[m.config.hidden_dim]
            results.append(TrainResult(m, steps_run=10, success=why == "success", stop=why,
                                       success_step=10 if why == "success" else None,
                                       best_eval_accuracy=1.0 if why == "success" else 0.5,
                                       test_accuracy=1.0 if why == "success" else 0.5,
                                       network=init_network(m.config, m.seed)))
        return results

    result = search(task, data, small(depths=((1, 1),), hidden_dims=(1, 2, 3, 4, 5), seeds=1, steps=100),
                    trainer=trainer)
    assert calls == [[1, 2, 3, 4, 5], [1, 2, 3]]
    assert result.network.config == linear(2)
    assert [o.status for o in result.trace] == ["failed", "succeeded", "stopped", "succeeded", "stopped"]


def test_a_near_miss_group_trains_its_pruned_candidates_again(sum_all):
    """No network of the group reached 100%, but H=5 came within 1%: the pruned H=1..4 train again
    without halving, and H=4 (a slow learner) succeeds."""
    task, data = sum_all
    calls = []

    def trainer(members, data, config, device="cpu", stop_rule=None, on_finish=None):
        calls.append(sorted(m.config.hidden_dim for m in members))
        results = []
        for m in members:
            h = m.config.hidden_dim
            win = len(calls) == 2 and h == 4
            why = "success" if win else ("budget" if h == 5 or len(calls) == 2 else "pruned")
            acc = 1.0 if win else (0.995 if h == 5 else 0.3)
            results.append(TrainResult(m, steps_run=10, success=win, stop=why, success_step=10 if win else None,
                                       best_eval_accuracy=acc, test_accuracy=acc,
                                       network=init_network(m.config, m.seed)))
        return results

    result = search(task, data, small(depths=((1, 1),), hidden_dims=(1, 2, 3, 4, 5), seeds=1, steps=100),
                    trainer=trainer)
    assert calls == [[1, 2, 3, 4, 5], [1, 2, 3, 4]] and result.network.config == linear(4)
    far = small(depths=((1, 1),), hidden_dims=(1, 2, 3, 4, 5), seeds=1, steps=100, near_miss=0.999)
    calls.clear()
    assert not search(task, data, far, trainer=trainer).success and calls == [[1, 2, 3, 4, 5]]


def test_after_a_success_smaller_candidates_are_not_pruned():
    """Once H=3 succeeded, H=4.. stop and H=1, H=2 train on even at a rung where they rank last:
    whether a smaller network also succeeds is what is left to find out."""
    rule = halving_stop_rule(SearchConfig(probe_steps=100, eta=3), 1000, None)
    results = [TrainResult(Member(linear(h), 0, tag=h), best_eval_accuracy=0.1 * h) for h in (1, 2, 3, 4, 5)]
    results[2].success, results[2].stop = True, "success"
    assert rule(results, [0, 1, 3, 4], 100) == {3: "stopped", 4: "stopped"}


def test_a_group_whose_best_error_and_loss_stall_between_rungs_stops():
    """Rungs at 100, 300, 900: best error 0.5 -> 0.48 and loss 1.0 -> 0.95 (both under a 10% drop): the
    group stops. The error falling to 0.3, or the loss alone to 0.5 (a delay line whose rounded outputs
    lag its loss), keeps it going."""
    config = SearchConfig(probe_steps=100, eta=3, min_rung_gain=0.1)
    for acc, loss, stops in ((0.52, 0.95, True), (0.70, 0.95, False), (0.52, 0.5, False)):
        rule = halving_stop_rule(config, 1000, None)
        results = [TrainResult(Member(linear(h), 0, tag=h), best_eval_accuracy=0.5, best_eval_loss=1.0)
                   for h in (1, 2, 3)]
        rule(results, [0, 1, 2], 100)
        results[0].best_eval_accuracy, results[0].best_eval_loss = acc, loss
        verdict = rule(results, [0], 300)
        assert (verdict == {0: "plateau"}) == stops


def test_resume_does_not_retrain_finished_groups(sum_all, tmp_path):
    task, data = sum_all
    config = small(depths=((1, 1), (1, 2)), hidden_dims=(1, 2), widths=(4,), seeds=2, steps=100)
    solves = {RNNConfig(1, 1, 2, 2, 4)}
    with pytest.raises(KeyboardInterrupt):                        # killed during the second group
        search(task, data, config, progress=Progress(tmp_path), trainer=FakeTrainer(solves, 5))
    saved = json.loads((tmp_path / "progress.json").read_text())
    assert [row["label"] for row in saved] == ["H=1 f1 g1", "H=2 f1 g1"]

    resumed = FakeTrainer(solves)
    result = search(task, data, config, progress=Progress(tmp_path), trainer=resumed)
    assert linear(1) not in resumed.trained and linear(2) not in resumed.trained
    assert result.network.config == RNNConfig(1, 1, 2, 2, 4)
    fresh = search(task, data, config, trainer=FakeTrainer(solves))
    assert [(o.label, o.status) for o in result.trace] == [(o.label, o.status) for o in fresh.trace]


def test_presets():
    task = get_task("Parity_All")
    assert search_config("full").train_config(task).steps == task.steps      # the paper's step count
    assert search_config("smoke").train_config(task).steps < task.steps
    with pytest.raises(ValueError, match="unknown preset"):
        search_config("huge")


def test_smoke_search_finds_a_perfect_linear_network_for_sum_all(isolated):
    record = pipeline.ensure("Sum_All", "search", "smoke")
    assert record.success, record.message
    m = record.metrics
    assert m["hidden_depth"] == 1 and m["output_depth"] == 1 and m["test_accuracy"] == 1.0
    assert m["n_configs_tried"] >= 1 and m["n_params"] == RNNConfig(1, 1, m["hidden_dim"]).n_params()

    folder = stage_dir("sum_all", "search")
    model = load_model(folder / "model.pt")
    ds = load_dataset(get_task("Sum_All"), size=20_000)
    assert model.config.is_linear
    assert accuracy(predict(model, ds.x_test), ds.y_test) == 1.0    # the whole test split, independently

    trace = json.loads((folder / "trace.json").read_text())
    assert trace[0]["label"] == "H=1 f1 g1" and any(row["status"] == "succeeded" for row in trace)
    with np.load(folder / "curves.npz") as curves:
        assert curves["eval_accuracy"][-1] == 1.0 and len(curves["train_loss"]) == m["steps"]
    assert not progress_folder(get_task("Sum_All"), record.key, None).exists()

    again = pipeline.ensure("Sum_All", "search", "smoke")               # cached: same record, no work
    assert again.key == record.key and again.created == record.created
    assert load_record("sum_all", "search").success
    torch.testing.assert_close(load_model(folder / "model.pt").hidden_mlp.layers[0].weight,
                               model.hidden_mlp.layers[0].weight)


def test_search_stage_needs_the_dataset_of_its_preset(isolated):
    pipeline.ensure("Sum_All", "dataset", "smoke")
    with pytest.raises(ValueError, match="--stages dataset --preset full"):
        pipeline.run_stage("Sum_All", "search", "full")


def test_a_success_in_the_group_the_budget_ran_out_in_still_counts(sum_all):
    """A network at 100% is a success even if the cap cut smaller candidates of its group short."""
    task, data = sum_all
    config = small(depths=((1, 1), (1, 2)), hidden_dims=(1, 2), widths=(4,), seeds=2, steps=100,
                          max_network_steps=440)
    result = search(task, data, config, trainer=FakeTrainer({RNNConfig(1, 1, 2, 2, 4)}))
    assert [o.status for o in result.trace] == ["failed", "failed", "capped", "succeeded"]
    assert result.success and result.network.config == RNNConfig(1, 1, 2, 2, 4)
    assert "H=1 f2x4 g1 before it in order was cut short" in result.message

