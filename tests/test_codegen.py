"""Emitted programs are valid, self-contained and correct on real task data; formulas evaluate like Python."""

import json

import numpy as np
import pytest

from mips import artifacts, codegen, data, program, regress, sandbox, verify
from mips.tasks import get_task

LIMITS = sandbox.Limits(cpu_seconds=20, wall_seconds=40)


def _with_start(states):
    return np.concatenate([np.zeros_like(states[:, :1]), states], axis=1)


def test_evaluate_follows_python_semantics():
    rng = np.random.default_rng(0)
    X = rng.integers(-20, 21, size=(300, 2))
    X = X[X[:, 1] != 0]
    for expr in ["h // x", "h % x", "-h // 3 + abs(x) * 2", "int(h < x) - int(h == -x)", "max(h, x, 3) - min(h, 0)",
                 "h & 5 ^ x | 2", "int(0 <= h < x)", "-(h - x) % 4"]:
        want = [eval(expr, {}, {"h": int(a), "x": int(b)}) for a, b in X]
        assert np.array_equal(codegen.evaluate(expr, ["h", "x"], X), want), expr


def test_evaluate_raises_like_the_program_would():
    with pytest.raises(ZeroDivisionError):
        codegen.evaluate("h // x", ["h", "x"], np.array([[1, 0]]))
    with pytest.raises(KeyError):
        codegen.evaluate("T[h, x]", ["h", "x"], np.array([[1, 0]]), {"T": {(0, 0): 1}})
    with pytest.raises(ValueError, match="unsupported"):
        codegen.evaluate("__import__('os')", ["h"], np.array([[1]]))


def test_tidy_simplifies_only_when_still_exact():
    X = np.array([[0, 1], [3, 4], [-2, 5]])
    t = X[:, 0] + X[:, 1]
    assert codegen.tidy("2*h + x - h + 0", ["h", "x"], X, t) == "h + x"
    assert codegen.tidy("(2*h + 2*x) // 2", ["h", "x"], X, t) == "h + x"
    # a formula that is wrong on the table is never "simplified" into something else
    assert codegen.tidy("h + x + 0*h", ["h", "x"], X, t + 1) == "h + x + 0*h"


def test_latex_of_each_kind_of_formula():
    names = ["h", "x", "a", "b"]
    assert codegen.to_latex("(h + x) % 3", names) == r"\left(h + x\right) \bmod 3"
    assert codegen.to_latex("abs(h - x)", names) == r"\left|{h - x}\right|"
    assert codegen.to_latex("x // 2", names) == r"\left\lfloor{\frac{x}{2}}\right\rfloor"
    assert codegen.to_latex("int(h + a + b >= 2)", names) == r"\left[a + b + h \geq 2\right]"
    assert r"\veebar" in codegen.to_latex("h ^ a ^ b", names)


def test_expression_length_matches_the_enumerator():
    assert codegen.expression_length("abs(x - a)") == 4
    assert codegen.expression_length("(a + x) % 3") == 5
    assert codegen.expression_length("int(h + a + b >= 2)") == 7
    assert codegen.expression_length("max(h, x)") == 3


def _sum_all_machine(task):
    ds = data.load_dataset(task, 1500, seed=11, cache=False)
    x, y = ds.x_train.astype(np.int64), ds.y_train.astype(np.int64)
    return regress.fit_machine(x, y, _with_start(np.cumsum(x, axis=1)), "lattice", task=task.name)


def test_emitted_sum_all_program_passes_the_verifier():
    task = get_task("Sum_All")
    source = codegen.emit(_sum_all_machine(task).to_dict())
    assert "import" not in source and "for x in xs:" in source and "range(" not in source
    ds = data.load_dataset(task, 3000, seed=12, cache=False)
    v = verify.verify_source(source, task, ds, network_outputs=ds.y_test, exhaustive_budget=20_000,
                             limits=LIMITS)
    assert v.solved and v.outcome == "pass" and v.network_agreement == 1.0
    assert v.exhaustive_length == 2 and v.exhaustive_count == 100 + 100**2
    assert codegen.program_lines(source) == 8


def test_emitted_binary_addition_program_passes_the_verifier():
    task = get_task("Binary_Addition")
    ds = data.load_dataset(task, 3000, seed=13, cache=False)
    x, y = ds.x_train.astype(np.int64), ds.y_train.astype(np.int64)
    carry, states = np.zeros(len(x), np.int64), []
    for t in range(x.shape[1]):
        total = x[:, t, 0] + x[:, t, 1] + carry
        carry = total // 2
        states.append(np.stack([total % 2, carry], axis=1))
    m = regress.fit_machine(x, y, _with_start(np.stack(states, axis=1)), "lattice", task=task.name)
    source = codegen.emit(m.to_dict())
    assert "a, b = x" in source and "h0, h1 = " in source
    v = verify.verify_source(source, task, ds, exhaustive_budget=2**12, limits=LIMITS)
    assert v.solved and v.exhaustive_length == 5 and v.network_agreement is None


def test_emit_refuses_inexact_machines():
    task = get_task("Sum_All")
    machine = _sum_all_machine(task).to_dict()
    machine["updates"][0]["exact"] = False
    with pytest.raises(ValueError, match="no exact formula for h"):
        codegen.emit(machine)


def test_table_programs_carry_their_tables():
    task = get_task("Add_Mod_3")
    ds = data.load_dataset(task, 1500, seed=14, cache=False)
    x, y = ds.x_train.astype(np.int64), ds.y_train.astype(np.int64)
    m = regress.fit_machine(x, y, _with_start(np.cumsum(x, axis=1) % 3), "fsm",
                            regress.RegressConfig(methods=("table",)), task.name)
    source = codegen.emit(m.to_dict())
    assert "NEXT_H = Table({" in source and "OUT_Y = Table({" in source
    v = verify.verify_source(source, task, ds, exhaustive_budget=500, limits=LIMITS)
    assert v.solved


def test_a_table_program_answers_keys_it_never_saw():
    """A table fitted on part of the reachable states (here: sums mod 3 seen only from state 0 and 1) runs
    on every input without a KeyError; unseen keys get the table's most common value."""
    task = get_task("Add_Mod_3")
    x = np.array([[[0], [1], [0], [1]], [[1], [0], [0], [0]]], dtype=np.int64)
    z = _with_start(np.cumsum(x, axis=1) % 3)
    m = regress.fit_machine(x, np.cumsum(x, axis=1) % 3, z, "fsm", regress.RegressConfig(methods=("table",)),
                            task.name)
    namespace: dict = {}
    exec(codegen.emit(m.to_dict()), namespace)                  # noqa: S102 - our own emitted program
    assert namespace["f"]([1, 1, 1, 2, 2]) and len(namespace["f"]([2, 2, 2, 2])) == 4


def test_program_stage_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("MIPS_CACHE", str(tmp_path / "cache"))
    task = get_task("Sum_All")
    ds = data.dataset_for(task, "smoke")
    x = ds.x_train.astype(np.int64)
    st = artifacts.StageRun(task.id, "extract", {"ground_truth": True}, run_dir=tmp_path)
    net = ds.y_test.astype(np.int64).copy()
    net[0, 0, 0] += 1                                      # the network got one position wrong
    np.savez(st.path("states.npz"), x=x, y=ds.y_train.astype(np.int64), z=_with_start(np.cumsum(x, axis=1)),
             kind=np.array("lattice"), y_net_test=net)
    ext = st.finish({"kind": "lattice"}, success=True)
    regress.run(task, "smoke", tmp_path)
    rec = program.run(task, "smoke", tmp_path)
    m = rec.metrics
    assert rec.success and m["solved"] and m["failed_stage"] is None and m["method"] == "linear"
    assert m["test_rows"] == len(ds.x_test) and m["exhaustive_length"] == 2
    assert m["network_agreement"] == pytest.approx(1 - 1 / net[..., 0].size)
    assert rec.upstream["extract"] == ext.key
    source, verdict = program.load(task.id, tmp_path)
    assert source.startswith('"""Sum_All') and verdict["solved"] is True
    folder = artifacts.stage_dir(task.id, "program", tmp_path)
    assert json.loads((folder / "verdict.json").read_text())["outcome"] == "pass"


def test_constant_target_with_no_variables_evaluates_on_every_row():
    """A target that depends on nothing (its table has zero columns) is a constant, not a crash."""
    from mips.codegen import evaluate

    assert evaluate("1", [], np.zeros((5, 0), dtype=np.int64)).tolist() == [1] * 5
