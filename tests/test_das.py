"""The DAS chapter's library: tasks, causal models, counterfactual pairs, alignments, patches, and a real search.

Everything here runs on sequences the library generates and on models it trains (a small GRU on counts up
to 6 trains in seconds); nothing is hard-coded beyond the token ids and worked examples of the spec.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mips.das import das, training
from mips.das.alignment import ALIGNMENTS, Alignment
from mips.das.causal_models import CountUpDown, get_causal_model
from mips.das.counterfactuals import make_pairs, shared_pairs
from mips.das.interventions import Interchange, Intervention
from mips.das.models import ModelConfig, Patch, build_model
from mips.das.tasks import HOLD_OUTS, get_numeric_task, make_sequences


def ids(task, text: str) -> list[int]:
    return [task.id(w) for w in text.split()]


# --- tasks -------------------------------------------------------------------------------------------------


def test_token_ids_follow_the_original():
    multi = get_numeric_task("MultiObject")
    assert multi.words == ("P", "B", "E", "D0", "D1", "D2", "R", "T")
    assert multi.demo_ids == (3, 4, 5) and multi.response_id == 6 and multi.trigger_id == 7
    assert get_numeric_task("MultiObject", unk_p=0.2).unk_id == 8
    single, same = get_numeric_task("SingleObject"), get_numeric_task("SameObject")
    assert (single.id("D"), single.response_id, single.trigger_id) == (3, 4, 5)
    assert (same.id("D"), same.response_id, same.trigger_id) == (3, 3, 4)
    with pytest.raises(ValueError, match="choose one of"):
        get_numeric_task("ManyObjects")


@pytest.mark.parametrize("name,unk_p", [("MultiObject", 0.0), ("SingleObject", 0.0), ("SameObject", 0.0),
                                        ("MultiObject", 0.2)])
def test_sequences_have_the_task_format(name, unk_p):
    task = get_numeric_task(name, unk_p)
    data = make_sequences(task, 300, seed=1)
    assert not np.isin(data.counts, HOLD_OUTS).any()
    for toks, tmask, n in zip(data.tokens, data.tmask, data.counts, strict=True):
        toks = toks[toks != task.pad_id]
        trig = int(np.flatnonzero(toks == task.trigger_id)[0])
        demo = toks[1:trig]
        assert toks[0] == task.bos_id and toks[-1] == task.eos_id
        assert np.isin(demo, task.demo_ids).sum() == n
        assert (toks[trig + 1:-1] == task.response_id).all() and len(toks) - trig - 2 == n
        assert tmask[:len(toks)].tolist() == [False] * (trig + 1) + [True] * (n + 1)
    held = make_sequences(task, 100, seed=2, only_hold_outs=True)
    assert set(held.counts.tolist()) <= set(HOLD_OUTS)


@pytest.mark.parametrize("cm_name", ["updown", "upup", "upincr"])
@pytest.mark.parametrize("name,unk_p", [("MultiObject", 0.0), ("SameObject", 0.0), ("MultiObject", 0.3)])
def test_causal_models_produce_the_task_sequences(cm_name, name, unk_p):
    """Each program, run on its own, emits exactly the task's sequences (same random draws, same tokens)."""
    task = get_numeric_task(name, unk_p)
    cm = get_causal_model(cm_name, task)
    for n in range(1, task.max_count + 1):
        want = task.sequence(n, np.random.default_rng(n))
        got = cm.generate(n, np.random.default_rng(n))
        assert got == (want[0], want[1])


def test_variables_match_the_worked_examples():
    """Spec §3.3: post-token variables of two sources."""
    task = get_numeric_task("MultiObject")
    cm = CountUpDown(task)
    _, post = cm.trace(ids(task, "B D0 D1 D2 D1 D2"), 5)
    assert (post[5]["phase"], post[5]["count"]) == (-1, 5)
    _, post = cm.trace(ids(task, "B D2 D0 D0 D0 D2 D2 T R R E"), 6)
    assert (post[9]["phase"], post[9]["count"]) == (1, 4)


def _after(cf, pos, task):
    return cf[pos + 1:][cf[pos + 1:] != task.pad_id]


def test_updown_counterfactuals_answer_what_the_source_counted():
    """Full swap: the counterfactual's responses after the swap are the source's count (plus any demos the
    continuation shows if the source was still counting), whatever the target had counted."""
    task = get_numeric_task("MultiObject")
    cm = get_causal_model("updown", task)
    pairs = make_pairs(make_sequences(task, 200, seed=3, hold_outs=()), cm, ("full",), 400, seed=4)
    names = list(pairs.value_names)
    for r in range(len(pairs)):
        ti = pairs.trg_pos[r]
        cf = pairs.cf_tokens[r]
        n_trg = int((cf != task.pad_id).sum())
        assert cf[n_trg - 1] == task.eos_id
        cont = _after(cf, ti, task)
        count = pairs.src_values[r, names.index("count")]
        if pairs.src_values[r, names.index("phase")] == -1:
            assert task.trigger_id in cont
            count += np.isin(cont, task.demo_ids).sum()
        else:
            assert task.trigger_id not in cont and not np.isin(cont, task.demo_ids).any()
        assert (cont == task.response_id).sum() == count
        assert pairs.cf_tmask[r, :n_trg].sum() == (cont == task.response_id).sum() + 1 + \
            pairs.cf_tmask[r, :ti + 1].sum()


def test_upup_demo_count_swap_keeps_the_targets_responses():
    """Up-Up, demo_count only, target mid-response: it answers source demo_count − target resp_count."""
    task = get_numeric_task("MultiObject")
    cm = get_causal_model("upup", task)
    pairs = make_pairs(make_sequences(task, 200, seed=5, hold_outs=()), cm, ("demo_count",), 400, seed=6)
    names = list(pairs.value_names)
    seen = 0
    for r in range(len(pairs)):
        if pairs.trg_values[r, names.index("phase")] != 1:
            continue
        seen += 1
        ti = pairs.trg_pos[r]
        cont = _after(pairs.cf_tokens[r], ti, task)
        resp_after_swap_token = pairs.trg_values[r, names.index("resp_count")] + 1   # the swap token is an R
        want = max(pairs.src_values[r, names.index("demo_count")] - resp_after_swap_token, 0)
        assert (cont == task.response_id).sum() == want
    assert seen > 50


def test_shared_pairs_counts_coincidences():
    task = get_numeric_task("MultiObject")
    cm = get_causal_model("updown", task)
    a = make_pairs(make_sequences(task, 100, seed=7, hold_outs=()), cm, ("full",), 100, seed=8)
    b = make_pairs(make_sequences(task, 100, seed=9, hold_outs=()), cm, ("full",), 100, seed=10)
    assert shared_pairs(a, a) == len(a)
    assert shared_pairs(a.subset(np.arange(30)), a) == 30
    assert shared_pairs(a, b) < 10


def test_pairs_reject_unknown_variables():
    task = get_numeric_task("MultiObject")
    with pytest.raises(ValueError, match="has no variable"):
        make_pairs(make_sequences(task, 10, seed=0), get_causal_model("updown", task), ("demo_count",), 5)


# --- alignments and interventions ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALIGNMENTS)
@pytest.mark.parametrize("nonlinearity", ["identity", "tanh"])
def test_alignment_functions_are_invertible(kind, nonlinearity):
    f = Alignment(kind, 8, seed=3, nonlinearity=nonlinearity)
    with torch.no_grad():
        for p in f.parameters():              # move away from the initialisation
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    h = torch.rand(50, 8) * 1.6 - 0.8
    assert torch.allclose(f.inverse(f(h)), h, atol=1e-4)


def test_same_seed_same_alignment_and_orthogonality():
    a, b = Alignment("orthogonal", 6, seed=1), Alignment("orthogonal", 6, seed=1)
    Q = a.f.weight.detach()
    assert torch.equal(Q, b.f.weight.detach())
    assert torch.allclose(Q @ Q.T, torch.eye(6), atol=1e-5)
    assert not torch.equal(Q, Alignment("orthogonal", 6, seed=2).f.weight.detach())


def test_interchange_swaps_exactly_the_subspace():
    spec = Intervention(variables=("count", "phase"), subspace_dim=3)
    inter = Interchange(spec, 8, seed=0)
    h_trg, h_src = torch.randn(5, 8), torch.randn(5, 8)
    f = inter.alignments[0]
    with torch.no_grad():
        for g in (0, 1):
            out = f(inter(h_trg, h_src, torch.full((5,), g)))
            lo, hi = 3 * g, 3 * g + 3
            assert torch.allclose(out[:, lo:hi], f(h_src)[:, lo:hi], atol=1e-5)
            rest = [i for i in range(8) if not lo <= i < hi]
            assert torch.allclose(out[:, rest], f(h_trg)[:, rest], atol=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        Intervention(variables=("a", "b", "c"), subspace_dim=3).masks(8)
    with pytest.raises(ValueError, match="unknown alignment"):
        Intervention(alignment="rotation")


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_recurrent_patch_feeds_the_recurrence(kind):
    """Replacing the state at step t gives the same later logits as restarting from that state."""
    task = get_numeric_task("MultiObject", max_count=6)
    model = build_model(ModelConfig(kind=kind, vocab_size=task.vocab_size, d_model=8), seed=0).eval()
    data = make_sequences(task, 6, seed=0)
    tok = torch.as_tensor(data.tokens[:, :-1])
    v = torch.randn(6, 8)
    t = 3
    with torch.no_grad():
        patched, cache = model.run_with_cache(tok, patch=Patch("hook_h", torch.full((6,), t), lambda h: v))
        plain, _ = model.run_with_cache(tok)
        restart, _ = model.run_with_cache(tok[:, t + 1:], state0=v)
    assert torch.allclose(patched[:, :t], plain[:, :t])
    assert torch.allclose(cache["hook_h"][:, t], v)
    assert torch.allclose(patched[:, t + 1:], restart, atol=1e-6)
    assert not torch.allclose(patched[:, t + 1:], plain[:, t + 1:])


def test_transformer_patch_is_causal():
    task = get_numeric_task("MultiObject", max_count=6)
    model = build_model(ModelConfig(kind="transformer", vocab_size=task.vocab_size, d_model=8), seed=0).eval()
    tok = torch.as_tensor(make_sequences(task, 4, seed=0).tokens[:, :-1])
    pos = torch.tensor([2, 3, 4, 5])
    v = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)) * 3
    with torch.no_grad():
        plain, _ = model.run_with_cache(tok, teacher_force=True)
        patched, cache = model.run_with_cache(tok, patch=Patch("blocks.0.hook_resid_post", pos,
                                                                 lambda h: v), teacher_force=True)
    for r, p in enumerate(pos.tolist()):
        assert torch.allclose(patched[r, :p], plain[r, :p], atol=1e-6)
        assert not torch.allclose(patched[r, p:], plain[r, p:])
    with pytest.raises(ValueError, match="unknown hook"):
        model(tok, patch=Patch("hook_h", pos, lambda h: h))


# --- a real search on a small trained model ---------------------------------------------------------------------

SMALL = training.TrainConfig(task="MultiObject", max_count=6, d_model=16, max_epochs=60, eval_every=5,
                             target_accuracy=0.98, n_train=500, n_valid=300, lr=3e-3)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("das-runs")
    rec = training.run(SMALL, run_dir, progress=False)
    return run_dir, rec


def test_small_gru_learns_to_count(small_run):
    run_dir, rec = small_run
    assert rec.success, rec.message
    assert rec.metrics["valid_accuracy"] >= SMALL.target_accuracy
    model = training.load(SMALL, run_dir)
    data = make_sequences(SMALL.numeric_task, 200, seed=99)
    assert training.sequence_accuracy(model, data) >= 0.9
    again = training.run(SMALL, run_dir, progress=False)
    assert again.key == rec.key and again.created == rec.created      # reused, not retrained


def test_skipping_the_prefix_changes_nothing(small_run):
    run_dir, _ = small_run
    model = training.load(SMALL, run_dir).requires_grad_(False)
    cfg = das.DASConfig(intervention=Intervention(subspace_dim=4), n_train_pairs=50, n_valid_pairs=200,
                        n_test_pairs=50)
    _, valid, _ = das.pairs_for(SMALL, cfg)
    inter = Interchange(cfg.intervention, 16, seed=0)
    h_src = das.source_states(model, valid, "hook_h")
    fast, full = das.prepare(model, valid), das.prepare(model, valid, skip_prefix=False)
    with torch.no_grad():
        a = das.intervened_logits(model, inter, fast, h_src, 0, 0, False)
        b = das.intervened_logits(model, inter, full, h_src, 0, 0, False)
    for r in range(len(valid)):
        ti, n = int(valid.trg_pos[r]), int(fast.lengths[r])
        assert torch.allclose(a[r, :n], b[r, ti:ti + n], atol=1e-5)
    assert das.evaluate(model, inter, fast, h_src)["iia"] == das.evaluate(model, inter, full, h_src)["iia"]


def test_das_finds_the_count(small_run):
    """A learned rotation makes interchanges work far better than the random one it starts from."""
    run_dir, _ = small_run
    cfg = das.DASConfig(intervention=Intervention(subspace_dim=8), n_train_pairs=1000, n_valid_pairs=200,
                        n_test_pairs=300, max_steps=150, eval_every=50)
    rec = das.run(SMALL, cfg, run_dir, progress=False)
    m = rec.metrics
    assert m["n_test_pairs"] == 300 and m["curve"]["step"][0] == 0
    assert m["iia"] >= m["iia_step0"] + 0.3
    assert m["iia"] >= 0.75
    assert m["probe_accuracy"]["phase"] >= 0.95
    assert rec.config["das"]["intervention"]["subspace_dim"] == 8      # the declared intervention is kept


def test_transformer_free_run_equals_token_by_token_generation():
    task = get_numeric_task("MultiObject", max_count=6)
    model = build_model(ModelConfig(kind="transformer", vocab_size=task.vocab_size, d_model=8), seed=1).eval()
    data = make_sequences(task, 16, seed=3)
    tok = torch.as_tensor(data.tokens[:, :-1])
    free = torch.as_tensor(data.tmask[:, :-1])
    with torch.no_grad():
        fast = model(tok, free).argmax(-1)
        seq = tok.clone()
        for t in range(tok.shape[1] - 1):          # one token at a time, as generation is defined
            pred = model(seq[:, :t + 1], teacher_force=True)[:, -1].argmax(-1)
            seq[:, t + 1] = torch.where(free[:, t + 1], pred, seq[:, t + 1])
        slow = model(seq, teacher_force=True).argmax(-1)
    assert torch.equal(fast, slow)


def test_searches_that_differ_only_in_budget_get_their_own_folders():
    cfg = das.DASConfig(intervention=Intervention(subspace_dim=8))
    same = das.run_name([SMALL], das.DASConfig(intervention=Intervention(subspace_dim=8)))
    assert das.run_name([SMALL], cfg) == same
    assert das.run_name([SMALL], das.DASConfig(intervention=Intervention(subspace_dim=8), max_steps=7)) != same
    assert das.run_name([SMALL, SMALL], cfg).startswith("mas-")
