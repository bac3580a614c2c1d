"""One language-model protocol for tree-search decoding, with a local and a server backend.

A decoding *state* is a tuple of pieces: token ids for a local model, token strings for a server (the
OpenAI API returns strings, not ids, so joining them is how a server state is decoded). Every backend
answers the questions PG-TD asks and counts how often it was asked (``calls``), so the saving of each
cache is measured, not estimated:

- ``topk_next(prefix, k)``: the k most likely next pieces with probabilities renormalised over the k
  (the expansion prior of PG-TD);
- ``greedy(prefix, max_new, stop, k)``: the greedy continuation, with the top-k at every generated
  position (what the tree-structure cache stores);
- ``sample(...)``, ``beam(...)``: the baselines' decoders; ``topk_lines(prefix, k, ...)``: k candidate
  next *lines* with a prior (line-level actions).

Backends: :class:`HFLocal` (a transformers causal LM, the book's SmolLM2-135M by default; every answer
is exact) and :class:`OpenAICompat` (``/v1/completions`` with ``logprobs`` where the server has it, else
``/v1/chat/completions`` with line-level actions only). :class:`TorchLM` holds the decoding loops that
any torch model with a next-token function shares (the tiny GPT of :mod:`mips.pgtd.tinygpt` too).
Explained in notebooks/pgtd.ipynb.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import time
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

Piece = int | str
State = tuple


_TOP_LEVEL = re.compile(r"(?:^|(?<=\n))[^\s]")


@dataclass(frozen=True)
class Stop:
    """Where a generated function body ends: EOS, the first line that is not indented (a new top-level
    statement), or a stop string. Servers get ``strings``; the rest is cut on this side. ``lead`` is the
    body already written before the text being generated (a rollout from a tree node continues it)."""

    strings: tuple[str, ...] = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(")
    top_level: bool = True
    lead: str = ""

    def after(self, lead: str) -> Stop:
        """The same rule for text that continues ``lead``."""
        return replace(self, lead=lead)

    def cut(self, text: str) -> int | None:
        """How much of ``text`` is body (up to and including its last newline), or None while it goes on.

        The body starts on a fresh line, so a first character that is not indented ends it at once.
        """
        full, n = self.lead + text, len(self.lead)
        ends = [i + 1 for s in self.strings if (i := full.find(s, max(0, n - len(s) + 1))) >= 0]
        if self.top_level:
            m = _TOP_LEVEL.search(full, n)
            if m:
                ends.append(m.start())
        return max(0, min(ends) - n) if ends else None

    def done(self, text: str) -> bool:
        return self.cut(text) is not None


LINE = Stop(strings=("\n",), top_level=False)


@dataclass
class Rollout:
    """A continuation: its pieces, whether it ended (EOS or stop) and, for greedy, the top-k per position."""

    pieces: tuple
    ended: bool
    topk: list[list[tuple[Piece, float]]] | None = None


class LM(Protocol):
    """What tree search needs from a language model."""

    name: str
    calls: Counter
    eos: Piece | None

    def encode(self, text: str) -> State: ...
    def decode(self, pieces: State) -> str: ...
    def topk_next(self, prefix: State, k: int) -> list[tuple[Piece, float]]: ...
    def greedy(self, prefix: State, max_new: int, stop: Stop, k: int = 0) -> Rollout: ...
    def sample(self, prefix: State, max_new: int, stop: Stop, temperature: float, top_k: int,
               seed: int) -> Rollout: ...
    def beam(self, prefix: State, max_new: int, stop: Stop, num_beams: int) -> Rollout: ...
    def topk_lines(self, prefix: State, k: int, max_new: int) -> list[tuple[tuple, float]]: ...


def renormalise(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-k indices (most likely first) and their softmax over the k logits only (PG-TD's prior)."""
    k = min(k, logits.shape[-1])
    idx = np.argpartition(-logits, k - 1)[:k]
    idx = idx[np.argsort(-logits[idx], kind="stable")]
    z = logits[idx] - logits[idx].max()
    p = np.exp(z)
    return idx, p / p.sum()


# ---------------------------------------------------------------------------------------------------------
# Torch models: the decoding loops, written once


class TorchLM:
    """Decoding loops over a torch model that gives next-token logits; subclasses supply the model.

    ``_start(prefix) -> (logits, cache)`` and ``_step(cache, token) -> (logits, cache)`` generate
    incrementally (a KV cache inside one call where the model has one); ``_batch_logits(prefixes)``
    scores several prefixes at once (beam search). Logits are 1-d numpy float arrays over the vocabulary.
    """

    name = "torch"
    eos: int | None = None

    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.tokens = 0            # tokens generated or scored by the model (a cost measure)
        self.seconds = 0.0         # time spent inside the model

    # -- the model (subclasses) --
    def _start(self, prefix: State):
        raise NotImplementedError

    def _step(self, cache, token: int):
        raise NotImplementedError

    def _batch_logits(self, prefixes: list[State]) -> np.ndarray:
        return np.stack([self._start(p)[0] for p in prefixes])

    # -- the protocol --
    def encode(self, text: str) -> State:
        raise NotImplementedError

    def decode(self, pieces: State) -> str:
        raise NotImplementedError

    def topk_next(self, prefix: State, k: int) -> list[tuple[Piece, float]]:
        self.calls["topk"] += 1
        start = time.time()
        logits, _ = self._start(tuple(prefix))
        self.tokens += 1
        self.seconds += time.time() - start
        idx, p = renormalise(logits, k)
        return [(int(i), float(q)) for i, q in zip(idx, p, strict=True)]

    def _generate(self, prefix: State, max_new: int, stop: Stop, choose, k: int = 0) -> Rollout:
        start = time.time()
        logits, cache = self._start(tuple(prefix))
        out: list[int] = []
        topk = [] if k else None
        ended = False
        for _ in range(max_new):
            if k:
                idx, p = renormalise(logits, k)
                topk.append([(int(i), float(q)) for i, q in zip(idx, p, strict=True)])
            tok = choose(logits)
            out.append(tok)
            self.tokens += 1
            if tok == self.eos or stop.done(self.decode(tuple(out))):
                ended = True
                break
            logits, cache = self._step(cache, tok)
        self.seconds += time.time() - start
        return Rollout(tuple(out), ended, topk)

    def greedy(self, prefix: State, max_new: int, stop: Stop, k: int = 0) -> Rollout:
        self.calls["greedy"] += 1
        return self._generate(prefix, max_new, stop, lambda z: int(np.argmax(z)), k)

    def sample(self, prefix: State, max_new: int, stop: Stop, temperature: float = 1.0, top_k: int = 3,
               seed: int = 0) -> Rollout:
        """Sampling from the top ``top_k`` (0: all) at ``temperature``; temperature 0 is greedy."""
        self.calls["sample"] += 1
        if temperature <= 0:
            return self._generate(prefix, max_new, stop, lambda z: int(np.argmax(z)))
        rng = np.random.default_rng(seed)

        def choose(z: np.ndarray) -> int:
            idx, _ = renormalise(z, top_k or z.shape[-1])
            zz = z[idx] / temperature
            p = np.exp(zz - zz.max())
            return int(idx[rng.choice(len(idx), p=p / p.sum())])

        return self._generate(prefix, max_new, stop, choose)

    def _beams(self, prefix: State, max_new: int, stop: Stop, num_beams: int) -> list[tuple[tuple, float, bool]]:
        """Plain beam search on summed log-probabilities; returns (pieces, logprob, ended), best first."""
        start = time.time()
        live: list[tuple[tuple, float]] = [((), 0.0)]
        done: list[tuple[tuple, float, bool]] = []
        for _ in range(max_new):
            logits = self._batch_logits([tuple(prefix) + b for b, _ in live])
            self.tokens += len(live)
            cands = []
            for (b, s), z in zip(live, logits, strict=True):
                lp = z - z.max() - np.log(np.exp(z - z.max()).sum())
                for i in np.argsort(-lp, kind="stable")[:num_beams]:
                    cands.append((b + (int(i),), s + float(lp[i])))
            cands.sort(key=lambda c: -c[1])
            live = []
            for b, s in cands[:num_beams]:
                if b[-1] == self.eos or stop.done(self.decode(b)):
                    done.append((b, s, True))
                else:
                    live.append((b, s))
            if not live or len(done) >= num_beams:
                break
        done += [(b, s, False) for b, s in live]
        self.seconds += time.time() - start
        return sorted(done, key=lambda d: -d[1])[:num_beams]

    def beam(self, prefix: State, max_new: int, stop: Stop, num_beams: int = 5) -> Rollout:
        self.calls["beam"] += 1
        pieces, _, ended = self._beams(prefix, max_new, stop, num_beams)[0]
        return Rollout(pieces, ended)

    def topk_lines(self, prefix: State, k: int, max_new: int = 32) -> list[tuple[tuple, float]]:
        """The k most likely next lines (a beam of width k up to a newline), prior renormalised over them."""
        self.calls["lines"] += 1
        beams = self._beams(prefix, max_new, LINE, k)
        lp = np.array([s for _, s, _ in beams])
        p = np.exp(lp - lp.max())
        return [(b, float(q)) for (b, _, _), q in zip(beams, p / p.sum(), strict=True)]


class HFLocal(TorchLM):
    """A transformers causal LM on this machine; by default the book's local SmolLM2-135M (as a raw code
    completer, no chat template). Loaded with :func:`mips.llm_server.convert`'s cached float32 folder."""

    def __init__(self, model: str = "smollm2-135m", device: str = "cpu", threads: int | None = None):
        super().__init__()
        import torch

        with warnings.catch_warnings():   # huggingface_hub's tqdm.auto warns in a kernel without ipywidgets
            warnings.filterwarnings("ignore", message="IProgress not found")
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

        from mips import llm_server

        folder = llm_server.convert(llm_server.local_model(model))
        llm_server._offline()
        hf_logging.disable_progress_bar()
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.name, self.device = model, device
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
        self.model.to(device).eval()
        self.eos = self.tokenizer.eos_token_id
        self._base: tuple[State, object, np.ndarray] | None = None   # the prompt's KV cache, see _start

    def encode(self, text: str) -> State:
        return tuple(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, pieces: State) -> str:
        return self.tokenizer.decode(list(pieces), skip_special_tokens=True)

    def _start(self, prefix: State):
        """Logits after ``prefix`` and its KV cache. Every state of a search extends the problem's prompt,
        so the cache of the last prefix run from scratch is kept and copied: only the tokens after it
        are run again (the prompt's prefill is most of a short rollout's cost)."""
        torch = self._torch
        base = self._base
        with torch.inference_mode():
            if base is not None and len(prefix) >= len(base[0]) and prefix[: len(base[0])] == base[0]:
                cache, rest = copy.deepcopy(base[1]), prefix[len(base[0]):]
                if not rest:
                    return base[2].copy(), cache
                out = self.model(torch.tensor([rest], device=self.device), past_key_values=cache, use_cache=True)
                return out.logits[0, -1].float().cpu().numpy(), out.past_key_values
            out = self.model(torch.tensor([prefix], device=self.device), use_cache=True)
            logits = out.logits[0, -1].float().cpu().numpy()
            self._base = (tuple(prefix), copy.deepcopy(out.past_key_values), logits.copy())
        return logits, out.past_key_values

    def _step(self, cache, token: int):
        torch = self._torch
        with torch.inference_mode():
            out = self.model(torch.tensor([[token]], device=self.device), past_key_values=cache, use_cache=True)
        return out.logits[0, -1].float().cpu().numpy(), out.past_key_values

    def _batch_logits(self, prefixes: list[State]) -> np.ndarray:
        torch = self._torch
        width = max(len(p) for p in prefixes)
        pad = self.eos or 0
        ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prefixes], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prefixes], device=self.device)
        with torch.inference_mode():
            out = self.model(ids, attention_mask=mask)
        return out.logits[:, -1].float().cpu().numpy()

    def beam(self, prefix: State, max_new: int, stop: Stop, num_beams: int = 5) -> Rollout:
        """transformers' own beam search (with its KV cache), cut at the end of the body."""
        torch = self._torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        self.calls["beam"] += 1
        n_prompt = len(prefix)
        decode = self.decode

        class BodyEnded(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.tensor([stop.done(decode(tuple(row[n_prompt:].tolist()))) for row in input_ids],
                                    device=input_ids.device)

        start = time.time()
        ids = torch.tensor([prefix], device=self.device)
        with torch.inference_mode():
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                                      num_beams=num_beams, do_sample=False, early_stopping=True,
                                      pad_token_id=self.eos, eos_token_id=self.eos,
                                      stopping_criteria=StoppingCriteriaList([BodyEnded()]),
                                      temperature=None, top_p=None, top_k=None)
        new = tuple(int(t) for t in out[0, n_prompt:].tolist())
        self.tokens += len(new) * num_beams
        self.seconds += time.time() - start
        ended = bool(new) and (new[-1] == self.eos or stop.done(decode(new)))
        return Rollout(new, ended)


# ---------------------------------------------------------------------------------------------------------
# OpenAI-compatible servers


class BackendUnavailable(RuntimeError):
    """No server is configured or reachable; the message says what to set."""


class OpenAICompat:
    """A model behind an OpenAI-compatible server. ``mode="completions"`` continues raw prefixes with
    ``/v1/completions`` (``logprobs=k``, as the removed Codex path of the original did): every PG-TD piece
    works. ``mode="chat"`` is for servers that only chat: a state is text, actions are whole lines
    (k sampled next lines, prior by how often each was drawn, or by their logprobs when the server gives
    them), and rollouts ask the model to continue the code at temperature 0. Beam search is not offered
    by the API. The server and model come from ``PGTD_BASE_URL``/``OPENAI_BASE_URL`` and
    ``PGTD_MODEL``/``MIPS_LLM_MODEL`` unless given."""

    CHAT_SYSTEM = ("You complete Python code. Reply with the continuation of the user's code only: no "
                   "explanation, no markdown, do not repeat the code you were given.")

    def __init__(self, base_url: str | None = None, model: str | None = None, mode: str = "completions",
                 api_key: str | None = None, timeout: float = 300.0):
        import openai

        base_url = base_url or os.environ.get("PGTD_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
        model = model or os.environ.get("PGTD_MODEL") or os.environ.get("MIPS_LLM_MODEL")
        if not base_url or not model:
            raise BackendUnavailable("the server backend needs PGTD_BASE_URL (or OPENAI_BASE_URL) and "
                                     "PGTD_MODEL (or MIPS_LLM_MODEL); or use backend='local'")
        if mode not in ("completions", "chat"):
            raise ValueError(f"mode must be 'completions' or 'chat', not {mode!r}")
        self.name, self.mode, self.base_url = model, mode, base_url
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY")
                                    or "none", max_retries=0, timeout=timeout)
        self.calls: Counter = Counter()
        self.tokens = 0
        self.seconds = 0.0
        self.eos = None

    def encode(self, text: str) -> State:
        return (text,)

    def decode(self, pieces: State) -> str:
        return "".join(pieces)

    def _completion(self, prompt: str, **kwargs):
        start = time.time()
        resp = self.client.completions.create(model=self.name, prompt=prompt, **kwargs)
        self.seconds += time.time() - start
        if resp.usage:
            self.tokens += resp.usage.completion_tokens or 0
        return resp.choices

    def _chat(self, code: str, **kwargs):
        start = time.time()
        messages = [{"role": "system", "content": self.CHAT_SYSTEM}, {"role": "user", "content": code}]
        resp = self.client.chat.completions.create(model=self.name, messages=messages, **kwargs)
        self.seconds += time.time() - start
        if resp.usage:
            self.tokens += resp.usage.completion_tokens or 0
        return resp.choices

    @staticmethod
    def _unfence(text: str) -> str:
        m = re.search(r"```(?:python)?\n(.*?)(```|$)", text, re.DOTALL)
        return m.group(1) if m else text

    def _need_completions(self, what: str) -> None:
        if self.mode != "completions":
            raise NotImplementedError(f"{what} needs /v1/completions with logprobs; a chat-only server "
                                      "supports line-level actions only (action='line')")

    def topk_next(self, prefix: State, k: int) -> list[tuple[Piece, float]]:
        self._need_completions("token-level expansion")
        self.calls["topk"] += 1
        (choice,) = self._completion(self.decode(prefix), max_tokens=1, logprobs=k, temperature=0)
        top = (choice.logprobs.top_logprobs or [{}])[0] if choice.logprobs else {}
        if not top:
            return [(choice.text, 1.0)]
        items = sorted(top.items(), key=lambda kv: -kv[1])[:k]
        lp = np.array([v for _, v in items])
        p = np.exp(lp - lp.max())
        return [(t, float(q)) for (t, _), q in zip(items, p / p.sum(), strict=True)]

    def _cut(self, text: str, stop: Stop) -> tuple[str, bool]:
        at = stop.cut(text)
        return (text, False) if at is None else (text[:at], True)

    def greedy(self, prefix: State, max_new: int, stop: Stop, k: int = 0) -> Rollout:
        self.calls["greedy"] += 1
        code = self.decode(prefix)
        if self.mode == "chat":
            (choice,) = self._chat(code, max_tokens=max_new, temperature=0)
            text, ended = self._cut(self._unfence(choice.message.content or ""), stop)
            return Rollout((text,), ended or choice.finish_reason == "stop")
        kwargs = {"logprobs": k} if k else {}
        (choice,) = self._completion(code, max_tokens=max_new, temperature=0, stop=list(stop.strings)[:4],
                                     **kwargs)
        lp = choice.logprobs
        if lp is not None and lp.tokens:
            pieces, topk, text = [], [], ""
            for i, tok in enumerate(lp.tokens):
                pieces.append(tok)
                text += tok
                if k and lp.top_logprobs and i < len(lp.top_logprobs) and lp.top_logprobs[i]:
                    items = sorted(lp.top_logprobs[i].items(), key=lambda kv: -kv[1])[:k]
                    z = np.array([v for _, v in items])
                    p = np.exp(z - z.max())
                    topk.append([(t, float(q)) for (t, _), q in zip(items, p / p.sum(), strict=True)])
                if stop.done(text):
                    break
            ended = stop.done(text) or choice.finish_reason == "stop"
            return Rollout(tuple(pieces), ended, topk if k and len(topk) == len(pieces) else None)
        text, ended = self._cut(choice.text, stop)
        return Rollout((text,), ended or choice.finish_reason == "stop")

    def sample(self, prefix: State, max_new: int, stop: Stop, temperature: float = 1.0, top_k: int = 3,
               seed: int = 0) -> Rollout:
        """Sampling at ``temperature`` (the API has no top-k; ``top_k`` is ignored here)."""
        self.calls["sample"] += 1
        code = self.decode(prefix)
        if self.mode == "chat":
            (choice,) = self._chat(code, max_tokens=max_new, temperature=temperature, seed=seed)
            text, ended = self._cut(self._unfence(choice.message.content or ""), stop)
        else:
            (choice,) = self._completion(code, max_tokens=max_new, temperature=temperature, seed=seed,
                                         stop=list(stop.strings)[:4])
            text, ended = self._cut(choice.text, stop)
        return Rollout((text,), ended or choice.finish_reason == "stop")

    def beam(self, prefix: State, max_new: int, stop: Stop, num_beams: int = 5) -> Rollout:
        raise NotImplementedError("beam search is not offered by the OpenAI API; use backend='local'")

    def topk_lines(self, prefix: State, k: int, max_new: int = 32) -> list[tuple[tuple, float]]:
        """k sampled next lines, deduplicated; prior ∝ how often each was drawn (one request per draw)."""
        self.calls["lines"] += 1
        code = self.decode(prefix)
        counts: Counter = Counter()
        for seed in range(k):
            if self.mode == "chat":
                (choice,) = self._chat(code, max_tokens=max_new, temperature=1.0, seed=seed, stop=["\n"])
                text = self._unfence(choice.message.content or "")
            else:
                (choice,) = self._completion(code, max_tokens=max_new, temperature=1.0, seed=seed, stop=["\n"])
                text = choice.text
            line = text.split("\n", 1)[0] + "\n"
            counts[line] += 1
        total = sum(counts.values())
        return [((line,), c / total) for line, c in counts.most_common(k)]


def make_lm(backend: str = "local", device: str = "cpu", **kwargs) -> LM:
    """``local`` (SmolLM2-135M in this process), ``server`` (an OpenAI-compatible server: completions),
    ``chat`` (an OpenAI-compatible server: chat, line actions) or ``tiny`` (the tiny program GPT)."""
    if backend == "local":
        return HFLocal(device=device, **kwargs)
    if backend in ("server", "chat"):
        return OpenAICompat(mode="completions" if backend == "server" else "chat", **kwargs)
    if backend == "tiny":
        from mips.pgtd.tinygpt import TinyLM

        return TinyLM.pretrained(device=device, **kwargs)
    raise ValueError(f"unknown backend {backend!r}; choose 'local', 'server', 'chat' or 'tiny'")
