"""The leaderboard: one row per task, read from the stage records of a run.

Everything here is read from ``runs/<task>/<stage>/record.json``; nothing is typed in, except the paper's
own published figures, which are labelled as such (``PAPER``).
Explained in notebooks/results.ipynb.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from mips.artifacts import load_record
from mips.pgtd.experiment import leaderboard_entry as pgtd_entry
from mips.tasks import Task

# Published figures (arXiv 2402.05110, abstract): tasks solved of 62. GPT-4's were judged by its own
# "success" print (see mips.md §12); the per-task list of GPT-4's lenient successes is its task_results.csv.
PAPER = {"n_tasks": 62, "mips_solved": 32, "gpt4_solved": 30}
GPT4_LENIENT_SOLVED = frozenset("""
Abs_Current Add_Mod_3 Alternating_Last4 Base_6_Addition Bit_Palindrome Bit_Shift_Right Bitwise_And Bitwise_Not
Bitwise_Or Bitwise_Xor Current_Number Diff_Abs_Values Dithering Div_3 Evens_Detector Majority_0_1 Max_Seen
Min_Seen Parity_Bits_Mod2 Parity_Last2 Prev1 Prev2 Prev3 Prev4 Prev5 Sum_All Sum_Last4 Sum_Last5 Sum_Last6
Sum_Last7""".split())

PIPELINE = ("search", "simplify", "extract", "regress", "program")
COMPACT_LOOKUP_ROWS = 64    # a solved program whose state lookup tables hold more entries is not compact


@dataclass
class TaskResult:
    """One task's row of the leaderboard."""

    task: str
    paper_index: int
    ran: bool = False
    hidden_dim: int | None = None
    architecture: str = ""
    representation: str = ""             # the winner's input encoding → output head
    search_ok: bool | None = None
    hidden_dim_after: int | None = None
    state_kind: str = ""
    n_states: int | None = None          # distinct codes the network's states took
    state_dim: int | None = None         # lattice (or count) coordinates, or 1 for a machine's state index
    lookup_rows: int | None = None       # entries of the program's lookup tables over states (0: formulas)
    compact: bool | None = None          # solved with lookup tables of at most COMPACT_LOOKUP_ROWS entries
    method: str = ""
    program_lines: int | None = None
    test_ok: bool | None = None
    exhaustive_ok: bool | None = None
    exhaustive_length: int | None = None
    network_agreement: float | None = None
    solved: bool = False
    failed_stage: str = ""
    llm_lenient: bool | None = None
    llm_strict: bool | None = None
    pgtd_public: bool | None = None      # PG-TD's pick passes the shown examples (the chapter's public tests)
    pgtd_strict: bool | None = None      # ... and the strict verifier
    causal_iia: float | None = None
    gpt4_paper_lenient: bool = False
    seconds: float = 0.0                 # compute time of the pipeline stages' records, summed
    stage_seconds: dict[str, float] = field(default_factory=dict)


def task_result(task: Task, run_dir: Path | None = None) -> TaskResult:
    """Collect one task's row from its records (missing stages leave fields empty)."""
    r = TaskResult(task.name, task.paper_index, gpt4_paper_lenient=task.name in GPT4_LENIENT_SOLVED)
    recs = {s: load_record(task.id, s, run_dir) for s in PIPELINE + ("llm_baseline", "causal")}
    r.ran = recs["search"] is not None
    if (s := recs["search"]) is not None:
        m = s.metrics
        r.hidden_dim, r.search_ok = m.get("hidden_dim"), s.success
        r.architecture = m.get("architecture", "")
        r.representation = f"{m['encoding']} → {m['head']}" if "encoding" in m else ""
    if (s := recs["simplify"]) is not None:
        r.hidden_dim_after = s.metrics.get("effective_hidden_dim_after", s.metrics.get("hidden_dim_after"))
    if (s := recs["extract"]) is not None:
        r.state_kind, r.n_states = s.metrics.get("kind", ""), s.metrics.get("n_states")
        r.state_dim = s.metrics.get("k")
    if (s := recs["regress"]) is not None:
        r.lookup_rows = s.metrics.get("lookup_rows")
    if (s := recs["program"]) is not None:
        m = s.metrics
        r.method = m.get("method", "")
        r.program_lines = m.get("program_lines")
        r.test_ok, r.exhaustive_ok = m.get("test_ok"), m.get("exhaustive_ok")
        r.exhaustive_length, r.network_agreement = m.get("exhaustive_length"), m.get("network_agreement")
        r.solved = bool(m.get("solved"))
    r.stage_seconds = {s: float(recs[s].seconds) for s in PIPELINE if recs[s] is not None}
    r.seconds = round(sum(r.stage_seconds.values()), 1)
    for stage in PIPELINE:
        rec = recs[stage]
        if rec is None:
            r.failed_stage = r.failed_stage or (f"{stage} (not run)" if r.ran else "")
            break
        if not rec.success:
            r.failed_stage = stage
            break
    if r.solved and r.lookup_rows is not None:
        r.compact = r.lookup_rows <= COMPACT_LOOKUP_ROWS
    if recs["program"] is not None and not r.solved and not r.failed_stage:
        r.failed_stage = "verify"
    if r.failed_stage and r.failed_stage not in ("program", "verify"):
        r.test_ok = r.exhaustive_ok = None  # no program reached the verifier: not a failed check
    if (s := recs["llm_baseline"]) is not None:
        r.llm_lenient = bool(s.metrics.get("lenient_solved")) if s.success or s.metrics else None
        r.llm_strict = bool(s.metrics.get("strict_solved")) if s.success or s.metrics else None
    if (s := recs["causal"]) is not None and s.success:
        r.causal_iia = s.metrics.get("iia")
    r.pgtd_public, r.pgtd_strict = pgtd_entry(task.id, run_dir)
    return r


def leaderboard(tasks: list[Task], run_dir: Path | None = None) -> list[TaskResult]:
    """Rows for every task, in paper order."""
    return [task_result(t, run_dir) for t in sorted(tasks, key=lambda t: (t.paper_index or 999, t.name))]


def as_records(rows: list[TaskResult]) -> list[dict]:
    return [asdict(r) for r in rows]


def totals(rows: list[TaskResult]) -> dict:
    """Counts set against the paper's: solved by MIPS here, by the LLM (both judges) and by PG-TD, failures
    and compute seconds by stage."""
    ran = [r for r in rows if r.ran]
    by_stage: dict[str, int] = {}
    for r in ran:
        if not r.solved:
            by_stage[r.failed_stage or "unknown"] = by_stage.get(r.failed_stage or "unknown", 0) + 1
    return {
        "n_tasks": len(rows), "n_ran": len(ran), "mips_solved": sum(r.solved for r in rows),
        "mips_solved_compact": sum(bool(r.compact) for r in rows),
        "llm_lenient_solved": sum(bool(r.llm_lenient) for r in rows),
        "llm_strict_solved": sum(bool(r.llm_strict) for r in rows),
        "llm_ran": sum(r.llm_lenient is not None for r in rows),
        "pgtd_strict_solved": sum(bool(r.pgtd_strict) for r in rows),
        "pgtd_ran": sum(r.pgtd_strict is not None for r in rows),
        "failures_by_stage": by_stage,
        "seconds_by_stage": {s: round(sum(r.stage_seconds.get(s, 0.0) for r in ran), 1) for s in PIPELINE},
    }
