"""Figures for the PG-TD chapter: they take the tables of :mod:`mips.pgtd.experiment`, compute nothing."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from mips.pgtd.problems import OUTCOMES

COLOURS = {"pass": "#4c9a5b", "wrong_output": "#e3a33b", "runtime_error": "#c8553d",
           "timeout": "#7b3f8c", "compile_error": "#555555"}


def test_heatmaps(outcomes, height: float | None = None, per_row: int = 4):
    """Per-problem × per-test outcome of each algorithm's pick, one facet per (algorithm, temperature) that
    ran, side by side with the task names on the left; failures are coloured by class. Facets grow with the
    number of tasks (a readable row each). Returns the seaborn FacetGrid."""
    import seaborn as sns

    df = outcomes.copy()
    df["code"] = df["outcome"].map({o: i for i, o in enumerate(OUTCOMES)})
    df["run"] = df["algorithm"] + ", T = " + df["temperature"].astype(str)
    tests = list(dict.fromkeys(df["test"]))
    tasks = list(dict.fromkeys(df["task"]))
    height = height or max(2.6, 0.14 * len(tasks) + 0.8)
    cmap = ListedColormap([COLOURS[o] for o in OUTCOMES])

    def draw(data, **kwargs):
        grid = data.pivot_table(index="task", columns="test", values="code", aggfunc="first")
        grid = grid.reindex(index=tasks, columns=tests)
        ax = plt.gca()
        ax.imshow(np.ma.masked_invalid(grid.to_numpy(dtype=float)), cmap=cmap, vmin=-0.5,
                  vmax=len(OUTCOMES) - 0.5, aspect="auto", interpolation="nearest")
        ax.set_yticks(range(len(tasks)), tasks, fontsize=7)
        ax.set_xticks(range(len(tests)), [t.replace("public ", "pub ").replace("private ", "priv ")
                                          for t in tests], rotation=90, fontsize=7)

    width = max(1.8, 0.2 * len(tests) + 0.4)
    runs = df["run"].nunique()
    g = sns.FacetGrid(df, col="run", col_wrap=min(per_row, runs), height=height, aspect=width / height,
                      sharex=False, sharey=False, despine=False)
    g.map_dataframe(draw)
    for i, ax in enumerate(g.axes.flat):     # the same tasks in every facet: name them once per row
        if i % per_row:
            ax.tick_params(axis="y", labelleft=False)
    g.set_titles("{col_name}", size=9)
    g.tight_layout()
    g.figure.legend(handles=[Patch(color=COLOURS[o], label=o.replace("_", " ")) for o in OUTCOMES],
                    loc="lower center", ncol=len(OUTCOMES), bbox_to_anchor=(0.5, 1.0), frameon=False)
    return g


def cache_ablation(rows: list[dict], title: str = ""):
    """Model calls (top-k expansions and rollouts) of PG-TD with each cache switched off."""
    names = [r["setting"] for r in rows]
    topk = np.array([r["topk calls"] for r in rows])
    roll = np.array([r["rollout calls"] for r in rows])
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    y = np.arange(len(rows))
    ax.barh(y, topk, color="#4c72b0", label="top-k expansions")
    ax.barh(y, roll, left=topk, color="#dd8452", label="rollouts")
    for yi, r in zip(y, rows, strict=True):
        ax.text(r["lm calls"], yi, f" {r['lm calls']}  ({r['seconds']:.1f} s)", va="center", fontsize=8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("language-model calls")
    ax.set_xlim(0, max(r["lm calls"] for r in rows) * 1.35 + 1)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10, pad=18)      # room for the legend between title and bars
    fig.tight_layout()
    return fig


def compare(summary, metrics: tuple[str, ...] = ("public pass rate", "public strict", "pass rate", "strict")):
    """Mean public and private pass rates and strict accuracy of each algorithm's pick over the tasks run."""
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    algs = list(summary["algorithm"])
    width = 0.8 / len(metrics)
    x = np.arange(len(algs))
    for i, m in enumerate(metrics):
        bars = ax.bar(x + i * width - 0.4 + width / 2, summary[m], width, label=m)
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)     # a zero stays readable as 0.00
    ax.set_xticks(x, algs)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("mean over tasks")
    ax.legend(fontsize=8, ncol=len(metrics), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def outcome_shares(shares):
    """How every scored program's public-test runs ended, a stacked bar per algorithm (the table of
    :func:`mips.pgtd.experiment.outcome_shares`)."""
    outcomes = [o for o in OUTCOMES if o in shares.columns]
    fig, ax = plt.subplots(figsize=(6.5, 0.5 * len(shares) + 1.2))
    left = np.zeros(len(shares))
    for outcome in outcomes:
        ax.barh(range(len(shares)), shares[outcome], left=left, color=COLOURS[outcome],
                label=outcome.replace("_", " "))
        left += shares[outcome].to_numpy()
    ax.set_yticks(range(len(shares)), [f"{alg}\n({n} runs)" for alg, n in shares["runs"].items()])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of public-test runs")
    ax.legend(fontsize=8, ncol=len(outcomes), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return fig
