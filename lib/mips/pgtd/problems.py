"""Each book task as a small synthesis problem: a signature, a docstring with examples, hidden tests.

The prompt is a HumanEval-style function head: ``def f(xs):`` and a docstring holding the task's name,
its one-line definition and a few training rows as ``>>> f([...])`` examples. The model continues the
body. **Public tests** are exactly the shown examples (PG-TD's reward); **private tests** are the
project's strict verifier (:func:`mips.verify.verify_source`: the hidden test split and every short
sequence). Every candidate runs in the sandbox, public tests included. Explained in notebooks/pgtd.ipynb.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import numpy as np

from mips import sandbox
from mips.data import Dataset, dataset_for
from mips.tasks import Task, get_task, to_sequence

ENTRY = "f"
INDENT = "    "
# A test's outcome classes (the paper's codes: True, False, -1, -2) and the reward's "pass".
PASS, WRONG, RUNTIME, TIMEOUT, COMPILE = "pass", "wrong_output", "runtime_error", "timeout", "compile_error"
OUTCOMES = (PASS, WRONG, RUNTIME, TIMEOUT, COMPILE)
CODE = {PASS: 1, WRONG: 0, RUNTIME: -1, TIMEOUT: -1, COMPILE: -2}
TEST_LIMITS = sandbox.Limits(cpu_seconds=4, wall_seconds=10, memory_mb=512)

# Appended to a candidate so one sandbox process reports every test separately (a raising row does not
# hide the others); an endless loop still times the whole process out, which counts for every test.
_HARNESS = '''

def __pgtd_case(xs):
    try:
        return [1, {entry}(xs)]
    except Exception as exc:
        return [0, type(exc).__name__ + ": " + str(exc)[:200]]
'''


@dataclass(frozen=True)
class Problem:
    """A task as a prompt plus tests; ``public`` rows are shown in the prompt, ``dataset`` holds the rest."""

    task: Task
    prompt: str
    public: tuple[tuple[list, list], ...]
    dataset: Dataset = field(repr=False, compare=False)
    exhaustive_budget: int = 2**20

    @property
    def name(self) -> str:
        return self.task.name

    def program(self, body: str) -> str:
        """The candidate's source: the prompt (signature and docstring) and the generated body."""
        return self.prompt + body.rstrip() + "\n"

    def private_rows(self, n: int) -> list[tuple[list, list]]:
        """The first n hidden test rows as (x, y) sequences (for the per-test heatmaps)."""
        return [(to_sequence(x), to_sequence(y)) for x, y in
                zip(self.dataset.x_test[:n], self.dataset.y_test[:n], strict=True)]


def _show(seq: list) -> str:
    return "[" + ", ".join(str(v) for v in seq) + "]"


def make_prompt(task: Task, rows: list[tuple[list, list]]) -> str:
    """The function head the model continues: the body (indented lines) comes after the docstring."""
    lines = [f"def {ENTRY}(xs):", f'{INDENT}"""{task.name}: {task.description}.', ""]
    for x, y in rows:
        lines += [f"{INDENT}>>> {ENTRY}({_show(x)})", f"{INDENT}{_show(y)}"]
    lines += [f'{INDENT}"""']
    return "\n".join(lines)


@functools.lru_cache(maxsize=128)
def make_problem(task: Task | str, preset: str = "full", n_public: int = 3,
                 exhaustive_budget: int | None = None) -> Problem:
    """The task as a problem: the first ``n_public`` training rows are shown and are the public tests."""
    task = get_task(task) if isinstance(task, str) else task
    dataset = dataset_for(task, preset)
    rows = tuple((to_sequence(x), to_sequence(y)) for x, y in
                 zip(dataset.x_train[:n_public], dataset.y_train[:n_public], strict=True))
    budget = exhaustive_budget if exhaustive_budget is not None else (2**12 if preset == "smoke" else 2**20)
    return Problem(task, make_prompt(task, list(rows)), rows, dataset, budget)


def _plain(v):
    """A value for comparison: sequences as tuples (lists and tuples alike), bools as ints."""
    if isinstance(v, list | tuple):
        return tuple(_plain(e) for e in v)
    return int(v) if isinstance(v, bool) else v


def run_tests(source: str, rows: list[tuple[list, list]], limits: sandbox.Limits = TEST_LIMITS) -> list[str]:
    """Each test's outcome class for a program, in one sandbox process: pass, wrong_output, runtime_error,
    timeout or compile_error (a syntax error, or a program that defines no ``f``)."""
    if not rows:
        return []
    try:
        with warnings.catch_warnings():     # a candidate's SyntaxWarnings are its own, not this process's
            warnings.simplefilter("ignore")
            compile(source, "program.py", "exec")
    except (SyntaxError, ValueError):
        return [COMPILE] * len(rows)
    res = sandbox.run_program(source + _HARNESS.format(entry=ENTRY), [x for x, _ in rows], entry="__pgtd_case",
                              limits=limits)
    if res.outcome == sandbox.TIMEOUT:
        return [TIMEOUT] * len(rows)
    if res.outcome in (sandbox.SYNTAX_ERROR, sandbox.NO_ENTRY):
        return [COMPILE] * len(rows)
    if res.outcome != sandbox.OK:             # the module itself raised, or ran out of memory
        return [RUNTIME] * len(rows)
    out = []
    for (ok, value), (_, y) in zip(res.outputs, rows, strict=True):
        if not ok:
            out.append(COMPILE if value.startswith("NameError: name 'f'") else RUNTIME)
        else:
            out.append(PASS if _plain(value) == _plain(y) else WRONG)
    return out


def pass_rate(outcomes: list[str]) -> float:
    """The paper's reward: the fraction of tests passed (``mean(results > 0)``)."""
    return float(np.mean([o == PASS for o in outcomes])) if outcomes else 0.0


def private_verdict(problem: Problem, source: str) -> dict:
    """The strict private check (hidden test split + every short sequence) as a plain dict."""
    from mips.verify import verify_source

    return verify_source(source, problem.task, problem.dataset, entry=ENTRY,
                         exhaustive_budget=problem.exhaustive_budget).to_dict()
