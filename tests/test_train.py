"""Batched training: losses, accuracy, stack == separate networks, early stopping, the success criterion."""

import math

import numpy as np
import pytest
import torch

from mips.data import load_dataset
from mips.models import RNN, RNNConfig, accuracy, encode_inputs, head_loss, output_targets, predict
from mips.tasks import get_task
from mips.train import (
    Member,
    RNNStack,
    StackedAdamW,
    TrainConfig,
    TrainData,
    correct,
    elementwise_loss,
    evaluation_rows,
    init_network,
    train_one,
    train_stack,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sum_all():
    """A small Sum_All dataset (y_t = x_0 + ... + x_t, x_t in [0, 100)), generated, not cached."""
    return load_dataset(get_task("Sum_All"), size=3000, seed=7, cache=False)


def exact_sum_network() -> RNN:
    """The linear H=1 RNN h_t = h_{t-1} + x_t, y_t = h_t: exactly right on Sum_All."""
    net = RNN(RNNConfig(1, 1, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.hidden_mlp.layers[0].weight.fill_(1.0)
        net.output_mlp.layers[0].weight.fill_(1.0)
    return net


def test_losses_on_known_values():
    y_pred, y = torch.tensor([3.0, 0.0, -1.0]), torch.tensor([1.0, 0.0, 0.0])
    assert elementwise_loss(y_pred, y, "mse").tolist() == pytest.approx([2.0, 0.0, 0.5])
    assert elementwise_loss(y_pred, y, "log").tolist() == pytest.approx(
        [0.5 * math.log(5.0), 0.0, 0.5 * math.log(2.0)])
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]])      # (positions, classes)
    target = torch.tensor([[0], [1]])
    assert elementwise_loss(logits, target, "cross_entropy").tolist() == pytest.approx(
        [math.log(2.0), -math.log(0.75)])
    with pytest.raises(ValueError, match="unknown loss"):
        elementwise_loss(y_pred, y, "hinge")


def test_accuracy_rounds_and_takes_argmax():
    y_pred = torch.tensor([[[0.49], [0.51], [2.4], [-0.6]]])
    y = torch.tensor([[[0], [1], [2], [0]]])
    assert correct(y_pred, y.float(), "log").flatten().tolist() == [True, True, True, False]
    assert accuracy(y_pred, y) == 0.75
    logits = torch.tensor([[[0.1, 0.9, 0.0], [2.0, 1.0, 0.0]]])   # predicts classes 1, 0
    assert accuracy(logits, torch.tensor([[[1], [2]]]), "cross_entropy") == 0.5


def test_stack_matches_separately_trained_networks(sum_all):
    """M padded networks trained as one stack follow M separate torch AdamW runs step for step."""
    groups = [
        [RNNConfig(1, 1, 1), RNNConfig(1, 1, 3), RNNConfig(1, 1, 2)],
        [RNNConfig(1, 1, 3, 2, 4, 2, 5), RNNConfig(1, 1, 1, 2, 2, 2, 3), RNNConfig(1, 1, 2, 2, 6, 2, 2)],
    ]
    x_all = torch.as_tensor(sum_all.x_train).float() / 10       # scaled so ReLU nets stay well-behaved
    y_all = torch.as_tensor(sum_all.y_train).float() / 10
    for configs in groups:
        members = [Member(c, seed=s) for s, c in enumerate(configs)]
        stack = RNNStack(members)
        opt = StackedAdamW(stack.params, lr=1e-2)
        nets = [init_network(c, s) for s, c in enumerate(configs)]
        opts = [torch.optim.AdamW(n.parameters(), lr=1e-2, weight_decay=0.0) for n in nets]
        gen = torch.Generator().manual_seed(0)
        for _ in range(15):
            idx = torch.randint(len(x_all), (64,), generator=gen)
            x, y = x_all[idx], y_all[idx]
            member_loss = elementwise_loss(stack.forward(x), y.transpose(0, 1), "log").flatten(1).mean(1)
            for p in stack.params:
                p.grad = None
            member_loss.sum().backward()
            opt.step()
            for net, o in zip(nets, opts, strict=True):
                o.zero_grad()
                elementwise_loss(net(x), y, "log").mean().backward()
                o.step()
        for m, net in enumerate(nets):
            mine = stack.network(m)
            for a, b in zip(mine.parameters(), net.parameters(), strict=True):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(stack.forward(x)[m].transpose(0, 1), net(x), rtol=1e-5, atol=1e-4)
        # padding stayed exactly zero: the smallest member uses only its own block
        small = min(range(len(configs)), key=lambda m: configs[m].n_params())
        used = sum(int((p[small] != 0).sum()) for p in stack.params)
        assert used <= configs[small].n_params()


@pytest.mark.parametrize("depths", [(1, 1), (2, 1), (1, 2), (3, 2)])
def test_stack_forward_is_the_general_rnn(depths):
    """The stacked forward equals models.RNN for every depth pair, with input and output dims of 2."""
    hd, od = depths
    configs = [RNNConfig(2, 2, h, hd, w, od, w + 1) for h, w in ((1, 3), (3, 2), (2, 5))]
    stack = RNNStack([Member(c, 10 + s) for s, c in enumerate(configs)])
    x = torch.randint(-10, 11, (7, 13, 2)).float()
    y = stack.forward(x)
    for m, c in enumerate(configs):
        torch.testing.assert_close(y[m].transpose(0, 1), init_network(c, 10 + m)(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("depths", [(1, 1), (2, 2)])
def test_one_hot_classifier_stack_is_the_general_rnn(depths):
    """With a one-hot encoding and a classification head the stack still equals models.RNN, and the
    network's answer is the arg-max class's value."""
    hd, od = depths
    configs = [RNNConfig(1, 1, h, hd, 4, od, 4, (-1, 0, 2), (3, 5, 7, 9)) for h in (1, 3)]
    stack = RNNStack([Member(c, 20 + s) for s, c in enumerate(configs)])
    x = torch.as_tensor(np.random.default_rng(0).choice([-1, 0, 2], size=(6, 9, 1))).float()
    y = stack.forward(x)
    assert y.shape == (2, 9, 6, 4)                                        # one logit per class
    for m, c in enumerate(configs):
        net = init_network(c, 20 + m)
        torch.testing.assert_close(y[m].transpose(0, 1), net(x), rtol=1e-5, atol=1e-5)
        answers = net.readout(net(x))
        assert set(answers.unique().tolist()) <= {3.0, 5.0, 7.0, 9.0}
        assert torch.equal(answers, torch.tensor([3.0, 5.0, 7.0, 9.0])[net(x).argmax(-1, keepdim=True)])


def test_encodings_and_targets():
    """One indicator per alphabet value (all zeros off the alphabet), class indices as targets (-1 off it)."""
    c = RNNConfig(2, 1, 1, input_alphabet=[0, 1, 5], output_alphabet=[2, 4])
    assert c.input_alphabet == (0, 1, 5) and c.n_inputs == 6 and c.n_outputs == 2   # lists become tuples
    e = encode_inputs(c, torch.tensor([[5.0, 0.0], [1.0, 3.0]]))
    assert e.tolist() == [[0, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0]]
    assert output_targets(c, torch.tensor([[4], [2], [3]])).tolist() == [[1], [0], [-1]]
    assert head_loss(c, "log") == "cross_entropy" and head_loss(RNNConfig(1, 1, 1), "log") == "log"
    assert c.label() == "H=1 f1 g1 1hot cls" and c.representation() == "one-hot → classification"
    with pytest.raises(ValueError, match="strictly increasing"):
        RNNConfig(1, 1, 1, input_alphabet=(1, 0))
    with pytest.raises(ValueError, match="output_dim == 1"):
        RNNConfig(1, 2, 1, output_alphabet=(0, 1))


def test_a_one_hot_classifier_learns_add_mod_5():
    """Add_Mod_5 (a 5-state machine) with integer inputs and a regression head is out of reach of small
    networks in a few hundred steps; one-hot inputs and a classification head make it learnable: the
    representation, not the size, is what the search was missing."""
    ds = load_dataset(get_task("Add_Mod_5"), size=4000, seed=1, cache=False)
    data = TrainData.from_dataset(ds)
    config = TrainConfig(steps=1500, batch_size=256, eval_every=100, eval_rows=1000, lr=3e-3)
    alphabet = (0, 1, 2, 3, 4)
    plain = train_one(RNNConfig(1, 1, 6, 2, 16), data, config)
    coded = train_one(RNNConfig(1, 1, 6, 2, 16, 1, 0, alphabet, alphabet), data, config)
    assert coded.test_accuracy > 0.95 > plain.test_accuracy
    assert coded.test_accuracy == pytest.approx(float(
        (coded.network.readout(predict(coded.network, ds.x_test)) == torch.as_tensor(ds.y_test)).float().mean()))


def test_dropping_members_leaves_the_others_untouched(sum_all):
    """Training [a, b, c], dropping b half way, equals training [a, c] throughout."""
    data = TrainData.from_dataset(sum_all)
    configs = [RNNConfig(1, 1, 1), RNNConfig(1, 1, 2), RNNConfig(1, 1, 2)]
    x, y = data.x_train[:128], data.y_train[:128].transpose(0, 1)

    def train(members, steps, drop_at=None):
        stack = RNNStack(members)
        opt = StackedAdamW(stack.params)
        for step in range(steps):
            if step == drop_at:
                stack.keep([0, 2])
                opt.keep([0, 2], stack.params)
            loss = elementwise_loss(stack.forward(x), y, "log").flatten(1).mean(1).sum()
            for p in stack.params:
                p.grad = None
            loss.backward()
            opt.step()
        return stack

    three = train([Member(c, s) for s, c in enumerate(configs)], 20, drop_at=10)
    two = train([Member(configs[0], 0), Member(configs[2], 2)], 20)
    for a, b in zip(three.params, two.params, strict=True):
        torch.testing.assert_close(a, b)


def test_succeeded_networks_leave_the_stack(sum_all):
    """A network that is already perfect stops at its first evaluation; the others keep training."""
    data = TrainData.from_dataset(sum_all)
    members = [Member(RNNConfig(1, 1, 1), 0, init=exact_sum_network()), Member(RNNConfig(1, 1, 1), 1),
               Member(RNNConfig(1, 1, 2), 2)]
    seen = []
    results = train_stack(members, data, TrainConfig(steps=50, batch_size=64, eval_every=10),
                          on_finish=lambda done: seen.extend(r.member.seed for r in done))
    perfect, *others = results
    assert perfect.success and perfect.stop == "success" and perfect.steps_run == 0
    assert perfect.test_accuracy == 1.0 and len(perfect.train_loss) == 0
    assert seen[0] == 0 and sorted(seen) == [0, 1, 2]
    for r in others:
        assert not r.success and r.stop == "budget" and r.steps_run == 50
        assert np.isfinite(r.train_loss).all() and len(r.train_loss) == 50
        assert list(r.eval_steps) == [0, 10, 20, 30, 40, 50]
    # the returned network is the perfect one, unchanged
    assert accuracy(predict(perfect.network, sum_all.x_test), sum_all.y_test) == 1.0


def test_success_needs_the_whole_test_split(sum_all):
    """A network right on the evaluation batch but wrong on one other test row is not accepted."""
    config = TrainConfig(steps=1, batch_size=32, lr=0.0, eval_rows=256, data_seed=0)
    y_test = sum_all.y_test.copy()
    batch = set(evaluation_rows(len(y_test), config).tolist())
    outside = min(set(range(len(y_test))) - batch)
    y_test[outside, 3, 0] += 1                       # one position of one row the batch never sees
    data = TrainData.from_arrays(sum_all.x_train, sum_all.y_train, sum_all.x_test, y_test)
    [r] = train_stack([Member(RNNConfig(1, 1, 1), 0, init=exact_sum_network())], data, config)
    assert r.best_eval_accuracy == 1.0
    assert not r.success and r.stop == "budget"
    n_positions = y_test.size
    assert r.test_accuracy == pytest.approx(1 - 1 / n_positions)
    # and with the row restored the same network is accepted at once
    clean = TrainData.from_dataset(sum_all)
    [r] = train_stack([Member(RNNConfig(1, 1, 1), 0, init=exact_sum_network())], clean, config)
    assert r.success and r.success_step == 0


def test_stacks_need_equal_depths():
    with pytest.raises(ValueError, match="equal depths"):
        RNNStack([Member(RNNConfig(1, 1, 1), 0), Member(RNNConfig(1, 1, 1, 2, 4), 0)])


def test_same_seed_same_result(sum_all):
    data = TrainData.from_dataset(sum_all)
    config = TrainConfig(steps=30, batch_size=64, eval_every=10)
    runs = [train_stack([Member(RNNConfig(1, 1, 2), 3)], data, config)[0] for _ in range(2)]
    np.testing.assert_array_equal(runs[0].train_loss, runs[1].train_loss)
    for a, b in zip(runs[0].network.parameters(), runs[1].network.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cross_entropy_networks_train_and_score_consistently():
    """With cross_entropy the network emits one logit per class; its recorded whole-split accuracy is the
    argmax accuracy models.accuracy computes."""
    ds = load_dataset(get_task("Parity_All"), size=2000, seed=5, cache=False)
    data = TrainData.from_dataset(ds)
    config = TrainConfig(steps=60, batch_size=64, eval_every=20, loss="cross_entropy")
    [r] = train_stack([Member(RNNConfig(1, 2, 2, 2, 4), 0)], data, config)
    assert r.network.config.output_dim == 2 and np.isfinite(r.train_loss).all()
    expected = accuracy(predict(r.network, ds.x_test), ds.y_test, "cross_entropy")
    assert r.test_accuracy == pytest.approx(expected)
