"""Counterfactual pairs for interchange interventions, built as in the original (das spec §3.3).

For each target sequence a source sequence is drawn from the same pool (with replacement), and one swap
position in each, independently and uniformly among the positions whose input is a demo token, the
unknown token or a response (never B, T, E or padding). The causal model's variables *after* the source's
token (``post``) replace the target's variables right after the target's token; the counterfactual keeps
the target up to and including that token and continues with what the causal model then produces until
``E``. Only the response phase (task mask) is scored; demo tokens after the swap are given as inputs.

As in the original, the causal model runs the target with a fresh random ``obj_count`` (how many demos the
continuation shows before T); the network never sees obj_count except through the demos it is given, so
any value makes a valid counterfactual. ``continuation_count="target"`` uses the target's own count.
Explained in notebooks/das_counting.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mips.das.causal_models import CausalModel
from mips.das.tasks import TokenData, pad


@dataclass
class PairSet:
    """Interchange pairs (all arrays have n rows).

    cf_tokens, cf_tmask (n, L)   the counterfactual sequences; the target's prefix up to ``trg_pos``
    trg_pos (n,)                 the target time step whose state is replaced (index into cf_tokens)
    src_tokens, src_tmask (n, Ls) the source sequences
    src_pos (n,)                 the source time step whose state is read
    variable (n,)                index into ``variables``: which swap group this pair swaps
    src_values, trg_values (n, V)  the causal model's variables (``value_names``): source post, target pre
    """

    cf_tokens: np.ndarray
    cf_tmask: np.ndarray
    trg_pos: np.ndarray
    src_tokens: np.ndarray
    src_tmask: np.ndarray
    src_pos: np.ndarray
    variable: np.ndarray
    src_values: np.ndarray
    trg_values: np.ndarray
    variables: tuple[str, ...]
    value_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.cf_tokens)

    def subset(self, idx) -> PairSet:
        arrays = {k: getattr(self, k)[idx] for k in ("cf_tokens", "cf_tmask", "trg_pos", "src_tokens",
                                                      "src_tmask", "src_pos", "variable", "src_values",
                                                      "trg_values")}
        return PairSet(**arrays, variables=self.variables, value_names=self.value_names)


def swap_keys(variable: str, cm: CausalModel) -> tuple[str, ...]:
    """The causal variables a swap group names: ``full`` is all of the model's variables."""
    if variable == "full":
        return cm.variables
    keys = tuple(variable.split("+"))
    unknown = [k for k in keys if k not in cm.variables]
    if unknown:
        raise ValueError(f"{cm.name} has no variable {', '.join(unknown)}; its variables are "
                         f"{', '.join(cm.variables)} (or 'full' for all of them)")
    return keys


def swap_sites(tokens: np.ndarray, task) -> np.ndarray:
    """Positions whose input may be intervened on: not P, B, E or T."""
    banned = [task.pad_id, task.bos_id, task.eos_id, task.trigger_id]
    return np.flatnonzero(~np.isin(tokens, banned))


def make_pairs(data: TokenData, cm: CausalModel, variables: tuple[str, ...] = ("full",), n_pairs: int = 1000,
               seed: int = 0, continuation_count: str = "random") -> PairSet:
    """``n_pairs`` pairs per swap group in ``variables``, targets and sources drawn from ``data``.

    Each target is used once per group in turn (cycling through ``data``); its source is drawn with
    replacement.
    """
    if continuation_count not in ("random", "target"):
        raise ValueError(f"continuation_count must be 'random' or 'target', got {continuation_count!r}")
    task = cm.task
    rng = np.random.default_rng(seed)
    keys_per_group = [swap_keys(v, cm) for v in variables]
    names = cm.variables
    max_len = 4 * task.max_count + 8
    traces = {}

    def trace(i: int, count: int):
        if (i, count) not in traces:
            traces[(i, count)] = cm.trace(data.tokens[i], count)
        return traces[(i, count)]

    cf_seqs, cf_masks, src_seqs, src_masks = [], [], [], []
    trg_pos, src_pos, var_idx, src_vals, trg_vals = [], [], [], [], []
    for g, keys in enumerate(keys_per_group):
        for j in range(n_pairs):
            ti_seq = j % len(data)
            si_seq = int(rng.integers(len(data)))
            trg, src = data.tokens[ti_seq], data.tokens[si_seq]
            t_sites, s_sites = swap_sites(trg, task), swap_sites(src, task)
            ti, si = int(rng.choice(t_sites)), int(rng.choice(s_sites))
            count = int(rng.integers(1, task.max_count + 1)) if continuation_count == "random" \
                else int(data.counts[ti_seq])
            t_pre, _ = trace(ti_seq, count)
            _, s_post = trace(si_seq, int(data.counts[si_seq]))
            v = cm.update(t_pre[ti], int(trg[ti]))
            v.update({k: s_post[si][k] for k in keys})
            cont, cont_mask = cm.run(v, rng, max_len)
            cf_seqs.append([int(t) for t in trg[:ti + 1]] + cont)
            cf_masks.append([bool(m) for m in data.tmask[ti_seq, :ti + 1]] + cont_mask)
            src_seqs.append([int(t) for t in src[:int((src != task.pad_id).sum())]])
            src_masks.append([bool(m) for m in data.tmask[si_seq, :len(src_seqs[-1])]])
            trg_pos.append(ti)
            src_pos.append(si)
            var_idx.append(g)
            src_vals.append([s_post[si][k] for k in names])
            trg_vals.append([t_pre[ti][k] for k in names])
    cf_tokens, cf_tmask = pad(cf_seqs, cf_masks, task.pad_id)
    src_tokens, src_tmask = pad(src_seqs, src_masks, task.pad_id)
    order = rng.permutation(len(cf_seqs))     # interleave the groups
    pairs = PairSet(cf_tokens, cf_tmask, np.array(trg_pos), src_tokens, src_tmask, np.array(src_pos),
                    np.array(var_idx), np.array(src_vals, dtype=np.float64), np.array(trg_vals, dtype=np.float64),
                    tuple(variables), names)
    return pairs.subset(order)


def _pair_key(p: PairSet, i: int, pad_id: int = 0) -> tuple:
    src, cf = p.src_tokens[i], p.cf_tokens[i]
    return (src[src != pad_id].tobytes(), int(p.src_pos[i]), cf[cf != pad_id].tobytes(), int(p.trg_pos[i]),
            int(p.variable[i]))


def shared_pairs(a: PairSet, b: PairSet) -> int:
    """How many pairs of ``a`` also occur in ``b`` (same source, positions, swap and counterfactual).

    Pools are drawn independently, and short sequences repeat by chance, so a held-out set can share a few
    pairs with the training set; the notebooks report how many.
    """
    seen = {_pair_key(b, i) for i in range(len(b))}
    return sum(_pair_key(a, i) in seen for i in range(len(a)))
