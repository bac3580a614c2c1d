"""Hammering: every basis change keeps the network's function, the Jordan form is the textbook one,
quantization touches only near-integers, retraining keeps frozen zeros at zero, and the stage turns a
network trained here into an exact integer one."""

import json

import numpy as np
import pytest
import torch

from mips import simplify as S
from mips.artifacts import StageRun
from mips.data import dataset_for
from mips.models import RNN, RNNConfig, load_model, save_model
from mips.tasks import get_task

LINEAR = RNNConfig(input_dim=2, output_dim=1, hidden_dim=4)
NONLINEAR = RNNConfig(input_dim=2, output_dim=2, hidden_dim=4, hidden_depth=2, hidden_width=6,
                      output_depth=2, output_width=5)


def random_rnn(config: RNNConfig, seed: int = 0) -> RNN:
    torch.manual_seed(seed)
    return RNN(config).double().eval()


def inputs(config: RNNConfig, seed: int = 1) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).integers(-3, 4, (64, 8, config.input_dim))).double()


def set_layer(layer, weight, bias) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(np.asarray(weight, dtype=np.float64)))
        layer.bias.copy_(torch.as_tensor(np.asarray(bias, dtype=np.float64)))


def assert_same_function(a: RNN, b: RNN, x: torch.Tensor, atol: float = 1e-4) -> None:
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert torch.allclose(ya, yb, atol=atol, rtol=1e-6), float((ya - yb).abs().max())


@pytest.mark.parametrize("config", [LINEAR, NONLINEAR], ids=["linear", "relu-depth2"])
def test_change_of_hidden_basis_keeps_the_function(config):
    model, x = random_rnn(config), inputs(config)
    M = np.random.default_rng(2).normal(size=(4, 4)) + 2 * np.eye(4)
    new = S.change_hidden_basis(model, M)
    assert_same_function(model, new, x)
    h_old = S.hidden_states(model, x)
    h_new = S.hidden_states(new, x)
    np.testing.assert_allclose(h_new, h_old @ M.T, atol=1e-8)       # the state really is M h


@pytest.mark.parametrize("config", [LINEAR, NONLINEAR], ids=["linear", "relu-depth2"])
def test_whitening_keeps_the_function_and_whitens(config):
    model, x = random_rnn(config), inputs(config)
    new, info = S.whiten(model, S.hidden_states(model, x)[:, 1:], eps=1e-6)
    assert_same_function(model, new, x)
    h = S.hidden_states(new, x)[:, 1:].reshape(-1, 4)
    np.testing.assert_allclose(h.T @ h / len(h), np.eye(4), atol=1e-8)   # uncentered second moment = I


def spring_like_rnn() -> RNN:
    """A linear RNN whose recurrence is a 60° rotation pair (Newton_Spring's) and a Jordan block, in a random
    basis, with random input and output weights."""
    J = np.zeros((4, 4))
    J[:2, :2] = [[0.5, np.sqrt(3) / 2], [-np.sqrt(3) / 2, 0.5]]
    J[2:, 2:] = [[1.0, 1.0], [0.0, 1.0]]
    rng = np.random.default_rng(4)
    P = rng.normal(size=(4, 4))
    model = random_rnn(LINEAR)
    set_layer(model.hidden_mlp.layers[0], np.hstack([P @ J @ np.linalg.inv(P), rng.normal(size=(4, 2))]),
              rng.normal(size=4))
    return model


@pytest.mark.parametrize("form", ["companion", "rotation"])
def test_jordan_and_toeplitz_keep_the_function_of_a_linear_rnn(form):
    model, x = spring_like_rnn(), inputs(LINEAR)
    jnf, info = S.jordan_normalize(model)
    assert_same_function(model, jnf, x)
    assert info["jordan_deviation"] < 1e-8 and info["form"] == "J2(1.00) ⊕ R(0.50±0.87i)"
    blocks = [S.JordanBlock(b["start"], b["size"], b["kind"], complex(*b["eigenvalue"])) for b in info["blocks"]]
    toe, _ = S.toeplitz_normalize(jnf, blocks, complex_form=form)
    assert_same_function(model, toe, x)
    W, X = S.recurrent_matrix(toe), S.input_matrix(toe)
    np.testing.assert_allclose(W[:2, :2], [[1, 1], [0, 1]], atol=1e-8)        # still a Jordan block...
    col = np.argmax(np.abs(X[1]))
    np.testing.assert_allclose(X[:2, col], [0, 1], atol=1e-8)                  # ...driven through e_last
    rotation = [[0.5, np.sqrt(3) / 2], [-np.sqrt(3) / 2, 0.5]]
    expected = [[0, -1], [1, 1]] if form == "companion" else rotation          # companion: [[0, -det], [1, tr]]
    np.testing.assert_allclose(W[2:, 2:], expected, atol=1e-8)
    col = np.argmax(np.linalg.norm(X[2:], axis=0))
    np.testing.assert_allclose(X[2:, col], [1, 0], atol=1e-8)                  # and the pair through e_1


def test_jordan_form_is_skipped_for_a_nonlinear_update():
    new, info = S.jordan_normalize(random_rnn(NONLINEAR))
    assert new is None and "depth 2" in info["skipped"]


@pytest.mark.parametrize("config", [LINEAR, NONLINEAR], ids=["linear", "relu-depth2"])
def test_debias_moves_unread_bias_into_the_output_and_keeps_the_function(config):
    model, x = random_rnn(config), inputs(config)
    with torch.no_grad():                      # hidden coordinate 3 is written (with a bias) but never read
        model.hidden_mlp.layers[0].weight[:, 3] = 0.0
        model.hidden_mlp.layers[-1].bias[3] = 2.5
    new, info = S.debias(model, eps=1e-9)
    assert info["null_dim"] == 1
    assert_same_function(model, new, x)
    assert abs(new.hidden_mlp.layers[-1].bias.detach()[3]) < 1e-12


def test_jordan_basis_of_a_rotation_pair_and_a_jordan_block():
    J = np.zeros((5, 5))
    J[:2, :2] = [[1.0, 1.0], [0.0, 1.0]]                   # a Jordan block (a double integrator)
    J[2:4, 2:4] = [[0.5, 0.8], [-0.8, 0.5]]                # a rotation-like complex pair 0.5 ± 0.8i
    J[4, 4] = 0.2
    P = np.random.default_rng(0).normal(size=(5, 5))
    W = P @ J @ np.linalg.inv(P)
    T, blocks, dev = S.jordan_basis(W)
    assert [(b.kind, b.size) for b in blocks] == [("real", 2), ("complex", 2), ("real", 1)]
    np.testing.assert_allclose(np.linalg.solve(T, W @ T), J, atol=1e-8)
    assert dev < 1e-8


def test_jordan_basis_of_a_noisy_shift_register_is_one_block():
    shift = np.eye(4, k=1)                                 # Prev4-like delay line, nilpotent
    rng = np.random.default_rng(1)
    P = rng.normal(size=(4, 4))
    W = P @ shift @ np.linalg.inv(P) + 1e-5 * rng.normal(size=(4, 4))
    T, blocks, dev = S.jordan_basis(W)
    assert [(b.kind, b.size) for b in blocks] == [("real", 4)]
    assert dev < 1e-2


def test_quantization_rounds_only_near_integers():
    model = RNN(RNNConfig(1, 1, 2)).double()
    set_layer(model.hidden_mlp.layers[0], [[0.996, -2.004, 1.5], [0.02, 3.0101, -0.0099]], [4.0, 0.3])
    set_layer(model.output_mlp.layers[0], [[1.009, 0.5]], [-1.011])
    new, info = S.quantize(model, tol=0.01)
    np.testing.assert_array_equal(new.hidden_mlp.layers[0].weight.detach().numpy(),
                                  [[1.0, -2.0, 1.5], [0.02, 3.0101, 0.0]])
    np.testing.assert_array_equal(new.output_mlp.layers[0].weight.detach().numpy(), [[1.0, 0.5]])
    assert new.output_mlp.layers[0].bias.item() == pytest.approx(-1.011)
    assert info["rounded"] == 4


def test_network_metrics_count_what_the_paper_counts():
    model = RNN(RNNConfig(1, 1, 3)).double()
    # coordinate 0 counts (written and read), 1 is written but never read, 2 is never written
    set_layer(model.hidden_mlp.layers[0], [[1, 0, 0, 1], [0.5, 0, 0, 2], [0, 0, 0, 0]], [0, 0, 0])
    set_layer(model.output_mlp.layers[0], [[1, 0, 0.3]], [0])
    m = S.network_metrics(model)
    assert m["effective_hidden_dim"] == 1 and m["neurons"] == 1
    assert m["weights_nonzero"] == 6 and m["weights_integer"] == 4 and m["biases_nonzero"] == 0


# ---------------------------------------------------------------------------------------------------------
# On real data: a Sum_All network trained here with plain torch

SMALL = S.SimplifyConfig(l1_eps=(1e-3, 1e-2), l1_steps=100, retrain_steps=50, batch_size=256,
                         eval_rows=2048, eval_every=25, state_rows=2048)


@pytest.fixture(scope="module")
def sum_all_trained(tmp_path_factory):
    """A linear H=1 RNN trained on Sum_All until it is exact on the whole (smoke) test split."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MIPS_CACHE", str(tmp_path_factory.mktemp("cache")))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # tiny networks: one thread is faster, and the machine is shared
    task = get_task("Sum_All")
    ds = dataset_for(task, "smoke")
    torch.manual_seed(0)
    model = RNN(RNNConfig(1, 1, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x, y = torch.as_tensor(ds.x_train).float(), torch.as_tensor(ds.y_train).float()
    gen = torch.Generator().manual_seed(0)
    for step in range(4000):
        idx = torch.randint(len(x), (128,), generator=gen)
        loss = S.task_loss(model(x[idx]), y[idx], "log")
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 99 and S.test_accuracy(model, ds) == 1.0:
            break
    assert S.test_accuracy(model, ds) == 1.0
    yield task, ds, model.eval()
    torch.set_num_threads(threads)
    mp.undo()


def test_retraining_keeps_frozen_zeros_at_zero(sum_all_trained):
    _, ds, _ = sum_all_trained
    model = random_rnn(RNNConfig(1, 1, 3), seed=3).float()
    with torch.no_grad():
        model.hidden_mlp.layers[0].weight[0, 1:3] = 0.0
        model.output_mlp.layers[0].weight[0, 2] = 0.0
    frozen = {n: p.detach() == 0 for n, p in model.named_parameters()}
    new, _ = S.finetune(model, ds, steps=30, lr=1e-2, cfg=SMALL, frozen=frozen, min_accuracy=0.0)
    for name, p in new.named_parameters():
        assert (p[frozen[name]] == 0).all(), name
    moved = [(p - q).abs().max().item() for p, q in zip(new.parameters(), model.parameters(), strict=True)]
    assert max(moved) > 1e-3                                 # the others did train


def test_simplify_makes_a_trained_sum_all_network_exact(sum_all_trained):
    task, ds, model = sum_all_trained
    result = S.simplify(model, ds, SMALL)
    assert result.before["test_accuracy"] == 1.0 and result.after["test_accuracy"] == 1.0
    w = {n: p.detach().numpy() for n, p in result.model.named_parameters()}
    # h_t = h_{t-1} + x_t, y = h: the weights are the integers of a counter, up to the counter's sign
    assert abs(w["hidden_mlp.layers.0.weight"][0, 0]) == 1.0 and w["hidden_mlp.layers.0.weight"][0, 1] == 1.0
    assert abs(w["output_mlp.layers.0.weight"][0, 0]) == 1.0
    assert result.after["weights_integer"] == 3 > result.before["weights_integer"]
    assert [s.status for s in result.steps][:2] == ["applied", "applied"]        # whiten, jnf
    exact = [s for s in result.steps if s.name in ("whiten", "jnf", "toeplitz") and s.status == "applied"]
    assert all(s.max_output_change < 1e-2 for s in exact)                     # basis changes: same outputs


def test_stage_writes_model_and_before_after(sum_all_trained, tmp_path, monkeypatch):
    task, ds, model = sum_all_trained
    monkeypatch.setattr(S.SimplifyConfig, "for_preset", classmethod(lambda cls, preset: SMALL))
    search = StageRun(task.id, "search", {"test": True}, run_dir=tmp_path)
    save_model(model, search.path("model.pt"))
    search.finish({"hidden_dim": 1}, success=True)
    rec = S.run(task, "smoke", tmp_path)
    assert rec.success and rec.metrics["test_accuracy_after"] == 1.0
    assert rec.metrics["effective_hidden_dim_after"] == 1
    folder = tmp_path / task.id / "simplify"
    report = json.loads((folder / "before_after.json").read_text())
    names = [s["name"] for s in report["normalizers"]]
    assert names[:5] == ["whiten", "jnf", "toeplitz", "debias", "quantize"]
    assert names[-3:] == ["snap", "integer_recurrence", "prune"]
    assert report["l1_curve"][0]["eps"] == SMALL.l1_eps[0]
    simplified = load_model(folder / "model.pt")
    assert S.test_accuracy(simplified, ds) == 1.0
    assert S.run(task, "smoke", tmp_path).key == rec.key                        # cached, not recomputed


def test_snapping_rounds_coupled_weights_together_and_keeps_only_what_the_check_accepts():
    # a double integrator (Newton_Freebody's) with slightly-off weights: only jointly do they round exactly
    model = RNN(RNNConfig(1, 1, 2)).double()
    set_layer(model.hidden_mlp.layers[0], [[1.003, 0.0, 0.98], [0.995, 1.002, 0.0]], [0.13, -0.02])
    set_layer(model.output_mlp.layers[0], [[0.0, 1.01]], [-0.2])
    x = torch.as_tensor(np.random.default_rng(0).integers(-10, 11, (256, 10, 1))).double()
    exact = RNN(RNNConfig(1, 1, 2)).double()
    set_layer(exact.hidden_mlp.layers[0], [[1, 0, 1], [1, 1, 0]], [0, 0])
    set_layer(exact.output_mlp.layers[0], [[0, 1]], [0])
    new, info = S.snap_to_integers(model, lambda m: torch.equal(torch.round(m(x)), torch.round(exact(x))))
    assert info["mode"] == "all at once (nearest)" and info["rounded"] == 8       # every non-integer parameter
    assert_same_function(new, exact, x, atol=0)
    # a check that refuses any rounding of the output bias keeps it and rounds the others one by one
    refuse = lambda m: abs(m.output_mlp.layers[0].bias.item() + 0.2) < 1e-9
    new, info = S.snap_to_integers(model, refuse)
    assert info["mode"] == "one at a time" and new.output_mlp.layers[0].bias.item() == pytest.approx(-0.2, abs=1e-12)
    assert new.output_mlp.layers[0].weight.detach()[0, 1] == 1.0
    assert new.hidden_mlp.layers[0].weight.detach()[0, 0] == 1.0


def test_pruning_zeroes_coordinates_that_never_reach_the_output():
    model = random_rnn(LINEAR)
    with torch.no_grad():   # coordinates 2 and 3 feed only each other; 0 and 1 feed the output
        W = model.hidden_mlp.layers[0].weight
        W[:2, 2:4] = 0.0
        model.output_mlp.layers[0].weight[:, 2:] = 0.0
    new, info = S.prune_dead_hidden(model)
    assert info["dead"] == [2, 3]
    x = inputs(LINEAR)
    assert_same_function(model, new, x, atol=1e-12)
    assert np.abs(S.hidden_states(new, x)[..., 2:]).max() == 0.0
    assert S.prune_dead_hidden(random_rnn(LINEAR))[0] is None              # nothing dead, nothing done


def test_snapping_zeroes_small_biases_that_only_cancel_together():
    # Sum_Last3 as a delay line whose offsets +0.5, -0.4 (twice) and -0.4 at the output cancel in the sum:
    # no single bias can be rounded alone, and the nearest integer of 0.5 is not the right one
    model = RNN(RNNConfig(1, 1, 3)).double()
    set_layer(model.hidden_mlp.layers[0], [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], [0.0, -0.39, 0.503])
    set_layer(model.output_mlp.layers[0], [[1, 1, 1]], [-0.41])
    x = torch.as_tensor(np.random.default_rng(0).integers(0, 100, (256, 10, 1))).double()
    target = torch.round(model(x))
    new, info = S.snap_to_integers(model, lambda m: torch.equal(torch.round(m(x)), target))
    assert info["mode"] == "all at once (biases to zero)"
    assert all(p.abs().sum() == 0 for n, p in new.named_parameters() if n.endswith("bias"))


def test_a_leaky_counter_gets_an_exact_integrator_back():
    """Majority_0_1 read by a one-hot, arg-max network whose counter leaks (h <- 0.99 h ± 1) is still
    perfect, since only the arg-max is checked, but its states are off any lattice. Rounding the recurrence
    to 1 and retraining the rest gives an exact counter of ones minus zeros, still perfect."""
    task = get_task("Majority_0_1")
    ds = dataset_for(task, "smoke")
    net = RNN(RNNConfig(1, 1, 1, input_alphabet=(0, 1), output_alphabet=(0, 1)))
    set_layer(net.hidden_mlp.layers[0], [[0.99, -1.0, 1.0]], [0.0])
    set_layer(net.output_mlp.layers[0], [[0.0], [1.0]], [0.0, -0.5])
    assert S.test_accuracy(net, ds) == 1.0
    cfg = S.SimplifyConfig.for_preset("smoke")
    fixed, info = S.retrain_integer_recurrence(net, ds, cfg, 1.0)
    assert info == {"rounded": 1} and fixed.hidden_mlp.layers[0].weight[0, 0].item() == 1.0
    assert S.test_accuracy(fixed, ds) == 1.0
    again, why = S.retrain_integer_recurrence(fixed, ds, cfg, 1.0)
    assert again is None and "integers already" in why["skipped"]
