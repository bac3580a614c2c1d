"""The causal check of MIPS programs: swap lattice coordinates in the network, compare with the program.

Runs the real pipeline at smoke size on Sum_All (seconds) and checks the interchange results against the
emitted program itself, run on spliced inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from mips import artifacts, get_task, pipeline
from mips.das import causal_mips
from mips.data import dataset_for
from mips.tasks import to_sequence


@pytest.fixture(scope="module")
def sum_all(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("mips-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIPS_CACHE", str(run_dir / "cache"))
        task = get_task("Sum_All")
        prog = pipeline.ensure(task, "program", "smoke", run_dir)
        if not prog.metrics.get("solved"):
            pytest.skip(f"the smoke pipeline did not solve Sum_All ({prog.message}); nothing to check causally")
        rec = causal_mips.run(task, "smoke", run_dir)
        yield task, run_dir, rec


def _program(run_dir, task_id):
    ns: dict = {}
    exec((artifacts.stage_dir(task_id, "program", run_dir) / "program.py").read_text(), ns)   # our own emitted code
    return ns["f"]


def test_lattice_swaps_do_what_the_program_says(sum_all):
    task, run_dir, rec = sum_all
    m = rec.metrics
    assert rec.success and m["n_pairs"] == causal_mips.CausalConfig.for_preset("smoke").n_pairs * m["subspace_dim"]
    assert m["iia"] >= 0.99
    assert m["changed_fraction"] > 0.5          # the swaps mattered: IIA is not the unintervened agreement
    if m["control_iia"] is not None:
        assert m["control_iia"] < m["iia"] - 0.5
    again = causal_mips.run(task, "smoke", run_dir)
    assert again.key == rec.key and again.created == rec.created


def test_program_counterfactual_is_the_spliced_input(sum_all):
    """Swapping the whole state = running the program on the source's prefix then the target's suffix."""
    task, run_dir, rec = sum_all
    f = _program(run_dir, task.id)
    p = causal_mips.load_pairs(task.id, run_dir)
    x = dataset_for(task, "smoke").x_test
    k = rec.metrics["subspace_dim"]
    full_group = k if k > 1 else 0
    checked = 0
    for i in np.flatnonzero(p["group"] == full_group)[:100]:
        s, t = int(p["src_step"][i]), int(p["trg_step"][i])
        spliced = np.concatenate([x[p["src_row"][i], :s], x[p["trg_row"][i], t:]])
        want = np.array(f(to_sequence(spliced))[s - 1:]).reshape(-1, 1)
        got = p["program_outputs"][i, :len(want)]
        assert np.array_equal(got, want)
        assert p["correct"][i] == np.array_equal(p["net_outputs"][i, :len(want)], want)
        checked += 1
    assert checked == 100


def test_machine_reports_states_a_table_does_not_cover():
    machine = causal_mips.Machine({
        "state_names": ["h"], "input_names": ["x"],
        "updates": [{"name": "h", "method": "table", "expression": "NEXT_H[h, x]", "variables": ["h", "x"],
                     "table": [[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]], "table_name": "NEXT_H"}],
        "outputs": [{"name": "y", "method": "linear", "expression": "h", "variables": ["h"]}],
    })
    z = np.array([[0], [1], [5]])
    x = np.array([[[1], [1]], [[1], [0]], [[0], [0]]])
    y, ok = machine.run_from(z, x)
    assert ok.tolist() == [True, True, False]
    assert y[0, :, 0].tolist() == [0, 1, 0] and y[1, :, 0].tolist() == [1, 0, 0]


def test_unsolved_or_non_lattice_tasks_are_skipped_with_a_reason(tmp_path):
    task = get_task("Prev1")
    for stage, metrics in (("extract", {}), ("program", {"solved": False})):
        artifacts.StageRun(task.id, stage, {"test": True}, run_dir=tmp_path).finish(metrics, success=False)
    rec = causal_mips.run(task, "smoke", tmp_path)
    assert not rec.success and "did not solve" in rec.message and rec.metrics["iia"] is None
    ext = artifacts.StageRun(task.id, "extract", {"test": 2}, run_dir=tmp_path)
    np.savez(ext.path("states.npz"), kind=np.array("fsm"), basis=np.zeros((0, 2)), offset=np.zeros(0))
    ext.finish({}, success=True)
    artifacts.StageRun(task.id, "program", {"test": 2}, run_dir=tmp_path).finish({"solved": True}, success=True)
    rec = causal_mips.run(task, "smoke", tmp_path)
    assert not rec.success and "not an integer lattice" in rec.message
    with pytest.raises(FileNotFoundError, match="has not been run"):
        causal_mips.run(get_task("Sum_Last2"), "smoke", tmp_path)
