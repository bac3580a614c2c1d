"""The ``llm_baseline`` stage: LLM program synthesis on the same tasks, judged by the same verifier.

The paper's protocol (arXiv 2402.05110, GPT-4 baseline; spec §12), reproduced for any OpenAI-compatible
chat server: the system message "You are a helpful assistant.", a first turn that shows the first 10
training rows in the paper's table and asks for a formula, a second turn that asks for a Python program
that checks itself on the first 5 rows, and the first ```python block of the second reply as the program;
3 independent conversations per task. Each program is judged twice:

* **lenient** (the paper's judge): run as a script, it exits 0 and prints "success" (any case). The model
  writes both the check and the expected values itself, so this measures self-consistency, not correctness;
* **strict** (the project's judge): the program's function is found by calling each top-level function on
  training row 0, then judged by :func:`mips.verify.verify_source` on the hidden test split and on every
  short sequence, exactly as MIPS programs are.

A task counts as solved by a judge if any of its conversations passes that judge. Explained in
notebooks/llm_baseline.ipynb.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from mips import sandbox
from mips.artifacts import Record, StageRun, require_record, stage_dir, write_json
from mips.data import Dataset, dataset_for
from mips.tasks import Task

log = logging.getLogger(__name__)

UPSTREAM = ("dataset",)
LOCAL_PREFIX = "local:"
DEFAULT_MODEL = "local:smollm2-135m"
LOCAL_MAX_TOKENS = 512        # a cap for the local model, which can ramble until any limit

SYSTEM_PROMPT = "You are a helpful assistant."
FORMULA_PROMPT = ("Each row in the table below contains two lists.\n"
                  "Please give me a formula for how to compute y as a function of elements in x.\n"
                  "list x                       list y\n"
                  "--------------------------------------------------------\n")
CODE_PROMPT = ("Please write a Python program to compute list y from list x for the first 5 rows. "
               "Check if the output matches list y and print 'Success' or 'Failure'.\n")

# Limits for running the model's script (lenient judge) and for probing its functions (entry choice).
SCRIPT_LIMITS = sandbox.Limits(cpu_seconds=10, wall_seconds=30, memory_mb=1024)
PROBE_LIMITS = sandbox.Limits(cpu_seconds=5, wall_seconds=20, memory_mb=1024)
NO_CODE = "no_code"


class LLMUnavailable(RuntimeError):
    """No model can be reached (no API key, no server, unknown model); the message says what to do."""


@dataclass
class LLMConfig:
    """The baseline's settings; model and server default to ``MIPS_LLM_MODEL`` and ``OPENAI_BASE_URL``.

    ``model`` is a name the server knows, or ``local:<name>`` for a model this project serves itself
    (:mod:`mips.llm_server`). ``max_tokens=None`` sends no limit (the paper used the API's defaults),
    except for local models, which are capped at ``LOCAL_MAX_TOKENS``. Conversation k is sampled with
    seed ``seed + k`` (on llama.cpp each request keeps its seed; on transformers the local server batches
    a task's conversations and seeds the batch with the smallest). ``local_engine`` runs a local model on
    llama.cpp (``auto``: where installed) or on transformers (in ``local_dtype``). The API key is read
    from ``OPENAI_API_KEY`` when needed and never stored.
    """

    model: str = field(default_factory=lambda: os.environ.get("MIPS_LLM_MODEL") or DEFAULT_MODEL)
    base_url: str = field(default_factory=lambda: os.environ.get("OPENAI_BASE_URL", ""))
    n_conversations: int = 3
    max_tokens: int | None = None
    temperature: float = 1.0
    seed: int = 0
    n_rows: int = 10
    exhaustive_budget: int = 2**20
    request_timeout: float = 900.0
    local_engine: str = field(default_factory=lambda: os.environ.get("MIPS_LLM_ENGINE") or "auto")
    local_dtype: str = "bfloat16"   # a local model's compute type under transformers (llm_server.DTYPES)

    @classmethod
    def for_preset(cls, preset: str = "full", **overrides) -> LLMConfig:
        """``full``: the paper's 3 conversations; ``smoke``: 1 conversation of 32 tokens per turn."""
        if preset not in ("smoke", "full"):
            raise ValueError(f"unknown preset {preset!r}; choose 'smoke' or 'full'")
        cfg = cls()
        if preset == "smoke":
            cfg = replace(cfg, n_conversations=1, max_tokens=32, exhaustive_budget=2**12)
        return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def is_local(self) -> bool:
        return self.model.startswith(LOCAL_PREFIX)

    @property
    def effective_max_tokens(self) -> int | None:
        if self.max_tokens is None and self.is_local:
            return LOCAL_MAX_TOKENS
        return self.max_tokens

    def recorded(self, device: str = "cpu") -> dict:
        """The config as recorded (and hashed): a local model's port is not part of it, its engine is."""
        out = asdict(self)
        out["base_url"] = "local" if self.is_local else _public_url(self.base_url or "https://api.openai.com/v1")
        out["max_tokens"] = self.effective_max_tokens
        if not self.is_local:
            del out["local_engine"], out["local_dtype"]
        else:
            from mips.llm_server import resolve_engine

            out["local_engine"] = resolve_engine(self.local_engine, device)
            if out["local_engine"] == "llama.cpp":
                del out["local_dtype"]
        return out


def _public_url(url: str) -> str:
    """A server URL without any user:password part, fit to be recorded."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)) if parts.netloc else url


# ---------------------------------------------------------------------------------------------------------
# The prompt


def display_sequence(seq: list, dim: int, column_vector: bool) -> list:
    """A sequence as the paper's prompt shows it (``tolist()`` of its tensor): ints, ``[v]`` or ``[a, b]``."""
    if dim > 1:
        return [list(v) for v in seq]
    return [[v] for v in seq] if column_vector else list(seq)


def prompt_rows(task: Task, dataset: Dataset, n_rows: int = 10) -> list[tuple[list, list]]:
    """The first ``n_rows`` training rows as (x, y) in the prompt's element format."""
    from mips.tasks import to_sequence

    rows = []
    for x, y in zip(dataset.x_train[:n_rows], dataset.y_train[:n_rows], strict=True):
        rows.append((display_sequence(to_sequence(x), task.input_dim, task.column_vector),
                     display_sequence(to_sequence(y), task.output_dim, task.column_vector)))
    return rows


def formula_prompt(rows: list[tuple[list, list]]) -> str:
    """Turn 1: the table of rows, each ``x`` left-justified to 30 characters, as in the paper."""
    lines = [f"{','.join(map(str, x)):<30} {','.join(map(str, y))}\n" for x, y in rows]
    return FORMULA_PROMPT + "".join(lines)


def extract_code(reply: str) -> str | None:
    """The first ```python ... ``` block of a reply, stripped (None when there is none), as in the paper."""
    match = re.search(r"```python(.*?)```", reply or "", re.DOTALL)
    return match.group(1).strip() if match else None


# ---------------------------------------------------------------------------------------------------------
# Talking to a model


@dataclass
class Connection:
    """An OpenAI client, the model name the server knows, and where it lives (never the key)."""

    client: object
    model: str
    base_url: str


def connect(config: LLMConfig, device: str = "cpu") -> Connection:
    """An OpenAI client for the configured model, starting the project's local server when asked."""
    import openai

    if config.is_local:
        from mips import llm_server

        name = config.model[len(LOCAL_PREFIX):]
        try:
            server = llm_server.shared_server(name, device, config.local_dtype, config.local_engine)
        except llm_server.LocalModelError as exc:
            raise LLMUnavailable(str(exc)) from exc
        client = openai.OpenAI(base_url=server.base_url, api_key="local", max_retries=0,
                               timeout=config.request_timeout)
        return Connection(client, name, server.base_url)
    key = os.environ.get("OPENAI_API_KEY", "")
    if not key:
        raise LLMUnavailable(
            f"no API key for model {config.model!r}: set OPENAI_API_KEY (and OPENAI_BASE_URL for a server "
            f"other than OpenAI's), or use model='{DEFAULT_MODEL}' for the local model")
    client = openai.OpenAI(api_key=key, base_url=config.base_url or None, max_retries=2,
                           timeout=config.request_timeout)
    return Connection(client, config.model, _public_url(str(client.base_url)))


def _redact(text: str) -> str:
    """Remove the API key, and any user:password in OPENAI_BASE_URL, from text that may be recorded (error
    messages echo what they got, and a reply may echo a key it was shown)."""
    from urllib.parse import urlsplit

    key = os.environ.get("OPENAI_API_KEY", "")
    if len(key) >= 4:
        text = text.replace(key, "<OPENAI_API_KEY>")
    parts = urlsplit(os.environ.get("OPENAI_BASE_URL", ""))
    for secret, name in ((parts.password, "<password>"), (parts.username, "<user>")):
        if secret and len(secret) >= 3:
            text = text.replace(secret, name)
    return text


def ask(conn: Connection, messages: list[dict], config: LLMConfig, seed: int) -> dict:
    """One chat completion; returns the reply text with its token counts, finish reason and time."""
    import openai

    kwargs = {"model": conn.model, "messages": messages, "temperature": config.temperature, "seed": seed}
    if config.effective_max_tokens is not None:
        kwargs["max_tokens"] = config.effective_max_tokens
    start = time.time()
    try:
        resp = conn.client.chat.completions.create(**kwargs)
    except openai.APIConnectionError as exc:
        raise LLMUnavailable(f"could not reach the server at {conn.base_url}: {_redact(str(exc))}") from exc
    except openai.AuthenticationError as exc:
        raise LLMUnavailable(f"the server at {conn.base_url} refused the API key (401)") from exc
    except openai.NotFoundError as exc:
        raise LLMUnavailable(f"the server at {conn.base_url} does not know model {conn.model!r}: "
                             f"{_redact(str(exc))}") from exc
    except openai.OpenAIError as exc:
        raise LLMUnavailable(f"the request to {conn.base_url} failed: {_redact(str(exc))}") from exc
    choice = resp.choices[0] if resp.choices else None
    usage = resp.usage
    return {"content": _redact(choice.message.content or "") if choice else "",
            "finish_reason": choice.finish_reason if choice else None,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "seconds": round(time.time() - start, 3)}


def converse(conn: Connection, rows: list[tuple[list, list]], config: LLMConfig, seed: int) -> dict:
    """The paper's two-turn conversation; returns the messages and per-turn statistics."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": formula_prompt(rows)}]
    turns = []
    for follow_up in (CODE_PROMPT, None):
        reply = ask(conn, messages, config, seed)
        messages.append({"role": "assistant", "content": reply.pop("content")})
        turns.append(reply)
        if follow_up is not None:
            messages.append({"role": "user", "content": follow_up})
    return {"messages": messages, "turns": turns}


# ---------------------------------------------------------------------------------------------------------
# The two judges


def lenient_judge(program: str | None) -> dict:
    """The paper's judge: the script exits 0 and prints "success" (any case). Also notes "failure" prints."""
    if program is None:
        return {"passed": False, "outcome": NO_CODE, "returncode": None, "printed_success": False,
                "printed_failure": False, "stdout": "", "error": "the reply has no ```python block"}
    res = sandbox.run_script(program, SCRIPT_LIMITS)
    out = res.stdout.lower()
    passed = res.outcome == sandbox.OK and res.returncode == 0 and "success" in out
    return {"passed": passed, "outcome": res.outcome, "returncode": res.returncode,
            "printed_success": "success" in out, "printed_failure": "failure" in out,
            "stdout": res.stdout[-4000:], "error": res.error}


_KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)


def definitions(source: str) -> str:
    """The program's definitions only: imports, functions, classes and assignments, without its checks.

    The model's script ends with its own test loop (prints, ``exit()``); the strict judge calls the
    function, so top-level statements that only exercise it are dropped. Unparsable source is returned
    as is, for the verifier to classify as a syntax error.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    tree.body = [node for node in tree.body if isinstance(node, _KEPT)]
    return ast.unparse(tree) + "\n"


def _one_argument(fn: ast.FunctionDef) -> bool:
    """Whether a function can be called with exactly one positional argument."""
    a = fn.args
    positional = len(a.posonlyargs) + len(a.args)
    required = positional - len(a.defaults)
    required_kw = sum(d is None for d in a.kw_defaults)
    return required_kw == 0 and required <= 1 and (positional >= 1 or a.vararg is not None)


def _plain(v):
    """An element for loose comparison: singleton lists unwrapped, sequences as tuples, bools as ints."""
    if isinstance(v, list | tuple):
        return _plain(v[0]) if len(v) == 1 else tuple(_plain(e) for e in v)
    return int(v) if isinstance(v, bool) else v


def _matches(out, want: list) -> bool:
    return isinstance(out, list) and len(out) == len(want) and \
        all(_plain(a) == _plain(b) for a, b in zip(out, want, strict=True))


ADAPTER = '''

def __mips_entry(xs):
    """The verifier's convention (ints per step) adapted to the prompt's [v] per step."""
    ys = {name}([[x] for x in xs])
    return [y[0] if isinstance(y, (list, tuple)) and len(y) == 1 else y for y in ys]
'''


def choose_entry(program: str, task: Task, rows: list[tuple[list, list]]) -> dict:
    """Find the program's function: the top-level function that maps training row 0's x to its y.

    Each candidate runs in the sandbox on row 0 as the prompt showed it (and, for ``[v]``-per-step
    tasks, also on plain ints). If none matches, the first function taking one argument is used; with no
    such function the strict judge records ``no_entry``. Returns the source to verify and its entry.
    """
    source = definitions(program)
    try:
        functions = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]
    except (SyntaxError, ValueError):
        return {"source": source, "entry": "f", "how": "syntax_error", "candidates": []}
    x0_shown, y0_shown = rows[0]
    flat = task.column_vector and task.input_dim == 1
    formats = [("shown", x0_shown)] + ([("flat", flat_sequence(x0_shown))] if flat else [])
    names = [fn.name for fn in functions]
    for fn in functions:
        for fmt, x in formats:
            res = sandbox.run_program(source, [x], entry=fn.name, limits=PROBE_LIMITS)
            if res.outcome == sandbox.OK and _matches(res.outputs[0], y0_shown):
                return _entry(source, fn.name, fmt, task, "matches training row 0", names)
    one_arg = [fn for fn in functions if _one_argument(fn)]
    if one_arg:
        return _entry(source, one_arg[0].name, "shown", task, "first function of one argument", names)
    return {"source": source, "entry": None, "how": "no function of one argument", "candidates": names}


def flat_sequence(shown: list) -> list:
    """A ``[v]``-per-step sequence as plain values (the verifier's convention for dim 1)."""
    return [v[0] if isinstance(v, list) and len(v) == 1 else v for v in shown]


def _entry(source: str, name: str, fmt: str, task: Task, how: str, names: list[str]) -> dict:
    """The source and entry the verifier calls: the function itself, or an adapter for ``[v]`` inputs."""
    if task.column_vector and task.input_dim == 1 and fmt == "shown":
        return {"source": source + ADAPTER.format(name=name), "entry": "__mips_entry", "function": name,
                "format": fmt, "how": how, "candidates": names}
    return {"source": source, "entry": name, "function": name, "format": fmt, "how": how, "candidates": names}


def strict_judge(program: str | None, task: Task, dataset: Dataset, rows: list[tuple[list, list]],
                 exhaustive_budget: int = 2**20) -> dict:
    """The project's judge: the chosen function on the hidden test split and every short sequence."""
    from mips.verify import verify_source

    if program is None:
        return {"solved": False, "outcome": NO_CODE, "entry": None, "how": "no program"}
    chosen = choose_entry(program, task, rows)
    base = {"entry": chosen.get("function"), "how": chosen["how"], "candidates": chosen["candidates"],
            "format": chosen.get("format")}
    if chosen["entry"] is None:
        return base | {"solved": False, "outcome": sandbox.NO_ENTRY}
    verdict = verify_source(chosen["source"], task, dataset, entry=chosen["entry"],
                            exhaustive_budget=exhaustive_budget)
    return base | verdict.to_dict()


# ---------------------------------------------------------------------------------------------------------
# The stage


def run_conversation(k: int, conn: Connection, task: Task, dataset: Dataset, rows: list, config: LLMConfig,
                     out: StageRun) -> dict:
    """Conversation k: talk, save its transcript and program, judge it both ways."""
    seed = config.seed + k
    talk = converse(conn, rows, config, seed)
    program = extract_code(talk["messages"][-1]["content"])
    transcript = {"task": task.name, "conversation": k, "model": config.model, "seed": seed,
                  "temperature": config.temperature, "max_tokens": config.effective_max_tokens,
                  "messages": talk["messages"], "turns": talk["turns"],
                  "program": f"programs/{k}.py" if program is not None else None}
    (out.dir / "transcripts").mkdir(exist_ok=True)
    write_json(out.dir / "transcripts" / f"{k}.json", transcript)
    if program is not None:
        (out.dir / "programs").mkdir(exist_ok=True)
        (out.dir / "programs" / f"{k}.py").write_text(program + "\n")
    lenient = lenient_judge(program)
    strict = strict_judge(program, task, dataset, rows, config.exhaustive_budget)
    return {"conversation": k, "seed": seed, "has_code": program is not None, "lenient": lenient,
            "strict": strict,
            "completion_tokens": [t["completion_tokens"] for t in talk["turns"]],
            "finish_reasons": [t["finish_reason"] for t in talk["turns"]],
            "seconds": round(sum(t["seconds"] for t in talk["turns"]), 3)}


def converse_all(conn: Connection, task: Task, dataset: Dataset, rows: list, config: LLMConfig,
                 out: StageRun) -> list[dict]:
    """Every conversation of a task, run at once: a server batches their requests (the local one does),
    and the judges' sandboxes overlap. Results come back in conversation order; if the model cannot be
    reached, :class:`LLMUnavailable` is raised after the other conversations finish."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    n = config.n_conversations
    with ThreadPoolExecutor(max_workers=max(1, n)) as pool:
        futures = [pool.submit(run_conversation, k, conn, task, dataset, rows, config, out) for k in range(n)]
        for _ in tqdm(as_completed(futures), total=n, desc=f"{task.name} conversations", leave=False):
            pass
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        raise failed[0]
    return [f.result() for f in futures]


def _lenient_outcome(verdict: dict) -> str:
    """``pass``, ``no_success`` (ran cleanly without printing it), or how the script failed to run."""
    if verdict["passed"]:
        return "pass"
    return "no_success" if verdict["outcome"] == sandbox.OK and verdict["returncode"] == 0 else verdict["outcome"]


def summarize(results: list[dict], config: LLMConfig) -> dict:
    """The record's metrics: per-task verdicts of both judges and per-conversation outcomes."""
    lenient = [r["lenient"]["passed"] for r in results]
    strict = [bool(r["strict"].get("solved")) for r in results]
    clean = [r["lenient"]["passed"] and not r["lenient"]["printed_failure"] for r in results]
    return {
        "model": config.model, "n_conversations": config.n_conversations,
        "lenient_solved": any(lenient), "strict_solved": any(strict),
        "lenient_clean_solved": any(clean),
        "lenient_passes": sum(lenient), "strict_passes": sum(strict),
        "conversations": [{
            "conversation": r["conversation"], "has_code": r["has_code"],
            "lenient": _lenient_outcome(r["lenient"]),
            "lenient_passed": r["lenient"]["passed"], "printed_failure": r["lenient"]["printed_failure"],
            "strict": r["strict"]["outcome"], "strict_solved": bool(r["strict"].get("solved")),
            "entry": r["strict"].get("entry"), "entry_how": r["strict"].get("how"),
            "test_rows_correct": r["strict"].get("test_rows_correct"),
            "test_rows": r["strict"].get("test_rows"),
            "exhaustive_ok": r["strict"].get("exhaustive_ok"),
            "completion_tokens": r["completion_tokens"], "finish_reasons": r["finish_reasons"],
            "seconds": r["seconds"]} for r in results],
        "completion_tokens": sum(sum(t or 0 for t in r["completion_tokens"]) for r in results),
        "generation_seconds": round(sum(r["seconds"] for r in results), 3),
        "sandbox_isolation": sandbox.isolation_report(),
    }


def run(task: Task, preset: str = "full", run_dir: Path | None = None, device: str = "cpu",
        config: LLMConfig | None = None) -> Record:
    """Run the paper's protocol on one task and judge every program leniently and strictly.

    No key or no server is not an exception: the record says ``success=False`` with the reason and no
    metrics (so it is not mistaken for a result and is retried next time), and a batch goes on.
    """
    config = config or LLMConfig.for_preset(preset)
    data_rec = require_record(task.id, "dataset", run_dir)
    stage = StageRun(task.id, "llm_baseline", config.recorded(device), upstream={"dataset": data_rec.key},
                     run_dir=run_dir)
    if (rec := stage.cached()) is not None and rec.success:
        return rec
    dataset = dataset_for(task, preset)
    rows = prompt_rows(task, dataset, config.n_rows)
    results: list[dict] = []
    try:
        conn = connect(config, device)
        results = converse_all(conn, task, dataset, rows, config, stage)
    except LLMUnavailable as exc:
        message = f"not run: {exc}"
        log.warning("%s: %s", task.name, message)
        metrics = summarize(results, config) if results else {}
        return stage.finish(metrics, success=False, message=message)
    metrics = summarize(results, config)
    write_json(stage.path("verdicts.json"), results)
    message = (f"{config.model}: lenient {metrics['lenient_passes']}/{len(results)}, "
               f"strict {metrics['strict_passes']}/{len(results)} conversations")
    return stage.finish(metrics, success=True, message=message)


def load_transcripts(task: Task, run_dir: Path | None = None) -> list[dict]:
    """The saved conversations of a task's last run, with their programs (for the notebook)."""
    folder = stage_dir(task.id, "llm_baseline", run_dir)
    out = []
    for path in sorted((folder / "transcripts").glob("*.json"), key=lambda p: int(p.stem)):
        t = json.loads(path.read_text())
        prog = folder / "programs" / f"{path.stem}.py"
        t["program_source"] = prog.read_text() if prog.exists() else None
        out.append(t)
    return out


# ---------------------------------------------------------------------------------------------------------
# Reading a run (for the notebook and the book)


def judges_table(metrics: dict) -> list[dict]:
    """One row per conversation: the lenient verdict beside the strict one."""
    rows = []
    for c in metrics.get("conversations", []):
        test = (f"{c['test_rows_correct']}/{c['test_rows']}" if c.get("test_rows") else "")
        rows.append({"conversation": c["conversation"], "program": "yes" if c["has_code"] else "no",
                     "lenient": c["lenient"],
                     "also printed 'failure'": "yes" if c["printed_failure"] else "",
                     "strict": "pass" if c["strict_solved"] else c["strict"],
                     "function": c.get("entry") or "", "chosen because": c.get("entry_how") or "",
                     "hidden test rows right": test,
                     "all short sequences": {True: "yes", False: "no", None: ""}[c.get("exhaustive_ok")],
                     "tokens (turn 1, 2)": ", ".join(str(t) for t in c["completion_tokens"])})
    return rows


def judges_sentence(metrics: dict) -> str:
    """How the two judges differ on this task, in one or two sentences."""
    conv = metrics.get("conversations", [])
    if not conv:
        return "The baseline was not run, so there is nothing to judge."
    n = len(conv)
    lenient, strict = metrics["lenient_passes"], metrics["strict_passes"]
    no_code = sum(not c["has_code"] for c in conv)
    text = (f"The paper's lenient judge passes {lenient} of {n} conversation{'s' * (n != 1)}, "
            f"the strict judge {strict}")
    only_lenient = [c["conversation"] for c in conv if c["lenient_passed"] and not c["strict_solved"]]
    if only_lenient:
        text += (f"; conversation{'s' * (len(only_lenient) != 1)} {', '.join(map(str, only_lenient))} "
                 "printed 'success' from a check the model wrote itself, but the function fails the hidden "
                 "test split or a short sequence")
    elif lenient == strict:
        text += "; here the two agree"
    text += "."
    if no_code:
        text += f" {no_code} of {n} second replies contained no ```python block, so neither judge had a program."
    task_l, task_s = metrics["lenient_solved"], metrics["strict_solved"]
    text += (f" The task counts as solved by the lenient judge: {'yes' if task_l else 'no'}; "
             f"by the strict judge: {'yes' if task_s else 'no'}.")
    return text


def transcripts_html(transcripts: list[dict]) -> str:
    """Every conversation as a collapsed ``<details>`` block (the book shows them folded)."""
    import html

    parts = []
    for t in transcripts:
        turns = t.get("turns", [])
        stats = "; ".join(f"turn {i + 1}: {s.get('completion_tokens')} tokens, {s.get('finish_reason')}"
                          for i, s in enumerate(turns))
        body = "".join(
            f"<p><b>{html.escape(m['role'])}</b></p><pre style='white-space: pre-wrap'>"
            f"{html.escape(m['content'])}</pre>" for m in t["messages"])
        parts.append(f"<details><summary>Conversation {t['conversation']} (seed {t['seed']}; {stats})"
                     f"</summary>{body}</details>")
    return "\n".join(parts)
