"""Tree-search decoding guided by tests (PG-TD, Zhang et al. 2023): a sibling chapter of the book.

Modules: ``problems`` (each task as a prompt with public and private tests), ``lm`` (one model protocol,
a local transformers backend and an OpenAI-compatible server backend), ``tree`` (PG-TD and its caches),
``baselines`` (sampling + filtering, beam search), ``metrics``, ``experiment`` (the chapter's runs and
tables), ``plots`` and ``tinygpt`` (a tiny program model trained in seconds, for tests).
"""

from mips.pgtd.baselines import SamplingConfig, beam_search, greedy, sampling
from mips.pgtd.experiment import ChapterConfig, cache_ablation, results_table, run_task, run_tasks
from mips.pgtd.lm import LM, HFLocal, OpenAICompat, Stop, make_lm
from mips.pgtd.problems import Problem, make_problem, run_tests
from mips.pgtd.tree import PGTDConfig, SearchResult, beta, pgtd

__all__ = ["SamplingConfig", "beam_search", "greedy", "sampling", "ChapterConfig", "cache_ablation",
           "results_table", "run_task", "run_tasks", "LM", "HFLocal", "OpenAICompat", "Stop", "make_lm",
           "Problem", "make_problem", "run_tests", "PGTDConfig", "SearchResult", "beta", "pgtd"]
