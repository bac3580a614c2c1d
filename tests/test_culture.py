"""The culture chapter: quiz world, hooked GPT, training, the culture loop's filter, SAE metrics, universality."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from mips.culture import gpt, hooks, loop, sae, training, universality, world

torch.set_num_threads(1)

W6 = world.world_config(6, tasks=world.TASKS)
W10 = world.world_config(10, tasks=world.TASKS)
TINY = gpt.GPTConfig(n_ctx=W6.seq_len, d_model=16, n_layers=2, n_heads=2, d_mlp=32)


# ------------------------------------------------------------------------------------------------- world

@pytest.mark.parametrize("cfg", [W6, W10], ids=["6x6", "10x10"])
@pytest.mark.parametrize("task", list(world.TASKS))
def test_every_task_makes_valid_non_trivial_quizzes(cfg, task):
    q = world.make_quizzes(cfg, 12, seed=3, tasks=[task])
    assert q.grids.shape == (12, 4, cfg.height, cfg.width)
    assert q.grids.min() >= 0 and q.grids.max() < world.N_COLORS
    assert not world.trivial(q.grids).any()


def test_rules_do_what_they_say():
    rc = world.make_quizzes(W6, 20, seed=1, tasks=["replace_color"]).grids
    for x, fx in ((rc[:, 0], rc[:, 1]), (rc[:, 2], rc[:, 3])):
        for a, b in zip(x, fx, strict=True):
            changed = a != b
            assert len(np.unique(a[changed])) == 1 and len(np.unique(b[changed])) == 1   # one colour -> one colour
    fr = world.make_quizzes(W6, 20, seed=2, tasks=["frame"]).grids
    assert ((fr[:, 1] != fr[:, 0]) <= (fr[:, 1] == 0)).all()                  # frame only erases cells
    gr = world.make_quizzes(W6, 20, seed=4, tasks=["translate"]).grids
    assert ((gr[:, 0] > 0).sum((1, 2)) == (gr[:, 1] > 0).sum((1, 2))).all()    # a move keeps the area


def test_quizzes_are_seeded():
    a, b = world.make_quizzes(W6, 10, seed=5), world.make_quizzes(W6, 10, seed=5)
    assert (a.grids == b.grids).all() and (a.task == b.task).all()
    assert not (world.make_quizzes(W6, 10, seed=6).grids == a.grids).all()


def test_structures_round_trip_and_the_inverse_reverses_the_quiz():
    q = world.make_quizzes(W6, 16, seed=0)
    for name in world.STRUCTURES:
        tok = world.to_tokens(q.grids, name)
        assert tok.shape == (16, W6.seq_len)
        assert set(np.unique(tok[:, :: W6.part_len])) <= set(world.LABELS)
        assert (world.from_tokens(tok, W6) == q.grids).all()
    assert (world.invert(world.invert(q.grids)) == q.grids).all()
    inv = world.cells_only(world.to_tokens(q.grids, "inverse"), W6)
    assert (inv == world.cells_only(world.to_tokens(world.invert(q.grids), "forward"), W6)).all()
    fwd = world.to_tokens(q.grids, "forward")
    assert (fwd[:, world.answer_slice(W6)] == q.grids[:, 3].reshape(16, -1)).all()


def test_prompt_noise_touches_only_the_third_grid():
    q = world.make_quizzes(W6, 50, seed=0)
    tok = world.to_tokens(q.grids, "forward")
    noisy = world.add_prompt_noise(tok, W6, np.random.default_rng(0), noise=0.5)
    diff = (noisy != tok).any(0)
    assert diff[world.part_slice(W6, 2)].any()
    diff[world.part_slice(W6, 2)] = False
    assert not diff.any()


# --------------------------------------------------------------------------------------------------- gpt

def test_sinusoid_is_mygpts_formula():
    pe = gpt.sinusoid(10, 8, 1e5)
    t, j = 7, 5
    assert pe[t, j].item() == pytest.approx(np.sin(t / 1e5 ** ((j - 1) / 8) + np.pi / 2), abs=1e-6)


def test_the_model_is_causal_and_shifted_right():
    model = gpt.GPT(TINY, seed=0).eval()
    tok = torch.as_tensor(world.to_tokens(world.make_quizzes(W6, 2, 0).grids, "forward"))
    other = tok.clone()
    other[:, 50] = (other[:, 50] + 1) % 11
    with torch.no_grad():
        a, b = model(tok), model(other)
    assert torch.equal(a[:, :51], b[:, :51])          # logits at t never see token t or later
    assert not torch.allclose(a[:, 51:], b[:, 51:])


def test_hook_points_reproduce_the_forward_pass_and_ablation_changes_it():
    model = gpt.GPT(TINY, seed=1).eval()
    tok = torch.as_tensor(world.to_tokens(world.make_quizzes(W6, 4, 1).grids, "forward"))
    with torch.no_grad():
        clean = model(tok)
        logits, cache = model.run_with_cache(tok)
        replay = model.run_with_hooks(tok, [(n, lambda x, hook: cache[hook.name]) for n in cache])
        ablated = model.run_with_hooks(tok, [("blocks.0.hook_attn_out", hooks.Ablation("blocks.0.hook_attn_out").fn)])
    assert torch.equal(logits, clean) and torch.equal(replay, clean)
    assert torch.allclose(hooks.residual_logits(model, tok), clean, atol=1e-6)
    assert not torch.allclose(ablated, clean)
    assert cache["blocks.1.attn.hook_pattern"].shape == (4, 2, W6.seq_len, W6.seq_len)
    assert torch.allclose(cache["blocks.1.attn.hook_pattern"].sum(-1), torch.ones(4, 2, W6.seq_len))
    assert all(not hp.fns for hp in model.hook_dict.values())            # hooks removed after use
    with pytest.raises(KeyError, match="no hook point"):
        model.run_with_hooks(tok, [("blocks.9.hook_mlp_out", lambda x, hook: x)])


def test_hooks_are_removed_even_when_the_forward_pass_fails():
    model = gpt.GPT(TINY, seed=1).eval()

    def boom(x, hook):
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        model.run_with_hooks(torch.zeros(1, 10, dtype=torch.long), [("hook_embed", boom)])
    assert all(not hp.fns for hp in model.hook_dict.values())


def test_greedy_generation_agrees_with_teacher_forced_argmax():
    model = gpt.GPT(TINY, seed=2).eval()
    tok = torch.as_tensor(world.to_tokens(world.make_quizzes(W6, 3, 2).grids, "forward"))
    sl = world.answer_slice(W6)
    blank = tok.clone()
    blank[:, sl] = 0
    out = gpt.generate(model, blank, range(sl.start, sl.stop), temperature=0)
    with torch.no_grad():
        assert torch.equal(model(out).argmax(-1)[:, sl], out[:, sl])   # its own greedy answer is self-consistent


# ---------------------------------------------------------------------------------------------- training

def test_a_model_trained_a_few_hundred_steps_beats_chance(isolated):
    """150 steps of a 20k-parameter model (the full models train 3000 steps at 150k parameters)."""
    w = world.world_config(6, tasks=["replace_color"])
    cfg = training.TrainConfig(world=w, model=replace(TINY, d_model=32, d_mlp=64), seed=0, steps=150,
                               batch_size=16, lr=3e-3, eval_every=300, n_valid=32, checkpoint_every=10**6)
    model, _ = training.train_model(cfg, progress=False)
    test = world.make_quizzes(w, 100, seed=99)
    stats = training.answer_stats(model, world.to_tokens(test.grids, "forward"), w)
    untrained = training.answer_stats(gpt.GPT(cfg.model, seed=0), world.to_tokens(test.grids, "forward"), w)
    assert stats["cell"].mean() > 0.5 > 1 / world.N_COLORS                # far above chance per cell
    assert stats["ce"].mean() < 0.5 * untrained["ce"].mean()


def test_group_records_are_cached(isolated):
    group = training.group_config("smoke", n_models=1, steps=4)
    first = training.run_group(group, progress=False)
    again = training.run_group(group, progress=False)
    assert first[0].key == again[0].key and again[0].created == first[0].created
    acc = first[0].metrics["accuracy"]
    assert set(acc) == set(world.DIRECTIONS) and set(acc["forward"]["per_task"]) == set(group.world.tasks)
    models, _ = training.load_group(group, train_missing=False)
    assert isinstance(models[0], gpt.GPT)


def test_training_resumes_from_its_checkpoint(isolated):
    w = world.world_config(6, tasks=["detect"])
    cfg = training.TrainConfig(world=w, model=TINY, steps=6, batch_size=4, eval_every=3, n_valid=4,
                               checkpoint_every=3)
    full, _ = training.train_model(cfg, progress=False)
    # a run interrupted after its step-3 checkpoint resumes from it and ends with the same weights
    ckpt = training._checkpoint_path(cfg, None)
    assert not ckpt.exists()                           # a finished run leaves no checkpoint
    calls = {"n": 0}
    orig = training.quiz_loss

    def stop_after_four(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return orig(*a, **k)
    training.quiz_loss = stop_after_four
    try:
        with pytest.raises(KeyboardInterrupt):
            training.train_model(cfg, progress=False)
    finally:
        training.quiz_loss = orig
    assert ckpt.exists()
    resumed, hist = training.train_model(cfg, progress=False)
    assert hist["step"] == [3, 6]
    for p, q in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


# ------------------------------------------------------------------------------------------------- loop

def test_agreement_filter_accepts_and_rejects_constructed_cases():
    p = np.array([
        # q0: two succeed, one fails -> keep; q1: all succeed; q2: one undecided (0.7); q3: two fail;
        # q4: all fail; q5: exactly at the thresholds (0.95 succeeds, 0.5 fails) -> keep
        [0.99, 0.99, 0.99, 0.99, 0.1, 0.95],
        [0.97, 0.98, 0.70, 0.20, 0.1, 0.96],
        [0.01, 0.99, 0.01, 0.30, 0.1, 0.50],
    ])
    v = loop.agreement_filter(p, 0.95, 0.5, min_fail=1, max_fail=1)
    assert v.accepted.tolist() == [True, False, False, False, False, True]
    assert v.n_fail.tolist() == [1, 0, 1, 2, 3, 1]
    assert v.decided.tolist() == [True, True, False, True, True, True]
    five = loop.agreement_filter(p, 0.95, 0.5, min_fail=1, max_fail=2)
    assert five.accepted.tolist() == [True, False, False, True, False, True]


def test_generation_and_understanding_shapes():
    model = gpt.GPT(TINY, seed=3).eval()
    grids = loop.generate_quizzes(model, W6, 5, generator=torch.Generator().manual_seed(0))
    assert grids.shape == (5, 4, 6, 6) and grids.min() >= 0 and grids.max() <= 14
    p = loop.understanding([model, model], world.make_quizzes(W6, 4, 0).grids, W6, n_averaging=2)
    assert p.shape == (2, 4) and ((p >= 0) & (p <= 1)).all()
    assert np.allclose(p[0], p[1])                       # the same model, the same noise draws


# -------------------------------------------------------------------------------------------------- SAE

def test_sae_metrics_on_hand_checkable_cases():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 2.0], [0.0, 4.0]])
    f = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
    m = sae.reconstruction_metrics(x, x, f)
    assert m["explained_variance"] == pytest.approx(1.0) and m["cossim"] == pytest.approx(1.0)
    assert m["mse"] == 0 and m["l2_ratio"] == pytest.approx(1.0)
    assert m["l0"] == pytest.approx(1.25) and m["l1"] == pytest.approx(2.0)
    assert m["dead_fraction"] == pytest.approx(1 / 3)
    mean = x.mean(0, keepdim=True).expand_as(x)
    assert sae.reconstruction_metrics(x, mean, f)["explained_variance"] == pytest.approx(0.0, abs=1e-12)
    half = sae.reconstruction_metrics(x[:3], 0.5 * x[:3], f[:3])
    assert half["l2_ratio"] == pytest.approx(0.5) and half["relative_reconstruction_bias"] == pytest.approx(0.5)
    assert half["cossim"] == pytest.approx(1.0)
    # EV = 1 - sum|x - x_hat|^2 / sum|x - mean|^2; mean (1, 2), so sum|x - mean|^2 = 4 + 1 + 4 + 5 = 14
    shifted = x + torch.tensor([1.0, 0.0])
    assert sae.reconstruction_metrics(x, shifted, f)["explained_variance"] == pytest.approx(1 - 4 / 14)


def test_an_sae_learns_sparse_synthetic_features():
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(32, 16, generator=g)
    codes = torch.rand(6000, 32, generator=g) * (torch.rand(6000, 32, generator=g) < 0.08)
    acts = codes @ dirs
    s, _ = sae.train_sae(acts[:5000], sae.SAEConfig(expansion=4, l1_coefficient=1.0, steps=1500, batch_size=256))
    with torch.no_grad():
        m = sae.reconstruction_metrics(acts[5000:], s(acts[5000:]), s.encode(acts[5000:]))
    assert m["explained_variance"] > 0.8
    assert m["l0"] < 32


def test_splicing_an_exact_autoencoder_recovers_everything():
    model = gpt.GPT(TINY, seed=4).eval()
    ident = sae.SAE(16, 32)
    with torch.no_grad():            # latents = ReLU(x), ReLU(-x): decodes exactly
        ident.W_enc.copy_(torch.cat([torch.eye(16), -torch.eye(16)], 1))
        ident.W_dec.copy_(torch.cat([torch.eye(16), -torch.eye(16)], 0))
    tok = world.to_tokens(world.make_quizzes(W6, 8, 0).grids, "forward")
    out = sae.splice_metrics(model, ident, "blocks.1.hook_mlp_out", {"forward": tok}, W6)["forward"]
    assert out["ce_sae"] == pytest.approx(out["ce_clean"], abs=1e-5)
    assert out["ce_loss_score"] == pytest.approx(1.0, abs=1e-3)


# ------------------------------------------------------------------------------------------ universality

def test_max_correlation_of_a_model_with_itself_is_one_and_shuffled_is_low():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 20)) @ rng.normal(size=(20, 20))
    a[:, 3] = 1.0                                                   # a constant unit: no correlation
    best, arg = universality.max_correlation(a, a)
    ok = np.isfinite(best)
    assert np.allclose(best[ok], 1.0) and (arg[ok] == np.flatnonzero(ok)).all() and not ok[3]
    shuffled, _ = universality.max_correlation(a, a[rng.permutation(len(a))])
    assert np.nanmax(shuffled) < 0.1


def test_correlation_ratio():
    groups = np.array([0, 0, 1, 1])
    v = np.array([[1.0, 1.0], [1.0, 2.0], [3.0, 1.0], [3.0, 2.0]])
    assert universality.correlation_ratio(v, groups) == pytest.approx([1.0, 0.0])


def test_attention_offsets_find_a_planted_copy_head():
    model = gpt.GPT(TINY, seed=5).eval()
    S = W6.n_cells
    tok = world.to_tokens(world.make_quizzes(W6, 2, 0).grids, "forward")

    def plant(x, hook):          # layer 1, head 0 attends exactly S positions back
        pat = torch.zeros_like(x)
        q = torch.arange(S, x.shape[-1])
        pat[:, 0, q, q - S] = 1.0
        pat[:, 0, :S, 0] = 1.0
        return torch.where(torch.arange(x.shape[1])[None, :, None, None] == 0, pat, x)
    with model.hooks([("blocks.1.attn.hook_pattern", plant)]):
        by = hooks.attention_by_offset(model, tok, W6)
    assert hooks.previous_grid_heads(by, W6)[0][:2] == (1, 0)
    assert by[1, 0, S] == pytest.approx(1.0)
