"""Discrete states: integer lattices of any hidden size from every time step, minimized state machines,
the description-length choice between them, and the states.npz contract the regress stage reads."""

import numpy as np
import pytest
import torch

from mips import extract as E
from mips.artifacts import StageRun, load_record
from mips.data import dataset_for
from mips.models import RNN, RNNConfig, save_model
from mips.simplify import hidden_states
from mips.tasks import get_task

CFG = E.ExtractConfig(n_rows=2000, cluster_sample=1000)


def set_layer(layer, weight, bias) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(np.asarray(weight, dtype=np.float64)))
        layer.bias.copy_(torch.as_tensor(np.asarray(bias, dtype=np.float64)))


def linear_rnn(W_hh, W_x, W_y) -> RNN:
    H, n_in = np.shape(W_x)
    model = RNN(RNNConfig(n_in, np.shape(W_y)[0], H)).double()
    set_layer(model.hidden_mlp.layers[0], np.hstack([W_hh, W_x]), np.zeros(H))
    set_layer(model.output_mlp.layers[0], W_y, np.zeros(np.shape(W_y)[0]))
    return model.eval()


def sum_all_rnn(H: int = 3, seed: int = 0) -> RNN:
    """The counter c_t = c_{t-1} + x_t, y = c, hidden in a random basis of R^H (other modes decay)."""
    P = np.random.default_rng(seed).normal(size=(H, H))
    base = np.diag([1.0, 0.5] + [0.0] * (H - 2))
    e0 = np.eye(H)[:, :1]
    return linear_rnn(P @ base @ np.linalg.inv(P), P @ e0, e0.T @ np.linalg.inv(P))


def parity_rnn() -> RNN:
    """A ReLU network for Parity_All: h = (p, 1-p) after the first step, h_0 = (0, 0), y = p."""
    model = RNN(RNNConfig(1, 1, 2, hidden_depth=2, hidden_width=2)).double()
    set_layer(model.hidden_mlp.layers[0], [[1, 0, -1], [-1, 0, 1]], [0, 0])     # relu(p - x), relu(x - p)
    set_layer(model.hidden_mlp.layers[1], [[1, 1], [-1, -1]], [0, 1])          # p' = |p - x|, 1 - p'
    set_layer(model.output_mlp.layers[0], [[1, 0]], [0])
    return model.eval()


def read(model: RNN, x: np.ndarray) -> E.Extraction:
    states = hidden_states(model, x)
    return E.extract_states(states, x, E.state_outputs(model, states), CFG)


def test_integer_row_basis_spans_the_same_lattice():
    rows = np.array([[4, 0], [0, 6], [2, 3], [6, 9]])
    basis = E.integer_row_basis(rows)
    assert basis.shape == (2, 2) and abs(round(np.linalg.det(basis))) == 12  # <(2,3), (4,0)>: (0,6) = 2(2,3) - (4,0)
    coef = np.linalg.solve(basis.T.astype(float), rows.T.astype(float))
    np.testing.assert_allclose(coef, np.round(coef), atol=1e-9)                # every row is in it


def test_lll_finds_the_short_basis():
    B = np.array([[1.0, 0.0], [37.0, 1.0]]) @ np.array([[2.0, 0.3], [0.1, 1.5]])
    R = E.lll_reduce(B)
    assert np.linalg.norm(R, axis=1).max() < 2.1
    assert abs(abs(np.linalg.det(R)) - abs(np.linalg.det(B))) < 1e-9


def test_sum_all_in_a_random_three_dim_basis_is_a_one_dim_lattice_of_prefix_sums():
    x = np.random.default_rng(1).integers(0, 100, (2000, 10, 1))
    ex = read(sum_all_rnn(3), x)
    assert ex.kind == "lattice" and ex.success
    assert ex.metrics["k"] == 1 and ex.metrics["rounding_error"] < 1e-6
    prefix = np.concatenate([np.zeros((2000, 1)), np.cumsum(x[..., 0], axis=1)], axis=1)
    sign = np.sign(ex.z[0, -1, 0])
    np.testing.assert_array_equal(ex.z[..., 0], sign * prefix)                 # z_t = ± prefix sum, z_0 = 0
    assert ex.metrics["description_length_fsm"] is None                         # ~1000 states: no machine


def test_a_twelve_dim_lattice_is_found():
    """A delay line holding the last 12 inputs, in a random basis: past the original's limit of H = 10."""
    H, T = 12, 14
    rng = np.random.default_rng(3)
    P = rng.normal(size=(H, H))
    model = linear_rnn(P @ np.eye(H, k=-1) @ np.linalg.inv(P), P @ np.eye(H)[:, :1],
                       np.eye(H)[-1:] @ np.linalg.inv(P))
    x = rng.integers(0, 10, (1500, T, 1))
    lat = E.IntegerLattice().fit(hidden_states(model, x))
    assert lat.success_ and lat.basis_.shape == (H, H)
    z = lat.transform(hidden_states(model, x))
    assert np.abs(z - np.round(z)).max() < 1e-6
    # the codes are the true delays (x_t, x_{t-1}, ...) up to a unimodular integer change of basis
    true = np.zeros((1500, T + 1, H))
    for t in range(1, T + 1):
        for j in range(min(t, H)):
            true[:, t, j] = x[:, t - 1 - j, 0]
    U, *_ = np.linalg.lstsq(true.reshape(-1, H), z.reshape(-1, H), rcond=None)
    np.testing.assert_allclose(U, np.round(U), atol=1e-6)
    assert abs(round(np.linalg.det(np.round(U)))) == 1


def test_parity_network_is_a_two_state_machine_with_parity_transitions():
    x = np.random.default_rng(2).integers(0, 2, (2000, 10, 1))
    ex = read(parity_rnn(), x)
    assert ex.kind == "fsm" and ex.success and ex.metrics["n_states"] == 2
    fsm = ex.machine
    assert fsm.labels_[0, 0] == 0 and (ex.z[:, 0, 0] == 0).all()                 # h_0 is state 0
    sym = {int(s[0]): i for i, s in enumerate(fsm.symbols_)}
    for state in (0, 1):
        assert fsm.outputs_[state, 0] == state                                   # state = parity = output
        for bit in (0, 1):
            assert fsm.transitions_[state, sym[bit]] == state ^ bit
    parity = np.concatenate([np.zeros((2000, 1)), np.cumsum(x[..., 0], axis=1) % 2], axis=1)
    np.testing.assert_array_equal(ex.z[..., 0], parity)


def test_description_length_prefers_the_lattice_for_sums_and_the_machine_for_parity():
    x = np.random.default_rng(2).integers(0, 2, (2000, 10, 1))
    parity = read(parity_rnn(), x).metrics
    # the three points (0,0), (1,0), (0,1) also form a 2-d lattice; the 2-state machine is shorter
    assert parity["lattice_consistent"] and parity["k_lattice"] == 2 and parity["k"] == 1
    assert parity["description_length_fsm"] < parity["description_length_lattice"]
    # a small-alphabet counter has few states, so both readings exist; the lattice (affine update) wins
    xs = np.random.default_rng(4).integers(0, 3, (2000, 10, 1))
    sums = read(sum_all_rnn(2), xs)
    assert sums.metrics["description_length_fsm"] is not None
    assert sums.kind == "lattice"
    assert sums.metrics["description_length_lattice"] < sums.metrics["description_length_fsm"]


def test_minimize_moore_merges_equivalent_states():
    # states 0 and 2 behave the same (output 0, go to 1 / 3 which behave the same), as do 1 and 3
    transitions = np.array([[0, 1], [1, 2], [2, 3], [3, 0]])
    outputs = np.array([[0], [1], [0], [1]])
    block = E.minimize_moore(transitions, outputs)
    assert block[0] == block[2] and block[1] == block[3] and block[0] != block[1]


def test_states_off_any_lattice_give_a_clear_failure():
    rng = np.random.default_rng(5)
    states = np.concatenate([np.zeros((300, 1, 2)), rng.normal(size=(300, 4, 2))], axis=1)
    x = rng.integers(0, 2, (300, 4, 1))
    outputs = (states[..., :1] > 0).astype(np.int64)       # an output that depends on the (random) state
    ex = E.extract_states(states, x, outputs, CFG)
    assert not ex.lattice.success_ and ex.lattice.message_
    assert not ex.machine.success_                           # 1,201 distinct states, no deterministic clusters
    assert not ex.success and "neither reading" in ex.message and ex.z.shape == (300, 5, 0)


@pytest.mark.parametrize("net, kind", [("parity", "fsm"), ("sum", "lattice")])
def test_stage_writes_the_states_contract(net, kind, tmp_path, monkeypatch):
    monkeypatch.setenv("MIPS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(E.ExtractConfig, "for_preset", classmethod(lambda cls, preset: CFG))
    task = get_task("Parity_All" if net == "parity" else "Sum_All")
    model = (parity_rnn() if net == "parity" else sum_all_rnn(3)).float()
    for stage in ("search", "simplify"):                      # the records the upstream stages would write
        run = StageRun(task.id, stage, {"test": True}, run_dir=tmp_path)
        save_model(model, run.path("model.pt"))
        run.finish({}, success=True)
    rec = E.run(task, "smoke", tmp_path)
    assert rec.success and rec.metrics["kind"] == kind and rec.metrics["n_rows"] == CFG.n_rows
    for key in ("k", "n_states", "rounding_error", "description_length_lattice", "description_length_fsm"):
        assert key in rec.metrics
    f = np.load(tmp_path / task.id / "extract" / "states.npz")
    ds = dataset_for(task, "smoke")
    n, T, H = CFG.n_rows, task.seq_len, model.config.hidden_dim
    assert f["x"].shape == (n, T, 1) and f["y"].shape == (n, T, 1) and f["z"].shape[:2] == (n, T + 1)
    assert all(f[k].dtype == np.int64 for k in ("x", "y", "z", "y_net_test"))
    assert str(f["kind"]) == kind and (f["z"][:, 0] == 0).all()
    np.testing.assert_array_equal(f["y_net_test"], ds.y_test)                  # the network is exact
    if kind == "lattice":
        assert f["basis"].shape == (1, H) and f["offset"].shape == (H,) and f["centers"].size == 0
        recon = f["z"] @ f["basis"] + f["offset"]
        np.testing.assert_allclose(recon, hidden_states(model, f["x"]), rtol=1e-4, atol=1e-3)  # float32 net
    else:
        assert f["basis"].size == 0 and f["offset"].size == 0 and f["centers"].shape == (2, H)
    assert load_record(task.id, "extract", tmp_path).key == rec.key


def test_stage_skips_when_simplify_failed(tmp_path):
    task = get_task("Parity_All")
    for stage, ok in (("search", True), ("simplify", False)):
        StageRun(task.id, stage, {"test": True}, run_dir=tmp_path).finish({}, success=ok, message="imperfect")
    rec = E.run(task, "smoke", tmp_path)
    assert not rec.success and "skipped" in rec.message


def test_behavioural_grouping_reads_a_machine_when_geometry_cannot():
    """Noisy states of a 'last input' network: the clusters touch, but what the network does is exact."""
    rng = np.random.default_rng(6)
    x = rng.integers(0, 3, (1500, 8, 1))
    # the state remembers the last input as its position on a line, plus a "noise" that is a deterministic
    # function of the history (a hash c_t of the inputs) and larger than the gap: the points of value v
    # spread over [v, v + 1.6], so single linkage chains all three values together
    states, c = np.zeros((1500, 9, 1)), np.zeros((1500, 1), dtype=np.int64)
    for t in range(8):
        c = (3 * c + x[:, t] + 1) % 1009
        states[:, t + 1] = x[:, t] + 1.6 * np.modf(c * 0.6180339887)[0]
    outputs = np.concatenate([np.zeros((1500, 1, 1)), x], axis=1).astype(np.int64)
    fsm = E.StateMachine(max_states=16).fit(states, x, outputs)
    assert fsm.success_ and fsm.method_ == "behavioural"
    assert len(fsm.centers_) == 3                             # h_0 behaves as "last input 0" and merges
    for s, out in enumerate(fsm.outputs_[:, 0]):
        for i, sym in enumerate(fsm.symbols_[:, 0]):
            assert fsm.outputs_[fsm.transitions_[s, i], 0] == sym      # next state's output = the input
        assert (fsm.labels_[outputs[..., 0] == out] == s).all()


def test_behavioural_grouping_splits_only_on_conflicts():
    # distinct states 0..3, outputs 0, 0, 1, 1; on input 0, states 0 and 1 go to different output groups
    triples = np.array([[0, 0, 2], [1, 0, 0], [2, 0, 2], [3, 1, 3]])
    pairs = np.array([[0, 0], [1, 0], [2, 1], [3, 1]])
    block = E.behavioural_partition(triples, pairs, 4, 2, max_states=8)
    assert block[0] != block[1] and block[2] == block[3]
    assert E.behavioural_partition(triples, pairs, 4, 2, max_states=2) is None   # needs three groups


def test_state_merging_fills_holes_from_similar_states():
    # two half-seen copies of the parity machine: one copy saw only input 0, the other only input 1
    transitions = np.array([[0, -1], [1, -1], [-1, 3], [-1, 2]])
    outputs = np.array([0, 1, 0, 1])
    start = E.minimize_moore(transitions, outputs[:, None])
    assert start.max() == 3                                          # unseen kept apart: nothing merges
    block = E.merge_states(transitions, outputs, start)
    assert block[0] == block[2] and block[1] == block[3] and block[0] != block[1]
    # a conflict on a seen transition forbids the merge
    conflicting = np.array([[0, 1], [1, 0], [2, 2], [3, 3]])
    assert E.merge_states(conflicting, outputs, E.minimize_moore(conflicting, outputs[:, None])).max() == 3


def test_many_distinct_states_are_clustered_on_a_grid():
    """Parity states with a small history-dependent wobble: thousands of distinct points, two clusters."""
    rng = np.random.default_rng(7)
    x = rng.integers(0, 2, (1000, 10, 1))
    parity = np.concatenate([np.zeros((1000, 1)), np.cumsum(x[..., 0], axis=1) % 2], axis=1)
    code = np.cumsum(x[..., 0] * (1 + np.arange(10)), axis=1)                # differs between histories
    wobble = np.concatenate([np.zeros((1000, 1)), 0.01 * np.sin(code)], axis=1)
    states = np.stack([parity + wobble, 1 - parity - wobble], axis=-1)
    states[:, 0] = 0.0
    outputs = parity[..., None].astype(np.int64)
    fsm = E.StateMachine(cluster_sample=50).fit(states, x, outputs)         # 50 < distinct states
    assert fsm.success_ and fsm.method_ == "geometric" and len(fsm.centers_) == 2
    np.testing.assert_array_equal(fsm.labels_, parity)


def test_four_symbol_counts_in_three_dims_are_read_as_counts():
    """A majority vote over 4 symbols kept in 3 dimensions as Σ u(x_s) with real u's: the states are a
    dense projection of the count lattice (no lattice of h fits them exactly), but they are an exact
    linear image of the symbol counts, and that is the reading chosen: z = how often each symbol came."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 4, size=(1500, 10, 1))
    counts = np.zeros((1500, 11, 4), np.int64)
    counts[:, 1:] = np.cumsum(np.eye(4, dtype=np.int64)[x[..., 0]], axis=1)
    U = np.array([[-0.29, -0.17, 1.19], [1.28, 0.32, -0.24], [-0.67, 1.36, -0.58], [-0.31, -1.18, -1.0]])
    states = counts @ U
    outputs = counts.argmax(-1)[..., None]
    ex = E.extract_states(states, x, outputs, CFG)
    assert ex.success and ex.kind == "lattice" and ex.metrics["lattice_reading"] == "symbol counts"
    assert np.array_equal(ex.z, counts) and np.allclose(ex.lattice.basis_, U)
    assert ex.metrics["max_rounding_error"] == 0.0
    noisy = states.copy()
    noisy[:, 1:] += rng.normal(0, 0.05, noisy[:, 1:].shape)              # not a sum of per-symbol vectors
    assert E.SymbolCounts().fit(noisy, x[..., 0], 4).message_ == "the states are not a sum of per-symbol vectors"
