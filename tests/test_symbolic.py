"""The enumerative symbolic regression finds short exact integer formulas on tables from real task data."""

import numpy as np
import pytest

from mips import codegen, data, symbolic
from mips.tasks import get_task


def _task_data(name: str, n: int = 2000):
    ds = data.load_dataset(get_task(name), n, seed=3, cache=False)
    return ds.x_train.astype(np.int64)[..., 0], ds.y_train.astype(np.int64)[..., 0]


def _previous_and_current(prev: np.ndarray, cur: np.ndarray, target: np.ndarray):
    """Rows (previous value, current input) -> target from every step t >= 1."""
    return np.column_stack([prev[:, :-1].ravel(), cur[:, 1:].ravel()]), target[:, 1:].ravel()


def _assert_exact(res: symbolic.SearchResult, X, t, names):
    assert res.expression is not None, res.stopped
    assert np.array_equal(codegen.evaluate(res.expression, names, X), t)


def test_abs_diff_from_previous_input():
    x, y = _task_data("Abs_Diff")
    X, t = _previous_and_current(x, x, y)
    res = symbolic.search(X, t, ["a", "x"])
    _assert_exact(res, X, t, ["a", "x"])
    assert res.length == 4 and res.expression in ("abs(a - x)", "abs(x - a)")


def test_running_max():
    x, y = _task_data("Max_Seen")
    X, t = _previous_and_current(y, x, y)
    res = symbolic.search(X, t, ["a", "x"])
    _assert_exact(res, X, t, ["a", "x"])
    assert res.length == 3 and res.expression.startswith("max(")


def test_add_mod_3_counter():
    x, y = _task_data("Add_Mod_3")
    X, t = _previous_and_current(y, x, y)
    res = symbolic.search(X, t, ["a", "x"])
    _assert_exact(res, X, t, ["a", "x"])
    assert res.length == 5 and "% 3" in res.expression


def test_floor_division_by_a_constant():
    x, _ = _task_data("Sum_All")
    X, t = x.reshape(-1, 1), x.ravel() // 2
    res = symbolic.search(X, t, ["x"])
    _assert_exact(res, X, t, ["x"])
    assert res.expression == "x // 2"


def test_four_variables_length_seven():
    rng = np.random.default_rng(0)
    X = rng.integers(-50, 50, size=(3000, 4))
    t = (X[:, 0] * X[:, 2] + X[:, 1]) % 7
    res = symbolic.search(X, t, ["a", "b", "c", "d"])
    _assert_exact(res, X, t, ["a", "b", "c", "d"])
    assert res.length == 7


def test_rejects_candidates_exact_only_on_part_of_the_table():
    """One changed row breaks (a + x) % 3; no short formula fits, and nothing inexact is returned."""
    x, y = _task_data("Add_Mod_3")
    X, t = _previous_and_current(y, x, y)
    Xd, idx = np.unique(X, axis=0, return_index=True)
    td = t[idx].copy()
    td[len(td) // 2] = (td[len(td) // 2] + 1) % 3
    res = symbolic.search(Xd, td, ["a", "x"], symbolic.SearchConfig(max_length=5))
    assert res.expression is None
    assert "no expression" in res.stopped or "sample" in res.stopped


def test_sample_only_fits_trigger_a_larger_sample():
    """Rows where a formula on the first sample fails are added, and the answer is exact on all rows."""
    rng = np.random.default_rng(1)
    X = rng.integers(0, 1000, size=(5000, 1))
    t = np.minimum(X[:, 0], 7)                       # equals x on most small-valued samples
    res = symbolic.search(X, t, ["x"], symbolic.SearchConfig(sample_rows=2))
    _assert_exact(res, X, t, ["x"])
    assert res.expression == "min(x, 7)"
    assert res.rejected >= 1          # e.g. x % 8 fits the rows x = 0 and x = 999 but not the table


def test_printed_expressions_mean_what_the_enumerator_computed():
    """Every stored expression's Python source evaluates (with Python's semantics) to its value vector."""
    rng = np.random.default_rng(2)
    X = rng.integers(-9, 10, size=(24, 2))
    en = symbolic.Enumerator(X, np.zeros(24, np.int64), symbolic.SearchConfig(max_length=6),
                             check=lambda node: np.zeros(1), deadline=float("inf"))
    en.leaves(2)
    for length in (2, 3, 4):
        en._empty(length)
        for vals, consts, prov in en.generate(length):
            en._store(length, vals, consts, prov)
    checked = 0
    for length in (2, 3, 4):
        for k in range(0, len(en.vals[length]), 2):
            node = en.node(length, k)
            src = node.to_python(["a", "b"])
            try:
                py = [eval(src, {}, {"a": int(r[0]), "b": int(r[1])}) for r in X]
            except ZeroDivisionError:
                continue
            assert np.array_equal(np.asarray(py, dtype=np.int64), en.vals[length][k]), src
            assert node.length == length
            checked += 1
    assert checked > 200


def test_same_seed_same_result():
    x, y = _task_data("Abs_Diff", 500)
    X, t = _previous_and_current(x, x, y)
    a = symbolic.search(X, t, ["a", "x"], symbolic.SearchConfig(seed=5))
    b = symbolic.search(X, t, ["a", "x"], symbolic.SearchConfig(seed=5))
    assert (a.expression, a.candidates, a.sample_rows) == (b.expression, b.candidates, b.sample_rows)


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown operators"):
        symbolic.SearchConfig(binary=("pow",))
