"""Batched training: many GeneralRNNs trained as one tensor program.

M networks (several seeds of several architectures with the same depths) are stacked along a leading model
axis: every weight is a tensor (M, d_in, d_out), every layer one ``torch.baddbmm``. Networks with smaller
hidden sizes or widths are zero-padded to the largest; a zero-padded unit receives and sends only zeros, so
its gradients are exactly zero and it stays zero under Adam: each network trains exactly as it would alone.
The loss is the *sum* of the networks' mean losses, so each network gets its own gradient, and Adam is
elementwise, so the stack follows M separate AdamW runs step for step (tests/test_train.py checks this).

A network succeeds only at 100% accuracy on the whole test split. Checking that every few steps would cost
more than training, so a fixed evaluation batch (a random subset of the test split) is scored every
``eval_every`` steps and the whole split only when the batch is perfect. Succeeded, stalled and diverged
networks leave the stack at once, so the arithmetic goes to networks that still need it.
Explained in notebooks/search.ipynb.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mips.models import RNN, RNNConfig, encode_inputs, head_loss, output_targets

log = logging.getLogger(__name__)

LOSSES = ("mse", "log", "cross_entropy")


# ---------------------------------------------------------------------------------------------------------
# Losses and accuracy (the original's definitions, spec §7)


def elementwise_loss(y_pred: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Loss per position: ``mse`` ½(ŷ−y)², ``log`` ½·log(1+(ŷ−y)²), ``cross_entropy`` on logits (…, C).

    For mse/log the result has y's shape (…, O); for cross_entropy, y holds class indices (…, 1) and the
    result drops the class axis (…,).
    """
    if loss == "mse":
        return 0.5 * (y_pred - y) ** 2
    if loss == "log":
        return 0.5 * torch.log1p((y_pred - y) ** 2)
    if loss == "cross_entropy":
        target = y.expand(*y_pred.shape[:-1], 1).reshape(-1).long()
        logits = y_pred.reshape(-1, y_pred.shape[-1])
        return F.cross_entropy(logits, target, reduction="none").reshape(y_pred.shape[:-1])
    raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


def correct(y_pred: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Boolean per position: rounded output equals the target (argmax for cross_entropy)."""
    if loss == "cross_entropy":
        return y_pred.argmax(-1) == y.squeeze(-1).long()
    return torch.round(y_pred) == y


# ---------------------------------------------------------------------------------------------------------
# A stack of GeneralRNNs


@dataclass(frozen=True)
class Member:
    """One network to train: its architecture, its init seed, and a label the caller uses (e.g. a config id).

    ``init`` starts from a given network instead of the seed's random init (a warm start, or a test's
    hand-built network).
    """

    config: RNNConfig
    seed: int
    tag: int = 0
    init: RNN | None = field(default=None, compare=False, repr=False)


def _padded(configs: Sequence[RNNConfig]) -> RNNConfig:
    """The smallest architecture every config fits into by zero-padding (depths and representation must
    agree)."""
    first = configs[0]
    shared = lambda c: (c.hidden_depth, c.output_depth, c.input_dim, c.output_dim, c.input_alphabet,
                        c.output_alphabet)
    for c in configs:
        if shared(c) != shared(first):
            raise ValueError(f"a stack needs equal depths, input/output dims and representation; got "
                             f"{first.label()} and {c.label()}")
    return RNNConfig(first.input_dim, first.output_dim, max(c.hidden_dim for c in configs),
                     first.hidden_depth, max(c.hidden_width for c in configs),
                     first.output_depth, max(c.output_width for c in configs),
                     first.input_alphabet, first.output_alphabet)


def init_network(config: RNNConfig, seed: int) -> RNN:
    """A freshly initialised GeneralRNN (PyTorch's default Linear init) drawn from ``seed`` alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RNN(config)


class RNNStack:
    """M GeneralRNNs with equal depths as stacked tensors; layer l of f is ``W_f[l]`` (M, d_in, d_out).

    f's first layer is split into its recurrent part ``W_fh`` (M, H, d1) and its input part ``W_fx``
    (M, I, d1), so the input projection of all time steps is one matmul and each step one ``baddbmm``.
    """

    def __init__(self, members: Sequence[Member], device: str = "cpu"):
        if not members:
            raise ValueError("an RNNStack needs at least one member")
        self.members = list(members)
        self.shape = _padded([m.config for m in members])
        self.device = device
        self.params = self._stack_init()

    # -- parameters --------------------------------------------------------------------------------------

    def _stack_init(self) -> list[torch.Tensor]:
        """Each member's default init copied into the top-left block of zero-padded stacked tensors."""
        s = self.shape
        H, n_in = s.hidden_dim, s.n_inputs
        f_shape = [H + n_in] + [s.hidden_width] * (s.hidden_depth - 1) + [H]
        g_shape = [H] + [s.output_width] * (s.output_depth - 1) + [s.n_outputs]
        M = len(self.members)
        shapes = [(H, f_shape[1]), (n_in, f_shape[1]), (1, f_shape[1])]
        shapes += [sh for a, b in zip(f_shape[1:-1], f_shape[2:], strict=True) for sh in ((a, b), (1, b))]
        shapes += [sh for a, b in zip(g_shape[:-1], g_shape[1:], strict=True) for sh in ((a, b), (1, b))]
        params = [torch.zeros(M, *sh) for sh in shapes]
        for m, member in enumerate(self.members):
            net = member.init if member.init is not None else init_network(member.config, member.seed)
            for p, block in zip(params, self._blocks(net), strict=True):
                p[m, : block.shape[0], : block.shape[1]] = block.cpu()
        return [p.to(self.device).requires_grad_() for p in params]

    @staticmethod
    def _blocks(net: RNN) -> list[torch.Tensor]:
        """A network's weights in stack layout: (d_in, d_out) matrices and (1, d_out) biases."""
        H = net.config.hidden_dim
        f, g = list(net.hidden_mlp.layers), list(net.output_mlp.layers)
        w0 = f[0].weight.detach().T
        out = [w0[:H], w0[H:], f[0].bias.detach()[None]]
        for layer in f[1:] + g:
            out += [layer.weight.detach().T, layer.bias.detach()[None]]
        return out

    def network(self, m: int) -> RNN:
        """Member m as a standalone ``RNN`` (its unpadded block), e.g. to save or to analyse."""
        return unstack(self.members[m].config, self.params, m)

    def snapshot(self, m: int) -> list[torch.Tensor]:
        """A copy of member m's parameters (leading axis of length 1)."""
        return [p.detach()[m:m + 1].clone() for p in self.params]

    def keep(self, rows: Sequence[int]) -> None:
        """Drop every member not listed (the caller drops the matching optimizer state)."""
        index = torch.as_tensor(list(rows), dtype=torch.long, device=self.device)
        self.members = [self.members[i] for i in rows]
        self.params = [p.detach().index_select(0, index).requires_grad_() for p in self.params]

    # -- forward -----------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, params: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Outputs (M, T, B, O) for shared integer inputs x (B, T, I): h_0 = 0, h_t = f([h_{t-1}, e(x_t)]),
        y_t = g(h_t)."""
        return stack_forward(self.params if params is None else params, self.shape.hidden_depth,
                             encode_inputs(self.shape, x))

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """The heads' training targets for targets y (B, T, O) -> (T, B, O): values, or class indices."""
        return output_targets(self.shape, y).transpose(0, 1)


def unstack(config: RNNConfig, params: Sequence[torch.Tensor], m: int = 0) -> RNN:
    """Row m of stacked parameters as a standalone ``RNN`` of architecture ``config`` (its unpadded block)."""
    net = RNN(config)
    H, n_in = config.hidden_dim, config.n_inputs
    layers = list(net.hidden_mlp.layers) + list(net.output_mlp.layers)
    with torch.no_grad():
        d1 = layers[0].weight.shape[0]
        w0 = torch.cat([params[0][m, :H, :d1], params[1][m, :n_in, :d1]])
        layers[0].weight.copy_(w0.T)
        layers[0].bias.copy_(params[2][m, 0, :d1])
        for i, layer in enumerate(layers[1:]):
            d_out, d_in = layer.weight.shape
            layer.weight.copy_(params[3 + 2 * i][m, :d_in, :d_out].T)
            layer.bias.copy_(params[4 + 2 * i][m, 0, :d_out])
        return net.to(params[0].device)


def stack_forward(p: Sequence[torch.Tensor], hidden_depth: int, x: torch.Tensor) -> torch.Tensor:
    """The stacked GeneralRNN: parameters in ``RNNStack`` layout, shared inputs x (B, T, I) -> (M, T, B, O)."""
    W_fh, W_fx, b_f0 = p[0], p[1], p[2]
    f_rest = [(p[3 + 2 * i], p[4 + 2 * i]) for i in range(hidden_depth - 1)]
    g = [(p[i], p[i + 1]) for i in range(1 + 2 * hidden_depth, len(p), 2)]
    M, (B, T, _) = p[0].shape[0], x.shape
    x_tb = x.transpose(0, 1).reshape(1, T * B, -1).expand(M, -1, -1)
    u = torch.baddbmm(b_f0, x_tb, W_fx).reshape(M, T, B, -1).unbind(1)  # f's first layer, input part
    hs, h = [], None
    for u_t in u:
        z = u_t if h is None else torch.baddbmm(u_t, h, W_fh)   # h_0 = 0
        for W, b in f_rest:
            z = torch.baddbmm(b, torch.relu(z), W)
        h = z
        hs.append(h)
    z = torch.stack(hs, 1).reshape(M, T * B, -1)
    for i, (W, b) in enumerate(g):
        z = torch.baddbmm(b, torch.relu(z) if i else z, W)
    return z.reshape(M, T, B, -1)


# ---------------------------------------------------------------------------------------------------------
# Adam over stacked parameters (torch.optim.AdamW's update, with state that can drop members)


class StackedAdamW:
    """AdamW whose state tensors share the stack's leading model axis, so members can leave the stack."""

    def __init__(self, params: Sequence[torch.Tensor], lr: float = 1e-3, betas=(0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.params = list(params)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    @torch.no_grad()
    def step(self) -> None:
        """One AdamW update in torch's operation order (so results match ``torch.optim.AdamW``)."""
        self.t += 1
        b1, b2 = self.betas
        grads = [p.grad for p in self.params]
        if self.weight_decay:
            torch._foreach_mul_(self.params, 1 - self.lr * self.weight_decay)
        torch._foreach_lerp_(self.exp_avg, grads, 1 - b1)
        torch._foreach_mul_(self.exp_avg_sq, b2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - b2)
        step_size = self.lr / (1 - b1 ** self.t)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, math.sqrt(1 - b2 ** self.t))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denom, -step_size)

    def keep(self, rows: Sequence[int], params: Sequence[torch.Tensor]) -> None:
        """Follow ``RNNStack.keep``: new parameter tensors, state rows of the kept members."""
        index = torch.as_tensor(list(rows), dtype=torch.long, device=params[0].device)
        self.params = list(params)
        self.exp_avg = [s.index_select(0, index) for s in self.exp_avg]
        self.exp_avg_sq = [s.index_select(0, index) for s in self.exp_avg_sq]


# ---------------------------------------------------------------------------------------------------------
# Data


@dataclass
class TrainData:
    """A task's split as float tensors on the training device (targets stay exact small integers)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @classmethod
    def from_arrays(cls, x_train, y_train, x_test, y_test, device: str = "cpu") -> TrainData:
        """Integer arrays (n, T, dim) -> float32 tensors; a 2-D (n, T) array gains a trailing axis."""
        def prep(a):
            t = torch.as_tensor(np.asarray(a)).float()
            return (t.unsqueeze(-1) if t.dim() == 2 else t).to(device)
        return cls(prep(x_train), prep(y_train), prep(x_test), prep(y_test))

    @classmethod
    def from_dataset(cls, ds, device: str = "cpu") -> TrainData:
        """From a ``mips.data.Dataset``."""
        return cls.from_arrays(ds.x_train, ds.y_train, ds.x_test, ds.y_test, device)


# ---------------------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainConfig:
    """How a stack is trained. ``patience`` (steps) stops a network when neither its evaluation loss nor its
    error rate has fallen by ``min_improvement`` (relative) for that long (0 = never stop early);
    ``data_seed`` fixes the batches (shared by the stack) and the evaluation rows.

    ``threads`` is torch's intra-op thread count while training (0 = leave it). These matrices are tiny,
    so one thread is fastest, and on a busy machine two threads spinning on two cores were 10x slower.
    """

    steps: int = 10_000
    batch_size: int = 4096
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "log"
    eval_every: int = 100
    eval_rows: int = 8192
    test_chunk: int = 65_536
    patience: int = 0
    min_improvement: float = 0.01
    data_seed: int = 0
    threads: int = 1
    progress: bool = False

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        for name in ("steps", "batch_size", "eval_every", "eval_rows", "test_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class TrainResult:
    """What happened to one member: how far it trained, whether and when it succeeded, its best network.

    ``stop`` is ``success`` (100% on the whole test split), ``budget`` (ran all steps), ``plateau`` (no
    improvement for ``patience`` steps), ``diverged`` (non-finite loss) or the reason the caller's stop rule
    gave (e.g. ``stopped``: a smaller architecture already succeeded). ``network`` is the state at success,
    else at the best evaluation; ``test_accuracy`` is its accuracy on the whole test split.
    """

    member: Member
    steps_run: int = 0
    success: bool = False
    success_step: int | None = None
    stop: str = ""
    best_eval_accuracy: float = 0.0
    best_eval_loss: float = math.inf
    best_step: int = 0
    test_accuracy: float | None = None
    network: RNN | None = None
    train_loss: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    eval_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    eval_accuracy: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    eval_loss: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    seconds: float = 0.0


def evaluation_rows(n_test: int, config: TrainConfig) -> torch.Tensor:
    """The test rows of the fixed evaluation batch: ``eval_rows`` of them drawn by ``data_seed``."""
    rows = torch.randperm(n_test, generator=torch.Generator().manual_seed(config.data_seed + 1))
    return rows[: min(config.eval_rows, n_test)].sort().values


@torch.no_grad()
def test_split_accuracy(stack: RNNStack, params: Sequence[torch.Tensor], data: TrainData, loss: str,
                        chunk: int = 65_536) -> float:
    """Accuracy of one member (params with leading axis 1) over every row of the test split."""
    hits = total = 0
    for i in range(0, len(data.x_test), chunk):
        ok = correct(stack.forward(data.x_test[i:i + chunk], params)[0],
                     stack.targets(data.y_test[i:i + chunk]), loss)
        hits, total = hits + int(ok.sum()), total + ok.numel()
    return hits / total


StopRule = Callable[[list[TrainResult], list[int], int], dict[int, str]]
OnFinish = Callable[[list[TrainResult]], None]


class _StackRun:
    """The state of one ``train_stack`` call: the stack, its optimizer, and each member's record so far."""

    def __init__(self, members: Sequence[Member], data: TrainData, config: TrainConfig, device: str,
                 stop_rule: StopRule | None, on_finish: OnFinish | None):
        self.data, self.config, self.device = data, config, device
        self.stop_rule, self.on_finish = stop_rule, on_finish
        self.start = time.perf_counter()
        self.stack = RNNStack(members, device)
        self.opt = StackedAdamW(self.stack.params, config.lr, weight_decay=config.weight_decay)
        self.results = [TrainResult(m) for m in members]
        self.active = list(range(len(members)))                # member index of each stack row
        self.losses = torch.full((config.steps, len(members)), float("nan"))
        self.evals: list[tuple[int, np.ndarray, np.ndarray]] = []  # (step, accuracy, loss) per member
        self.best: dict[int, list[torch.Tensor]] = {}           # member -> parameters at its best evaluation
        self.last_gain = [0] * len(members)                      # patience: step of the last real gain
        self.reference = [(math.inf, math.inf)] * len(members)   # (error rate, loss) at that gain
        self.batches = torch.Generator().manual_seed(config.data_seed)
        rows = evaluation_rows(len(data.x_test), config).to(device)
        self.x_eval, self.y_eval = data.x_test[rows], self.stack.targets(data.y_test[rows])
        self.loss = head_loss(self.stack.shape, config.loss)  # cross-entropy for classification heads

    def train_step(self, step: int) -> None:
        """One AdamW step of every active member on a shared random batch."""
        idx = torch.randint(len(self.data.x_train), (self.config.batch_size,), generator=self.batches)
        idx = idx.to(self.device)
        xb, yb = self.data.x_train[idx], self.stack.targets(self.data.y_train[idx])
        member_loss = elementwise_loss(self.stack.forward(xb), yb, self.loss).flatten(1).mean(1)
        for p in self.stack.params:
            p.grad = None
        member_loss.sum().backward()
        self.opt.step()
        self.losses[step, self.active] = member_loss.detach().cpu()

    @torch.no_grad()
    def evaluate(self, step: int) -> None:
        """Score the evaluation batch, confirm perfect members on the whole test split, retire members."""
        cfg = self.config
        y_pred = self.stack.forward(self.x_eval)
        acc = correct(y_pred, self.y_eval, self.loss).flatten(1).float().mean(1).cpu().numpy()
        ev_loss = elementwise_loss(y_pred, self.y_eval, self.loss).flatten(1).mean(1).cpu().numpy()
        acc_all = np.full(len(self.results), np.nan, np.float32)
        loss_all = np.full(len(self.results), np.nan, np.float32)
        acc_all[self.active], loss_all[self.active] = acc, ev_loss
        self.evals.append((step, acc_all, loss_all))
        done: dict[int, str] = {}
        for row, i in enumerate(self.active):
            r, a, lo = self.results[i], float(acc[row]), float(ev_loss[row])
            if not math.isfinite(lo):
                done[row] = "diverged"
                continue
            ref_err, ref_loss = self.reference[i]
            if 1 - a < ref_err * (1 - cfg.min_improvement) or lo < ref_loss * (1 - cfg.min_improvement):
                self.reference[i], self.last_gain[i] = (min(ref_err, 1 - a), min(ref_loss, lo)), step
            if a > r.best_eval_accuracy or (a == r.best_eval_accuracy and lo < r.best_eval_loss):
                r.best_eval_accuracy, r.best_step = a, step
                self.best[i] = self.stack.snapshot(row)
            r.best_eval_loss = min(r.best_eval_loss, lo)
            if a == 1.0:
                full = test_split_accuracy(self.stack, self.stack.snapshot(row), self.data, self.loss,
                                           cfg.test_chunk)
                if full == 1.0:
                    r.success, r.success_step, r.test_accuracy = True, step, 1.0
                    self.best[i] = self.stack.snapshot(row)
                    done[row] = "success"
                    continue
            if cfg.patience and step - self.last_gain[i] >= cfg.patience:
                done[row] = "plateau"
        self.retire(done, step)
        if self.stop_rule is not None and self.active:
            stop = self.stop_rule(self.results, list(self.active), step)
            self.retire({row: stop[i] for row, i in enumerate(self.active) if i in stop}, step)

    def retire(self, reasons: dict[int, str], step: int) -> None:
        """Close the records of the given stack rows and remove them from the stack and the optimizer."""
        if not reasons:
            return
        finished = []
        for row, reason in reasons.items():
            i = self.active[row]
            r = self.results[i]
            r.stop, r.steps_run = reason, step
            self._close(i, r)
            finished.append(r)
        keep = [row for row in range(len(self.active)) if row not in reasons]
        self.active = [self.active[row] for row in keep]
        if keep:
            self.stack.keep(keep)
            self.opt.keep(keep, self.stack.params)
        if self.on_finish is not None:
            self.on_finish(finished)

    def _close(self, i: int, r: TrainResult) -> None:
        """Attach the member's best network, its whole-split accuracy and its curves."""
        if i in self.best:
            r.network = unstack(r.member.config, self.best[i])
            if r.test_accuracy is None:
                r.test_accuracy = test_split_accuracy(self.stack, self.best[i], self.data, self.loss,
                                                      self.config.test_chunk)
        else:                                    # never evaluated without diverging
            r.network = init_network(r.member.config, r.member.seed)
        r.train_loss = self.losses[: r.steps_run, i].numpy().astype(np.float32)
        steps = np.array([e[0] for e in self.evals], np.int64)
        acc = np.array([e[1][i] for e in self.evals], np.float32)
        seen = ~np.isnan(acc)
        r.eval_steps, r.eval_accuracy = steps[seen], acc[seen]
        r.eval_loss = np.array([e[2][i] for e in self.evals], np.float32)[seen]
        r.seconds = time.perf_counter() - self.start


def train_stack(members: Sequence[Member], data: TrainData, config: TrainConfig, device: str = "cpu",
                stop_rule: StopRule | None = None, on_finish: OnFinish | None = None) -> list[TrainResult]:
    """Train the members together until each succeeds, stalls, diverges, runs out of steps or is stopped.

    After each evaluation ``stop_rule(results, active, step)`` may stop further members: it returns
    {member index: reason}, e.g. the other seeds of an architecture that just succeeded. ``on_finish(results)``
    hears about members as they leave the stack, with their records complete. Returns one result per member.
    """
    with intra_op_threads(config.threads):
        return _train_stack(members, data, config, device, stop_rule, on_finish)


@contextlib.contextmanager
def intra_op_threads(n: int):
    """Set torch's intra-op thread count for a block (0 leaves it), then restore it."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)


def _train_stack(members, data, config, device, stop_rule, on_finish) -> list[TrainResult]:
    run = _StackRun(members, data, config, device, stop_rule, on_finish)
    bar = tqdm(total=config.steps, disable=not config.progress, desc=f"training {len(members)} networks")
    for step in range(config.steps + 1):
        if step % config.eval_every == 0 or step == config.steps:
            run.evaluate(step)
        if not run.active:
            break
        if step == config.steps:
            run.retire({row: "budget" for row in range(len(run.active))}, step)
            break
        run.train_step(step)
        bar.update(1)
    bar.close()
    for i, r in enumerate(run.results):
        log.debug("member %d (%s, seed %d): %s at step %d, eval acc %.4f, test acc %s", i,
                  r.member.config.label(), r.member.seed, r.stop, r.steps_run, r.best_eval_accuracy,
                  r.test_accuracy)
    return run.results


def train_one(config: RNNConfig, data: TrainData, train_config: TrainConfig, seed: int = 0,
              device: str = "cpu") -> TrainResult:
    """Train a single network (a stack of one)."""
    return train_stack([Member(config, seed)], data, train_config, device)[0]
