"""The leaderboard reads stage records: solved tasks, the failing stage, and checks never reached."""

from mips.artifacts import StageRun
from mips.results import leaderboard, totals
from mips.tasks import registry


def _stage(task_id, stage, success, **metrics):
    StageRun(task_id, stage, {"x": 1}).finish(metrics, success=success)


def test_rows_say_where_each_task_stopped(isolated):
    for s in ("search", "simplify", "extract", "regress"):
        _stage("sum_all", s, True, hidden_dim=1)
    _stage("sum_all", "program", True, solved=True, test_ok=True, exhaustive_ok=True, method="linear")
    _stage("prev2", "search", True, hidden_dim=2)
    _stage("prev2", "simplify", True)
    _stage("prev2", "extract", False, kind="")
    _stage("prev2", "regress", False)
    _stage("prev2", "program", False, solved=False, test_ok=False, exhaustive_ok=False)
    for s in ("search", "simplify", "extract", "regress"):
        _stage("parity_all", s, True)
    _stage("parity_all", "program", True, solved=False, test_ok=True, exhaustive_ok=False)
    rows = {r.task: r for r in leaderboard(registry().select("Sum_All,Prev2,Parity_All,Abs_Diff"))}
    assert rows["Sum_All"].solved and rows["Sum_All"].failed_stage == "" and rows["Sum_All"].method == "linear"
    assert rows["Prev2"].failed_stage == "extract" and rows["Prev2"].test_ok is None
    assert rows["Parity_All"].failed_stage == "verify" and rows["Parity_All"].exhaustive_ok is False
    assert not rows["Abs_Diff"].ran
    tot = totals(list(rows.values()))
    assert tot["mips_solved"] == 1 and tot["n_ran"] == 3
    assert tot["failures_by_stage"] == {"extract": 1, "verify": 1}


def test_compute_seconds_are_summed_from_the_records(isolated):
    for s in ("search", "simplify"):
        _stage("sum_all", s, True)
    _stage("prev2", "search", True)
    rows = {r.task: r for r in leaderboard(registry().select("Sum_All,Prev2,Abs_Diff"))}
    assert set(rows["Sum_All"].stage_seconds) == {"search", "simplify"}
    assert set(rows["Prev2"].stage_seconds) == {"search"}
    assert rows["Sum_All"].seconds == round(sum(rows["Sum_All"].stage_seconds.values()), 1)
    assert rows["Abs_Diff"].seconds == 0.0 and rows["Abs_Diff"].stage_seconds == {}
    by_stage = totals(list(rows.values()))["seconds_by_stage"]
    searches = rows["Sum_All"].stage_seconds["search"] + rows["Prev2"].stage_seconds["search"]
    assert by_stage["search"] == round(searches, 1)
    assert by_stage["program"] == 0.0


def test_pgtd_verdicts_come_from_the_chapter_records(isolated):
    from mips.pgtd.experiment import CHAPTER

    StageRun(CHAPTER, "sum_all", {"x": 1}).finish({"results": {"pgtd": {"public_strict": True, "strict": False}}},
                                                  success=True)
    rows = {r.task: r for r in leaderboard(registry().select("Sum_All,Prev2"))}
    assert (rows["Sum_All"].pgtd_public, rows["Sum_All"].pgtd_strict) == (True, False)
    assert rows["Prev2"].pgtd_strict is None
    tot = totals(list(rows.values()))
    assert tot["pgtd_ran"] == 1 and tot["pgtd_strict_solved"] == 0
