"""Regression recovers the known update and output maps from ground-truth state tables of real task data.

The states stand in for what `extract` reads out of a trained network: prefix sums (Sum_All), velocity and
position (Newton_Freebody), sum bit and carry (Binary_Addition), parity, and finite-state machines whose
state numbers are shuffled, as an extractor's would be.
"""

import json

import numpy as np
import pytest

from mips import artifacts, codegen, data, program, regress
from mips.tasks import get_task, to_sequence


def _data(name: str, n: int = 1500):
    task = get_task(name)
    ds = data.load_dataset(task, n, seed=7, cache=False)
    return task, ds.x_train.astype(np.int64), ds.y_train.astype(np.int64)


def _with_start(states: np.ndarray) -> np.ndarray:
    """(n, T, k) states after each step -> (n, T+1, k) with the zero state h_0 in front."""
    return np.concatenate([np.zeros_like(states[:, :1]), states], axis=1)


def _adder_states(x: np.ndarray) -> np.ndarray:
    """Binary_Addition's (sum bit, carry) after each step."""
    carry, out = np.zeros(len(x), np.int64), []
    for t in range(x.shape[1]):
        total = x[:, t, 0] + x[:, t, 1] + carry
        carry = total // 2
        out.append(np.stack([total % 2, carry], axis=1))
    return np.stack(out, axis=1)


def _runs_like_reference(machine: regress.Machine, task, x: np.ndarray) -> bool:
    namespace: dict = {}
    exec(codegen.emit(machine.to_dict()), namespace)
    return all(namespace["f"](to_sequence(r)) == task.reference(to_sequence(r)) for r in x[:300])


def test_linear_recovers_sum_all():
    task, x, y = _data("Sum_All")
    m = regress.fit_machine(x, y, _with_start(np.cumsum(x, axis=1)), "lattice", task=task.name)
    assert [(f.method, f.expression) for f in m.formulas] == [("linear", "h + x"), ("linear", "h")]
    assert m.updates[0].rows > 1000          # tables hold every time step, not only the last
    assert m.initial_state == [0] and m.exact and m.method == "linear"


def test_linear_recovers_newton_freebody():
    task, x, y = _data("Newton_Freebody")
    v = np.cumsum(x, axis=1)
    m = regress.fit_machine(x, y, _with_start(np.concatenate([v, np.cumsum(v, axis=1)], axis=2)), "lattice",
                            task=task.name)
    assert [f.expression for f in m.formulas] == ["h0 + x", "h0 + h1 + x", "h1"]
    assert m.method == "linear" and _runs_like_reference(m, task, x)


def test_linear_accepts_exact_rational_coefficients_only():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 50, size=(400, 2))
    X = X[(X.sum(axis=1) % 2) == 0]
    f = regress.fit_target("h", X, X.sum(axis=1) // 2, ["h", "x"], regress.RegressConfig(methods=("linear",)))
    assert f.exact and f.expression == "(h + x) // 2"
    g = regress.fit_target("h", X, X.sum(axis=1) // 2 + (X[:, 0] == 10), ["h", "x"],
                           regress.RegressConfig(methods=("linear",)))
    assert not g.exact and g.method == "none"


def test_additive_reads_a_counter_whose_increment_is_a_table_of_the_symbol():
    """h' = h + w(x) with an arbitrary per-symbol increment: no linear or short symbolic formula, a full
    table would hold only on the states seen, the additive form ``h + D[x]`` holds everywhere."""
    rng = np.random.default_rng(1)
    inc = {0: 3, 1: -2, 2: 7, 3: 0}
    h = rng.integers(-40, 40, size=300)
    x = rng.integers(0, 4, size=300)
    X = np.column_stack([h, x])
    t = h + np.vectorize(inc.get)(x)
    cfg = regress.RegressConfig(methods=("linear", "additive", "table"))
    f = regress.fit_target("h", X, t, ["h", "x"], cfg, table_name="D_H", inputs=["x"])
    assert f.exact and f.method == "additive" and f.expression == "h + D_H[x]"
    assert sorted(map(tuple, f.table)) == sorted(inc.items())
    assert not regress.fit_target("h", X, t + (h > 30), ["h", "x"], cfg, inputs=["x"]).method == "additive"
    assert regress.fit_additive(X, t, ["h", "x"], cfg)[0] is None           # no input named: not applicable


def test_argmax_reads_a_classifier_output_as_integer_scores():
    """y = which of 0, h0, h1 is largest (ties to the first): no linear or Boolean formula, but three
    integer-linear scores whose arg-max it is, found by a linear program and checked on every row."""
    rng = np.random.default_rng(2)
    X = rng.integers(-6, 7, size=(400, 2))
    scores = np.column_stack([np.zeros(len(X), np.int64), X])
    t = np.argmax(scores, axis=1)
    f = regress.fit_target("y", X, t + 3, ["h0", "h1"], regress.RegressConfig(methods=("linear", "argmax")))
    assert f.exact and f.method == "argmax" and f.expression.startswith("argmax(") and f.expression.endswith("+ 3")
    assert codegen.is_exact(f.expression, ["h0", "h1"], X, t + 3)
    odd = regress.fit_target("y", X, np.where(t == 1, 5, t), ["h0", "h1"], regress.RegressConfig(methods=("argmax",)))
    assert odd.exact and odd.table == [[0, 0], [1, 2], [2, 5]]          # values 0, 2, 5 through a table
    xor = (X[:, 0] > 0) ^ (X[:, 1] > 0)
    assert not regress.fit_target("y", X, xor.astype(int), ["h0", "h1"],
                                  regress.RegressConfig(methods=("argmax",))).exact   # not linearly separable


def test_boolean_recovers_the_full_adder():
    task, x, y = _data("Binary_Addition")
    m = regress.fit_machine(x, y, _with_start(_adder_states(x)), "lattice", task=task.name)
    s, c = m.updates
    assert s.method == "boolean" and sorted(s.expression.split(" ^ ")) == ["a", "b", "h1"]
    assert c.method == "boolean" and c.expression == "int(h1 + a + b >= 2)"
    assert m.outputs[0].expression == "h0"
    assert _runs_like_reference(m, task, x)


def test_boolean_recovers_parity():
    task, x, y = _data("Parity_All")
    m = regress.fit_machine(x, y, _with_start(np.cumsum(x, axis=1) % 2), "lattice", task=task.name)
    assert (m.updates[0].method, m.updates[0].expression) == ("boolean", "h ^ x")


def test_boolean_minimizes_a_truth_table_with_dont_cares():
    names = ("p", "q", "r")
    ones = frozenset({(1, 1, 0), (1, 1, 1)})
    zeros = frozenset({(0, 0, 0), (0, 1, 1), (1, 0, 1)})
    assert regress.boolean_formula(names, ones, zeros) == "p & q"


def test_symbolic_fits_what_linear_and_boolean_cannot():
    task, x, y = _data("Abs_Diff")
    m = regress.fit_machine(x, y, _with_start(np.concatenate([x, y], axis=2)), "lattice", task=task.name,
                            constants=regress.task_constants(task))
    assert [f.method for f in m.formulas] == ["linear", "symbolic", "linear"]
    assert m.updates[1].expression in ("abs(h0 - x)", "abs(x - h0)")
    assert [a["method"] for a in m.updates[1].attempts] == ["linear", "boolean", "symbolic"]


def test_fsm_states_are_renumbered_so_counters_count():
    task, x, y = _data("Add_Mod_3")
    shuffled = np.array([2, 0, 1])
    m = regress.fit_machine(x, y, shuffled[_with_start(np.cumsum(x, axis=1)) % 3], "fsm", task=task.name,
                            constants=regress.task_constants(task))
    assert m.updates[0].expression == "(h + x) % 3" and m.outputs[0].expression == "h"
    assert m.encoding["labels"] == {2: 0, 0: 1, 1: 2}


def test_fsm_bit_encoding_search_finds_an_all_boolean_machine():
    task, x, y = _data("Binary_Addition")
    states = _adder_states(x)
    shuffled = np.array([3, 1, 0, 2])
    z = shuffled[_with_start(2 * states[..., 1] + states[..., 0])][..., None]
    cfg = regress.RegressConfig(methods=("linear", "boolean", "table"))
    m = regress.fit_machine(x, y, z, "fsm", cfg, task.name)
    assert m.encoding["type"] == "fsm_bits" and m.method == "boolean"
    assert len(m.state_names) == 2 and _runs_like_reference(m, task, x)
    # the extracted codes, re-encoded in the machine's bits, are the tables every formula is exact on
    tables = regress.machine_tables({"x": x, "y": y, "z": z}, m.to_dict())
    for f in m.formulas:
        X, t = tables[f.name]
        assert codegen.is_exact(f.expression, f.variables, X, t), f.name


def test_table_fallback_is_exact_and_reported_apart():
    task, x, y = _data("Add_Mod_3")
    z = _with_start(np.cumsum(x, axis=1) % 3)
    m = regress.fit_machine(x, y, z, "fsm", regress.RegressConfig(methods=("linear", "table")), task.name)
    assert m.updates[0].method == "table" and m.outputs[0].method == "linear"
    assert m.method == "mixed" and regress.metrics_of(m)["n_tables"] == 1
    assert regress.metrics_of(m)["n_formulas"] == 1
    assert _runs_like_reference(m, task, x)


def test_contradictory_states_are_reported_not_fitted():
    task, x, y = _data("Sum_All")
    z = _with_start(np.cumsum(x, axis=1) // 7)            # loses information: not a deterministic machine
    m = regress.fit_machine(x, y, z, "lattice", task=task.name)
    assert not m.exact
    assert m.updates[0].method == "none" and "not a function" in m.updates[0].note


def test_bad_shapes_are_a_clear_error():
    with pytest.raises(ValueError, match="expected x"):
        regress.fit_machine(np.zeros((2, 3, 1)), np.zeros((2, 3, 1)), np.zeros((2, 3, 1)))


def _ground_truth_extract(task, run_dir, z_of, success=True):
    """An extract record and states.npz built from the task's own data, as the extract stage writes them."""
    ds = data.dataset_for(task, "smoke")
    x, y = ds.x_train.astype(np.int64), ds.y_train.astype(np.int64)
    st = artifacts.StageRun(task.id, "extract", {"ground_truth": True, "success": success}, run_dir=run_dir)
    np.savez(st.path("states.npz"), x=x, y=y, z=z_of(x), kind=np.array("lattice"),
             y_net_test=ds.y_test.astype(np.int64))
    return st.finish({"kind": "lattice"}, success=success, message="" if success else "no integer lattice")


def test_regress_stage_writes_formulas_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("MIPS_CACHE", str(tmp_path / "cache"))
    task = get_task("Sum_All")
    _ground_truth_extract(task, tmp_path, lambda x: _with_start(np.cumsum(x, axis=1)))
    rec = regress.run(task, "smoke", tmp_path)
    assert rec.success and rec.metrics["methods"] == {"h": "linear", "y": "linear"}
    saved = json.loads((artifacts.stage_dir(task.id, "regress", tmp_path) / "formulas.json").read_text())
    assert saved["initial_state"] == [0] and saved["updates"][0]["expression"] == "h + x"
    assert saved["updates"][0]["latex"] == "h + x"
    assert regress.run(task, "smoke", tmp_path).created == rec.created      # cached, not recomputed


def test_failed_extract_is_recorded_downstream(tmp_path, monkeypatch):
    monkeypatch.setenv("MIPS_CACHE", str(tmp_path / "cache"))
    task = get_task("Sum_All")
    _ground_truth_extract(task, tmp_path, lambda x: _with_start(np.cumsum(x, axis=1)), success=False)
    rec = regress.run(task, "smoke", tmp_path)
    assert not rec.success and "extract" in rec.message
    prog = program.run(task, "smoke", tmp_path)
    assert not prog.success and prog.metrics["failed_stage"] == "extract"
    assert prog.metrics["solved"] is False and "extract" in prog.message
