"""Causal models: small symbolic programs that solve a numeric-equivalence task (das spec §3).

Each model reads the sequence one token at a time, keeps a few named variables, and says what the next
token must be. The question DAS asks is whether a network's hidden state holds the same variables, in the
sense that swapping them between two runs changes the network's behaviour exactly as swapping them in the
program does.

  Up-Down (``CountUpDown``)   count up on each demo token, down on each response; stop at 0
  Up-Up   (``CountUpUp``)     count demos and responses separately; stop when they are equal
  Up-Incr (``CountUpIncr``)   count demos; at T switch to steps of max_count/n; stop at max_count

``obj_count`` (how many demos the sequence will show) only decides when the trigger comes; it is part of
the input, never of the network's state, so it is never swapped. Variables are read *after* a token's
update ("post") for sources and *before* it ("pre") for targets. Explained in notebooks/das_counting.ipynb.
"""

from __future__ import annotations

import numpy as np

from mips.das.tasks import NumericTask

DEMO, RESPONSE = -1, 1


class CausalModel:
    """A program over named variables: ``initial`` → ``update`` per token → ``emit`` the next token."""

    name = ""
    variables: tuple[str, ...] = ()

    def __init__(self, task: NumericTask):
        self.task = task

    def initial(self, obj_count: int) -> dict:
        raise NotImplementedError

    def update(self, v: dict, token: int) -> dict:
        raise NotImplementedError

    def stop(self, v: dict) -> bool:
        """In the response phase: is the next token the end token?"""
        raise NotImplementedError

    def ready(self, v: dict) -> bool:
        """In the demo phase: is the next token the trigger?"""
        raise NotImplementedError

    def emit(self, v: dict, rng: np.random.Generator) -> tuple[int, bool]:
        """The next token and whether it belongs to the response phase (the task mask)."""
        t = self.task
        if v["phase"] == RESPONSE:
            return (t.eos_id if self.stop(v) else t.response_id), True
        if self.ready(v):
            return t.trigger_id, False
        if t.unk_p > 0 and rng.random() < t.unk_p:
            return t.unk_id, False
        demos = t.demo_ids
        return (demos[rng.integers(len(demos))] if len(demos) > 1 else demos[0]), False

    def trace(self, tokens, obj_count: int) -> tuple[list[dict], list[dict]]:
        """Variables before ("pre") and after ("post") each token of a sequence (pads excluded)."""
        pre, post = [], []
        v = self.initial(obj_count)
        for tok in tokens:
            if int(tok) == self.task.pad_id:
                break
            pre.append(v)
            v = self.update(v, int(tok))
            post.append(v)
        return pre, post

    def run(self, v: dict, rng: np.random.Generator, max_len: int) -> tuple[list[int], list[bool]]:
        """Continue from variables ``v`` (already updated with the last input) until the end token."""
        toks, mask = [], []
        for _ in range(max_len):
            tok, tm = self.emit(v, rng)
            toks.append(tok)
            mask.append(tm)
            if tok == self.task.eos_id:
                return toks, mask
            v = self.update(v, tok)
        raise RuntimeError(f"{self.name}: no end token within {max_len} steps from {v}")

    def generate(self, obj_count: int, rng: np.random.Generator) -> tuple[list[int], list[bool]]:
        """A whole task sequence produced by the program itself (it matches the task's generator)."""
        v = self.update(self.initial(obj_count), self.task.bos_id)
        toks, mask = self.run(v, rng, 4 * self.task.max_count + 8)
        return [self.task.bos_id] + toks, [False] + mask


class CountUpDown(CausalModel):
    """Up-Down: one count, incremented by demo tokens, decremented by responses; E when it reaches 0."""

    name = "Up-Down"
    variables = ("count", "phase")

    def initial(self, obj_count: int) -> dict:
        return {"obj_count": int(obj_count), "phase": DEMO, "count": 0}

    def update(self, v: dict, token: int) -> dict:
        t, v = self.task, dict(v)
        if token in (t.eos_id, t.pad_id):
            v.update(count=-1, phase=RESPONSE)
        elif v["phase"] == DEMO:
            if token == t.trigger_id:
                v["phase"] = RESPONSE
            elif token in t.demo_ids:
                v["count"] += 1
        elif token == t.response_id:
            v["count"] -= 1
        return v

    def ready(self, v: dict) -> bool:
        return v["count"] >= v["obj_count"]

    def stop(self, v: dict) -> bool:
        return v["count"] <= 0


class CountUpUp(CausalModel):
    """Up-Up: separate demo and response counts; E when the response count reaches the demo count."""

    name = "Up-Up"
    variables = ("demo_count", "resp_count", "phase")

    def initial(self, obj_count: int) -> dict:
        return {"obj_count": int(obj_count), "phase": DEMO, "demo_count": 0, "resp_count": 0}

    def update(self, v: dict, token: int) -> dict:
        t, v = self.task, dict(v)
        if token in (t.eos_id, t.pad_id):
            v.update(phase=RESPONSE, demo_count=-1, resp_count=-1)
        elif v["phase"] == DEMO:
            if token == t.trigger_id:
                v["phase"] = RESPONSE
            elif token in t.demo_ids:
                v["demo_count"] += 1
        elif token == t.response_id:
            v["resp_count"] += 1
        return v

    def ready(self, v: dict) -> bool:
        return v["demo_count"] >= v["obj_count"]

    def stop(self, v: dict) -> bool:
        # ``>=`` rather than ``==``: a swap can put more responses than demos into a state; stop at once.
        return v["resp_count"] >= v["demo_count"]


class CountUpIncr(CausalModel):
    """Up-Incr: count demos; at T set incr = max_count / count and restart at 0; E when count hits max_count."""

    name = "Up-Incr"
    variables = ("count", "incr", "phase")

    def initial(self, obj_count: int) -> dict:
        return {"obj_count": int(obj_count), "phase": DEMO, "count": 0.0, "incr": 0.0}

    def update(self, v: dict, token: int) -> dict:
        t, v = self.task, dict(v)
        if token in (t.eos_id, t.pad_id):
            v.update(phase=RESPONSE, count=-1.0)
        elif v["phase"] == DEMO:
            if token == t.trigger_id:
                v.update(phase=RESPONSE, incr=t.max_count / max(v["count"], 1.0), count=0.0)
            elif token in t.demo_ids:
                v["count"] += 1.0
        elif token == t.response_id:
            v["count"] += v["incr"]
        return v

    def ready(self, v: dict) -> bool:
        return v["count"] >= v["obj_count"]

    def stop(self, v: dict) -> bool:
        return v["count"] >= self.task.max_count - 1e-6 or v["incr"] <= 0


CAUSAL_MODELS: dict[str, type[CausalModel]] = {
    "updown": CountUpDown,
    "upup": CountUpUp,
    "upincr": CountUpIncr,
}


def get_causal_model(name: str, task: NumericTask) -> CausalModel:
    """A causal model by short name (``updown``, ``upup``, ``upincr``) bound to a task's tokens."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in CAUSAL_MODELS:
        raise ValueError(f"unknown causal model {name!r}; choose one of {', '.join(CAUSAL_MODELS)}")
    return CAUSAL_MODELS[key](task)
