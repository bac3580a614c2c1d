"""The chapter's runs: PG-TD, sampling + filtering and beam search on the book's tasks, one record per task.

Each task's results go to ``runs/chapter-pgtd/<task_id>/`` (a ``record.json`` with every algorithm's
metrics, and ``programs.json`` with every candidate program); a task whose config is unchanged is reused,
so a long run over all 62 tasks resumes where it stopped. :func:`results_table` reads them back for the
book's leaderboard. Explained in notebooks/pgtd.ipynb.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from mips.artifacts import Record, StageRun, load_record, runs_dir, write_json
from mips.pgtd.baselines import SamplingConfig, beam_search, sampling
from mips.pgtd.lm import LM
from mips.pgtd.metrics import Verdicts, summarize
from mips.pgtd.problems import make_problem
from mips.pgtd.tree import PGTDConfig, pgtd
from mips.tasks import Task

log = logging.getLogger(__name__)

CHAPTER = "chapter-pgtd"
ALGORITHMS = ("pgtd", "sampling", "beam")
FEW_TASKS = ("Sum_All", "Add_Mod_3", "Prev1", "Bitwise_Not", "Max_Seen")


def chapter_tasks(spec: str = "default", preset: str = "full") -> list[Task]:
    """The tasks a run covers: ``default`` is the preset's (smoke: Sum_All; full: all 62 of the book),
    ``few`` a handful of easy ones, ``all`` every task, or comma-separated names."""
    from mips.tasks import all_tasks, get_task

    if spec == "default":
        spec = "Sum_All" if preset == "smoke" else "all"
    if spec == "all":
        return all_tasks()
    names = FEW_TASKS if spec == "few" else [n.strip() for n in spec.split(",") if n.strip()]
    return [get_task(n) for n in names]


@dataclass
class ChapterConfig:
    """What the chapter runs on each task; ``for_preset`` gives the smoke and full sizes."""

    budget: int = 16                      # PG-TD rollouts
    width: int = 3
    horizon: int = 128                    # new tokens per program
    action: str = "token"
    early_stop: bool = False
    temperatures: tuple[float, ...] = (1.0,)   # sampling + filtering, one run per temperature
    sampling_samples: int = 0             # 0: as many samples as PG-TD evaluated programs
    num_beams: int = 5
    algorithms: tuple[str, ...] = ALGORITHMS
    n_public: int = 3
    private_rows: int = 8                 # hidden rows shown per program in the heatmaps
    ablation_budget: int = 16             # the cache ablation's PG-TD rollouts ...
    ablation_horizon: int = 128           # ... and tokens per program
    seed: int = 0
    pgtd_extra: dict = field(default_factory=dict)   # any other PGTDConfig field (cache switches)

    @classmethod
    def for_preset(cls, preset: str = "full", **overrides) -> ChapterConfig:
        """``full``: 16 rollouts of up to 128 tokens; ``smoke``: 2 rollouts of 16 tokens, 2 beams, and a cache
        ablation of 2 rollouts of 8 tokens (SmolLM2 on a shared CPU makes a few tokens a second)."""
        if preset not in ("smoke", "full"):
            raise ValueError(f"unknown preset {preset!r}; choose 'smoke' or 'full'")
        cfg = cls() if preset == "full" else cls(budget=2, horizon=16, num_beams=2, private_rows=4,
                                                          ablation_budget=2, ablation_horizon=8)
        overrides = {k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items() if v is not None}
        unknown = [a for a in overrides.get("algorithms", ()) if a not in ALGORITHMS]
        if unknown:
            raise ValueError(f"unknown algorithm(s) {unknown}; choose from {ALGORITHMS}")
        return replace(cfg, **overrides)

    def pgtd_config(self) -> PGTDConfig:
        return PGTDConfig(budget=self.budget, width=self.width, horizon=self.horizon, action=self.action,
                          early_stop=self.early_stop, **self.pgtd_extra)

    def ablation_config(self) -> PGTDConfig:
        """PG-TD as the cache ablation runs it (early stop off, so every setting does the same work)."""
        return replace(self.pgtd_config(), budget=self.ablation_budget, horizon=self.ablation_horizon,
                       early_stop=False)


def run_task(task: Task, lm: LM, config: ChapterConfig, preset: str = "full",
             run_dir: Path | None = None) -> Record:
    """Every algorithm on one task (reused when its record has the same config and model)."""
    key = asdict(config) | {"preset": preset, "model": lm.name}
    stage = StageRun(CHAPTER, task.id, key, run_dir=run_dir)
    return stage.cached_or_compute(lambda s: _compute(task, lm, config, preset, s))


def _compute(task: Task, lm: LM, cfg: ChapterConfig, preset: str, stage: StageRun) -> dict:
    start = time.time()
    problem = make_problem(task, preset, cfg.n_public)
    verdicts = Verdicts(problem)
    rows, programs = {}, {}
    tree = None
    if "pgtd" in cfg.algorithms:
        tree = pgtd(problem, lm, cfg.pgtd_config())
        rows["pgtd"] = summarize(tree, verdicts, private_rows=cfg.private_rows) | {"temperature": 0.0}
        programs["pgtd"] = tree.to_dict()
        if tree.candidates:    # PG-TD's first rollout is the greedy program; its cost: one top-k, one rollout
            first = replace(tree, algorithm="greedy", candidates=tree.candidates[:1], rollouts=1, evaluations=1,
                            lm_calls={"topk": 1, "greedy": 1}, seconds=tree.candidates[0].seconds,
                            lm_seconds=0.0, lm_tokens=0, tree_nodes=0)
            rows["greedy"] = summarize(first, verdicts, private_rows=cfg.private_rows) | {"temperature": 0.0}
    if "sampling" in cfg.algorithms:
        n = cfg.sampling_samples or (len(tree.candidates) if tree is not None else cfg.budget) or 1
        for t in cfg.temperatures:
            res = sampling(problem, lm, SamplingConfig(n, t, cfg.width, cfg.horizon, cfg.seed))
            rows[f"sampling T={t:g}"] = summarize(res, verdicts, private_rows=cfg.private_rows) | {
                "temperature": float(t)}
            programs[f"sampling T={t:g}"] = res.to_dict()
    if "beam" in cfg.algorithms:
        try:
            res = beam_search(problem, lm, cfg.num_beams, cfg.horizon)
            rows["beam"] = summarize(res, verdicts, private_rows=cfg.private_rows) | {"temperature": 0.0}
            programs["beam"] = res.to_dict()
        except NotImplementedError as exc:        # a server backend: the API offers no beam search
            rows["beam"] = {"algorithm": "beam", "skipped": str(exc)}
    write_json(stage.path("programs.json"), programs)
    return {"task": task.name, "model": lm.name, "results": rows, "prompt": problem.prompt,
            "seconds_total": round(time.time() - start, 3)}


def run_tasks(tasks: list[Task], lm: LM, config: ChapterConfig, preset: str = "full",
              run_dir: Path | None = None, progress: bool = True) -> list[Record]:
    """:func:`run_task` over many tasks with a progress bar; finished tasks are reused (resumable)."""
    records = []
    for task in tqdm(tasks, desc="PG-TD tasks", disable=not progress):
        records.append(run_task(task, lm, config, preset, run_dir))
    return records


def shard(tasks: list[Task], spec: str) -> list[Task]:
    """Every n-th task from the i-th, for ``spec`` = "i/n": n processes cover the tasks between them."""
    i, n = (int(v) for v in spec.split("/"))
    if not 0 <= i < n:
        raise ValueError(f"shard {spec!r}: need 0 <= i < n")
    return tasks[i::n]


def cache_ablation(problem, lm: LM, config: PGTDConfig) -> list[dict]:
    """PG-TD with every cache on, each one off in turn, and all off: model calls, runs and time.

    The search is deterministic, so every setting must find the same programs; ``same_programs`` checks it.
    """
    settings = {"all caches": {}, "no top-k cache": {"top_k_cache_steps": 0},
                "no sequence cache": {"no_seq_cache": True}, "no reward cache": {"no_reward_cache": True},
                "no caches": {"top_k_cache_steps": 0, "no_seq_cache": True, "no_reward_cache": True}}
    rows, reference = [], None
    for name, switch in settings.items():
        res = pgtd(problem, lm, replace(config, **switch))
        programs = [c.program for c in res.candidates]
        reference = programs if reference is None else reference
        rows.append({"setting": name, "topk calls": res.lm_calls.get("topk", 0),
                     "rollout calls": res.lm_calls.get("greedy", 0) + res.lm_calls.get("lines", 0),
                     "lm calls": res.total_lm_calls, "test runs": res.evaluations, "lm tokens": res.lm_tokens,
                     "seconds": res.seconds, "best public": res.best().reward if res.candidates else 0.0,
                     "same_programs": programs == reference})
    return rows


def load_results(run_dir: Path | None = None) -> list[dict]:
    """Every finished task record of the chapter as {task, model, algorithm rows}."""
    root = Path(run_dir or runs_dir()) / CHAPTER
    out = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        rec = load_record(CHAPTER, folder.name, run_dir)
        if rec is not None and rec.success:
            out.append({"task_id": folder.name, "config": rec.config} | rec.metrics)
    return out


def results_table(run_dir: Path | None = None, algorithm: str = "pgtd"):
    """Per task: whether ``algorithm``'s pick passed its public tests and the strict private check
    (the columns the book's leaderboard shows beside MIPS and the plain LLM baseline)."""
    import pandas as pd

    rows = []
    for r in load_results(run_dir):
        m = r["results"].get(algorithm, {})
        if "strict" not in m:
            continue
        rows.append({"task": r["task"], "task_id": r["task_id"], "model": r["model"],
                     f"{algorithm}_public": bool(m["public_strict"]), f"{algorithm}_pass_rate": m["pass_rate"],
                     f"{algorithm}_solved": bool(m["strict"]), f"{algorithm}_lm_calls": m["lm_calls"],
                     f"{algorithm}_seconds": m["seconds"]})
    return pd.DataFrame(rows, columns=["task", "task_id", "model", f"{algorithm}_public", f"{algorithm}_pass_rate",
                                       f"{algorithm}_solved", f"{algorithm}_lm_calls", f"{algorithm}_seconds"])


def leaderboard_entry(task_id: str, run_dir: Path | None = None) -> tuple[bool | None, bool | None]:
    """(public, strict) of PG-TD's pick for one task from its chapter record; (None, None) if not run."""
    rec = load_record(CHAPTER, task_id, run_dir)
    m = rec.metrics.get("results", {}).get("pgtd", {}) if rec is not None and rec.success else {}
    if "strict" not in m:
        return None, None
    return bool(m["public_strict"]), bool(m["strict"])


def summary_table(run_dir: Path | None = None):
    """Algorithm × metric over all finished tasks: the pick's public and private pass rates, strict accuracy,
    n@k, errors, calls, time."""
    import pandas as pd

    rows = []
    for r in load_results(run_dir):
        for name, m in r["results"].items():
            if "strict" not in m:
                continue
            rows.append({"task": r["task"], "algorithm": name, "public pass rate": m["public_pass_rate"],
                         "public strict": float(m["public_strict"]), "pass rate": m["pass_rate"],
                         "strict": float(m["strict"]),
                         **{f"strict 1@{k}": float(v["strict"]) for k, v in m.get("n_at_k", {}).items()},
                         "compile errors": m["compile_error_rate"], "runtime errors": m["runtime_error_rate"],
                         "candidates": m["n_candidates"], "lm calls": m["lm_calls"], "seconds": m["seconds"]})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    return df.drop(columns="task").groupby("algorithm", sort=False).mean().reset_index()


def test_outcomes(run_dir: Path | None = None):
    """Long table (task, algorithm, temperature, test, outcome) of every pick's per-test outcomes."""
    import pandas as pd

    rows = []
    for r in load_results(run_dir):
        for name, m in r["results"].items():
            for t in m.get("tests", []):
                rows.append({"task": r["task"], "algorithm": name.split(" ")[0],
                             "temperature": m.get("temperature", 0.0), "test": t["test"], "outcome": t["outcome"]})
    return pd.DataFrame(rows, columns=["task", "algorithm", "temperature", "test", "outcome"])


def candidate_outcomes(run_dir: Path | None = None):
    """Long table (task, algorithm, outcome, tests) counting the public-test outcomes of *every* program each
    algorithm scored, not only its pick: what the model writes, and how it fails."""
    import json

    import pandas as pd

    root = Path(run_dir or runs_dir()) / CHAPTER
    rows = []
    for r in load_results(run_dir):
        path = root / r["task_id"] / "programs.json"
        for name, res in (json.loads(path.read_text()) if path.is_file() else {}).items():
            for c in res.get("candidates", []):
                for outcome in c["public"]:
                    rows.append({"task": r["task"], "algorithm": name, "outcome": outcome})
    df = pd.DataFrame(rows, columns=["task", "algorithm", "outcome"])
    return df.groupby(["task", "algorithm", "outcome"], sort=False).size().rename("tests").reset_index()


def outcome_shares(counts):
    """Algorithm × outcome: the share of each outcome among the public-test runs of
    :func:`candidate_outcomes`, and the number of runs."""
    from mips.pgtd.problems import OUTCOMES

    table = counts.pivot_table(index="algorithm", columns="outcome", values="tests", aggfunc="sum", fill_value=0)
    table = table.reindex(columns=[o for o in OUTCOMES if o in table.columns])
    runs = table.sum(axis=1)
    return table.div(runs, axis=0).assign(runs=runs)


def main(argv: list[str] | None = None) -> int:
    """CLI: fill the chapter's per-task records, e.g. in several processes (``--shard 0/2``, ``--shard 1/2``)
    before the notebook runs; the notebook then reuses them. Same defaults as ``notebooks/pgtd.ipynb``."""
    import argparse

    import torch

    from mips.pgtd.lm import make_lm

    parser = argparse.ArgumentParser(prog="python -m mips.pgtd", description=main.__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="default", help="default | few | all | comma-separated names")
    parser.add_argument("--preset", default="full", choices=("smoke", "full"))
    parser.add_argument("--backend", default="local", help="local | server | chat | tiny")
    parser.add_argument("--shard", default="0/1", help="i/n: every n-th task from the i-th")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tasks = shard(chapter_tasks(args.tasks, args.preset), args.shard)
    records = run_tasks(tasks, make_lm(args.backend, args.device), ChapterConfig.for_preset(args.preset),
                        args.preset, args.run_dir)
    print(f"{sum(r.success for r in records)}/{len(records)} task records under {CHAPTER}/")
    return 0
