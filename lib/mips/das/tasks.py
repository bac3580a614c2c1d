"""Numeric-equivalence tasks: see n objects, then produce n responses, then stop (das spec §1).

A sequence is ``B D×n T R×n E``: a start token, n demonstration tokens, the trigger, n response tokens
and the end token. The network is trained by next-token prediction; it cannot know when ``T`` comes (the
trigger is given), but after it the whole response phase (every ``R`` and the final ``E``) is its own
work. Three tasks differ only in their tokens:

  MultiObject   demo tokens D0 D1 D2 (uniform random per step), response R
  SingleObject  demo token D, response R
  SameObject    demo token D, response D (the same token)

An optional unknown token ``U`` appears in the demo phase with probability ``unk_p`` per step and does not
count; it keeps a transformer from reading the count off token positions. Token ids follow the original:
``P=0, B=1, E=2``, then the task's other words in sorted order. Explained in notebooks/das_counting.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PAD, BOS, EOS = "P", "B", "E"
TRIGGER, RESPONSE, UNKNOWN = "T", "R", "U"
MAX_COUNT = 20
HOLD_OUTS = (4, 9, 14, 17)      # counts never seen in model training
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2  # the same in every task


@dataclass(frozen=True)
class NumericTask:
    """One numeric-equivalence task: its words, the counts it draws, and the unknown-token rate."""

    name: str
    demo_words: tuple[str, ...]
    response_word: str = RESPONSE
    unk_p: float = 0.0
    max_count: int = MAX_COUNT
    words: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        if not 0.0 <= self.unk_p < 1.0:
            raise ValueError(f"unk_p must be in [0, 1), got {self.unk_p}")
        if self.max_count < 1:
            raise ValueError(f"max_count must be >= 1, got {self.max_count}")
        rest = set(self.demo_words) | {self.response_word, TRIGGER} | ({UNKNOWN} if self.unk_p > 0 else set())
        object.__setattr__(self, "words", (PAD, BOS, EOS, *sorted(rest)))

    # token ids -------------------------------------------------------------------------------------------
    def id(self, word: str) -> int:
        return self.words.index(word)

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    @property
    def trigger_id(self) -> int:
        return self.id(TRIGGER)

    @property
    def response_id(self) -> int:
        return self.id(self.response_word)

    @property
    def demo_ids(self) -> tuple[int, ...]:
        return tuple(self.id(w) for w in self.demo_words)

    @property
    def unk_id(self) -> int | None:
        return self.id(UNKNOWN) if self.unk_p > 0 else None

    @property
    def max_len(self) -> int:
        """Longest sequence without unknown tokens: B, n demos, T, n responses, E."""
        return 2 * self.max_count + 3

    def decode(self, ids) -> str:
        """Token ids as words, pads dropped: ``"B D0 D2 T R R E"``."""
        return " ".join(self.words[int(i)] for i in ids if int(i) != self.pad_id)

    # sequences -------------------------------------------------------------------------------------------
    def sequence(self, n: int, rng: np.random.Generator) -> tuple[list[int], list[bool]]:
        """One sequence with count n and its task mask (True on the response phase: every R and the E)."""
        if not 1 <= n <= self.max_count:
            raise ValueError(f"count must be in 1..{self.max_count}, got {n}")
        toks = [self.bos_id]
        demos = self.demo_ids
        seen = 0
        while seen < n:
            if self.unk_p > 0 and rng.random() < self.unk_p:
                toks.append(self.unk_id)
            else:
                toks.append(demos[rng.integers(len(demos))] if len(demos) > 1 else demos[0])
                seen += 1
        toks.append(self.trigger_id)
        tmask = [False] * len(toks)
        toks += [self.response_id] * n + [self.eos_id]
        tmask += [True] * (n + 1)
        return toks, tmask


TASKS: dict[str, NumericTask] = {
    "MultiObject": NumericTask("MultiObject", ("D0", "D1", "D2")),
    "SingleObject": NumericTask("SingleObject", ("D",)),
    "SameObject": NumericTask("SameObject", ("D",), response_word="D"),
}


def get_numeric_task(name: str, unk_p: float = 0.0, max_count: int = MAX_COUNT) -> NumericTask:
    """A numeric-equivalence task by name, optionally with the unknown token at rate ``unk_p``.

    ``max_count`` below 20 makes a smaller task (used by the tests to train in seconds).
    """
    if name not in TASKS:
        raise ValueError(f"unknown numeric-equivalence task {name!r}; choose one of {', '.join(TASKS)}")
    t = TASKS[name]
    return NumericTask(t.name, t.demo_words, t.response_word, unk_p, max_count)


@dataclass
class TokenData:
    """Padded sequences: ``tokens`` (n, L) int64 padded with P, ``tmask`` (n, L) bool, ``counts`` (n,)."""

    tokens: np.ndarray
    tmask: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, idx) -> TokenData:
        return TokenData(self.tokens[idx], self.tmask[idx], self.counts[idx])


def pad(seqs: list[list[int]], masks: list[list[bool]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged token lists into (n, L) arrays padded on the right."""
    L = max(len(s) for s in seqs)
    tokens = np.full((len(seqs), L), pad_id, dtype=np.int64)
    tmask = np.zeros((len(seqs), L), dtype=bool)
    for i, (s, m) in enumerate(zip(seqs, masks, strict=True)):
        tokens[i, :len(s)] = s
        tmask[i, :len(m)] = m
    return tokens, tmask


def allowed_counts(task: NumericTask, hold_outs: tuple[int, ...] = (), only_hold_outs: bool = False) -> np.ndarray:
    """Counts 1..max_count without the hold-outs, or only the hold-outs."""
    counts = np.arange(1, task.max_count + 1)
    held = np.isin(counts, hold_outs)
    return counts[held] if only_hold_outs else counts[~held]


def make_sequences(task: NumericTask, n: int, seed: int, hold_outs: tuple[int, ...] = HOLD_OUTS,
                   only_hold_outs: bool = False) -> TokenData:
    """``n`` sequences with counts uniform over the allowed counts (the hold-outs excluded, or only them)."""
    rng = np.random.default_rng(seed)
    choices = allowed_counts(task, hold_outs, only_hold_outs)
    if len(choices) == 0:
        raise ValueError("no counts left to draw from; check hold_outs")
    counts = rng.choice(choices, size=n)
    seqs, masks = zip(*(task.sequence(int(c), rng) for c in counts), strict=True)
    tokens, tmask = pad(list(seqs), list(masks), task.pad_id)
    return TokenData(tokens, tmask, counts.astype(np.int64))
