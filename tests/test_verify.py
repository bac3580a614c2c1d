"""The shared verifier accepts right programs and classifies every way a program can be wrong."""

import numpy as np
import pytest

from mips import data, sandbox, verify
from mips.tasks import get_task

QUICK = sandbox.Limits(cpu_seconds=2, wall_seconds=6)

RUNNING_SUM = """
def f(xs):
    s, ys = 0, []
    for x in xs:
        s += x
        ys.append(s)
    return ys
"""


@pytest.fixture(scope="module")
def sum_all():
    task = get_task("Sum_All")
    return task, data.load_dataset(task, 2000, seed=21, cache=False)


def test_a_right_program_passes_all_three_checks(sum_all):
    task, ds = sum_all
    v = verify.verify_source(RUNNING_SUM, task, ds, network_outputs=ds.y_test, exhaustive_budget=20_000,
                             limits=QUICK)
    assert v.outcome == "pass" and v.solved and v.test_ok and v.exhaustive_ok
    assert v.test_rows == v.test_rows_correct == len(ds.x_test)
    assert v.exhaustive_length == 2 and v.exhaustive_count == 10_100
    assert v.network_agreement == 1.0 and v.counterexample is None
    assert v.to_dict()["solved"] is True
    table = verify.verdict_table(v.to_dict())
    assert table.count("| pass |") == 2 and "100.000%" in table


def test_program_outputs_come_back_as_arrays(sum_all):
    task, ds = sum_all
    out = verify.program_outputs(RUNNING_SUM, task, ds.x_test[:50], limits=QUICK)
    assert out.shape == ds.y_test[:50].shape and np.array_equal(out, ds.y_test[:50])
    with pytest.raises(RuntimeError, match="runtime_error"):
        verify.program_outputs("def f(xs):\n    return 1 // 0\n", task, ds.x_test[:5], limits=QUICK)


def test_network_agreement_counts_positions(sum_all):
    task, ds = sum_all
    net = ds.y_test.copy()
    net[:10, 3] += 1                                     # 10 wrong positions out of n_test * 10
    v = verify.verify_source(RUNNING_SUM, task, ds, network_outputs=net, exhaustive_budget=100, limits=QUICK)
    assert v.solved and v.network_agreement == pytest.approx(1 - 10 / net[..., 0].size)


def test_a_wrong_program_is_rejected_with_a_short_counterexample(sum_all):
    task, ds = sum_all
    wrong = RUNNING_SUM.replace("s += x", "s += x if x != 7 else 8")
    v = verify.verify_source(wrong, task, ds, exhaustive_budget=20_000, limits=QUICK)
    assert v.outcome == "wrong_output" and not v.solved and not v.test_ok
    assert 0 < v.test_rows_correct < v.test_rows
    ce = v.counterexample
    assert ce["split"] == "exhaustive" and ce["input"] == [7] and ce["expected"] == [7] and ce["got"] == [8]


def test_right_on_the_test_split_but_wrong_on_short_sequences(sum_all):
    task, ds = sum_all
    short_wrong = RUNNING_SUM.replace("    s, ys = 0, []", "    s, ys = 0, []\n    if len(xs) < 3:\n"
                                      "        return [0] * len(xs)")
    v = verify.verify_source(short_wrong, task, ds, exhaustive_budget=20_000, limits=QUICK)
    assert v.test_ok and not v.exhaustive_ok and not v.solved and v.outcome == "wrong_output"
    assert v.counterexample["length"] == 1 and v.counterexample["split"] == "exhaustive"


def test_a_program_that_only_handles_length_ten_fails(sum_all):
    task, ds = sum_all
    fixed_length = RUNNING_SUM.replace("for x in xs:\n        s += x", "for i in range(10):\n        s += xs[i]")
    v = verify.verify_source(fixed_length, task, ds, exhaustive_budget=20_000, limits=QUICK)
    assert v.test_ok and not v.solved and v.outcome == "runtime_error"
    assert v.counterexample["length"] == 1 and "IndexError" in v.error


@pytest.mark.parametrize("source, outcome", [
    ("def f(xs):\n    return [x +  for x in xs]\n", "syntax_error"),
    ("def f(xs):\n    return [x // 0 for x in xs]\n", "runtime_error"),
    ("def f(xs):\n    while True:\n        pass\n", "timeout"),
    ("def g(xs):\n    return xs\n", "no_entry"),
])
def test_broken_programs_are_classified(sum_all, source, outcome):
    task, ds = sum_all
    v = verify.verify_source(source, task, ds, exhaustive_budget=100, limits=QUICK)
    assert v.outcome == outcome and not v.solved and not v.test_ok and v.error


def test_malformed_outputs_are_wrong_not_crashes(sum_all):
    task, ds = sum_all
    for body in ("return [str(x) for x in xs]", "return xs[:-1]", "return None"):
        v = verify.verify_source(f"def f(xs):\n    {body}\n", task, ds, exhaustive_budget=100, limits=QUICK)
        assert v.outcome == "wrong_output" and v.test_rows_correct == 0, body


@pytest.mark.parametrize("source, outcome", [
    ("def f(xs):\n    return [10 ** 400 for x in xs]\n", "wrong_output"),        # no float holds it
    ("import os\ndef f(xs):\n    os._exit(0)\n", "runtime_error"),                # exits mid-batch
    ("import os\nos._exit(0)\ndef f(xs):\n    return xs\n", "runtime_error"),  # exits at import
    ("import json, os\ndef f(xs):\n    os.write(1, json.dumps({'outcome': 'ok', 'outputs': [[0]] * 99999})"
     ".encode())\n    os._exit(0)\n", "runtime_error"),                            # forges a longer report
])
def test_hostile_outputs_get_a_verdict_not_a_crash(sum_all, source, outcome):
    task, ds = sum_all
    v = verify.verify_source(source, task, ds, exhaustive_budget=100, limits=QUICK)
    assert v.outcome == outcome and not v.solved and v.test_rows_correct == 0


def test_bools_and_lists_stand_in_for_ints_and_tuples():
    task = get_task("Binary_Addition")
    ds = data.load_dataset(task, 1000, seed=22, cache=False)
    source = """
def f(xs):
    carry, ys = False, []
    for a, b in xs:
        total = a + b + carry
        ys.append([total % 2 == 1])
        carry = total >= 2
    return ys
"""
    v = verify.verify_source(source, task, ds, exhaustive_budget=2**12, limits=QUICK)
    assert v.solved and v.exhaustive_length == 5


def test_exhaustive_length_fits_the_budget():
    assert verify.exhaustive_length(get_task("Sum_All")) == 3          # 100 + 100^2 + 100^3 <= 2^20
    assert verify.exhaustive_length(get_task("Parity_All")) == 10      # all bit sequences up to T
    assert verify.exhaustive_length(get_task("Binary_Addition")) == 9  # 4 + ... + 4^9 <= 2^20 < ... + 4^10
    assert verify.exhaustive_length(get_task("Sum_All"), budget=99) == 0


def test_no_exhaustive_budget_means_test_split_only(sum_all):
    task, ds = sum_all
    v = verify.verify_source(RUNNING_SUM, task, ds, exhaustive_budget=0, limits=QUICK)
    assert v.solved and v.exhaustive_length == 0 and v.exhaustive_count == 0


def test_all_sequences_enumerates_the_domain():
    task = get_task("Binary_Addition")
    seqs = list(verify.all_sequences(task, 2))
    assert len(seqs) == 16 and len({tuple(s) for s in seqs}) == 16
    assert all(isinstance(step, tuple) and len(step) == 2 for s in seqs for step in s)
    assert np.all([v in (0, 1) for s in seqs for step in s for v in step])
