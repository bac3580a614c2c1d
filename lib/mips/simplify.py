"""The ``simplify`` stage ("hammering"): make a perfect network sparse and integer without changing its function.

Three steps after the paper (spec §9), and three of ours:

1. **L1 sweep**: fine-tune with loss + ε·Σ|θ| for growing ε and keep the largest ε that still solves the
   whole test split.
2. **Normalizers**, each a change of hidden basis h' = M h (so the network computes the same function):
   whitening, the real Jordan normal form of the recurrent matrix, Toeplitz normalization of the input
   weights, then de-biasing and quantization of near-integer weights. Each one is checked on the whole
   test split and reverted if it lowers the accuracy.
3. **Retraining** with the exact zeros frozen, kept only if the accuracy holds; then quantization again.
4. **Snapping** (ours): every remaining parameter is tried at its nearest integer, all at once and then one
   at a time, kept when the accuracy holds. It removes small leftover biases (a counter's drift, a delay
   line's offset) that a perfect network tolerates but that keep its hidden states off an integer lattice.
5. **Integer recurrence** (ours): recurrent weights near an integer are rounded and held there while the
   other weights retrain, kept when the accuracy returns; then snapping again. A network judged only by its
   rounded or arg-max output can leak a little (a counter that decays by 1%) and still be perfect, but its
   states then spread off any lattice.
6. **Pruning** (ours): hidden coordinates that can never reach an output are set to zero (exact).

The network's metrics (neurons, nonzero and integer weights, effective hidden dimension, accuracy) are
recorded before and after. Explained in notebooks/simplify.ipynb.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mips.artifacts import Record, StageRun, require_record, stage_dir, write_json
from mips.data import Dataset, dataset_for
from mips.models import (
    RNN,
    accuracy,
    head_loss,
    load_model,
    network_accuracy,
    output_targets,
    predict,
    save_model,
)
from mips.tasks import Task
from mips.train import elementwise_loss, intra_op_threads

log = logging.getLogger(__name__)

UPSTREAM = ("search",)

MAX_WEIGHT = 1e4          # a normalizer producing a larger weight is reverted (ill-conditioned basis change)


@dataclass(frozen=True)
class SimplifyConfig:
    """Budgets and tolerances of hammering. The defaults are the ``full`` preset (about a minute on a CPU)."""

    l1_eps: tuple[float, ...] = (1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0)  # the paper's
    l1_steps: int = 400            # fine-tuning steps per ε (continued from the previous ε)
    l1_lr: float = 1e-3
    retrain_steps: int = 1000      # post-hammer retraining with exact zeros frozen
    retrain_lr: float = 1e-3
    batch_size: int = 1024
    eval_rows: int = 8192          # test rows checked every ``eval_every`` steps to pick checkpoints
    eval_every: int = 50
    state_rows: int = 8192         # training rows whose hidden states (all time steps) define whitening
    whiten_eps: float = 0.1        # second-moment eigenvalues below this are left unscaled
    jnf_eps: float = 0.7           # eigenvalues closer than this may form one Jordan block
    jnf_rank_tol: float = 0.02     # singular values below this count as zero when building Jordan chains
    complex_form: str = "companion"  # complex pairs after Toeplitz: "companion" (integer-friendly) or "rotation"
    debias_eps: float = 0.1        # singular values of the recurrent read matrix treated as zero
    quantize_tol: float = 0.01     # parameters this close to an integer are rounded to it
    snap_tol: float = 0.5          # after retraining, every parameter this close to an integer is tried there
    snap_max_params: int = 400     # at most this many single-parameter roundings are tried
    recurrence_tol: float = 0.25   # recurrent weights this close to an integer are rounded, then the rest retrained
    metric_threshold: float = 0.01 # |θ| above this counts as a nonzero weight (the paper's metrics)
    threads: int = 1               # torch intra-op threads while simplifying (tiny matrices: one is fastest)
    seed: int = 0
    method_version: int = 7        # bumped when the method changes, so cached stage folders are redone

    @classmethod
    def for_preset(cls, preset: str) -> SimplifyConfig:
        """``full``: the defaults; ``smoke``: a few steps, enough to exercise every code path."""
        if preset == "full":
            return cls()
        if preset == "smoke":
            return cls(l1_eps=(1e-4, 1e-3), l1_steps=20, retrain_steps=20, batch_size=256, eval_rows=1024,
                       eval_every=10, state_rows=1024)
        raise ValueError(f"unknown preset {preset!r}; choose 'smoke' or 'full'")


# ---------------------------------------------------------------------------------------------------------
# Losses, evaluation and fine-tuning


def task_loss(y_pred: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """The task's training loss averaged over positions (the paper's ``log`` loss, ``mse`` or cross-entropy)."""
    return elementwise_loss(y_pred, y, loss).mean()


def l1_norm(model: RNN) -> torch.Tensor:
    """Σ|θ| over every weight and bias (differentiable: the L1 penalty)."""
    return sum(p.abs().sum() for p in model.parameters())


@torch.no_grad()
def l1_value(model: RNN) -> float:
    """Σ|θ| as a number, for records."""
    return float(l1_norm(model))


def test_accuracy(model: RNN, ds: Dataset, device: str = "cpu") -> float:
    """Accuracy on the whole test split (every row, step and output dim) of the network's answers."""
    return network_accuracy(model, predict(model, ds.x_test, device=device), ds.y_test)


def training_targets(model: RNN, y, device: str = "cpu") -> torch.Tensor:
    """What the network's head is trained against: target values, or class indices (see models)."""
    return output_targets(model.config, torch.as_tensor(y)).to(device)


@torch.no_grad()
def _evaluate(model: RNN, x: torch.Tensor, y: torch.Tensor, loss: str, l1: float) -> tuple[float, float]:
    """Accuracy and objective (loss + l1·Σ|θ|) on one batch; y as ``training_targets`` gives it."""
    y_pred = model(x)
    return accuracy(y_pred, y, loss), float(task_loss(y_pred, y, loss) + l1 * l1_norm(model))


def finetune(model: RNN, ds: Dataset, steps: int, lr: float, cfg: SimplifyConfig, l1: float = 0.0,
             frozen: dict[str, torch.Tensor] | None = None, min_accuracy: float = 1.0, seed: int = 0,
             device: str = "cpu") -> tuple[RNN, dict]:
    """Train a copy with AdamW on loss + l1·Σ|θ|; masked parameters (``frozen``) keep their values exactly.

    Every ``eval_every`` steps a fixed test batch is checked; the checkpoint with the lowest objective among
    those at ``min_accuracy`` on it is returned (the final weights if none qualified, flagged in the info).
    """
    model = copy.deepcopy(model).to(device).train()
    pinned = {name: p.detach().clone() for name, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(seed)
    x_train = torch.as_tensor(ds.x_train)
    y_train = torch.as_tensor(ds.y_train)
    n_eval = min(cfg.eval_rows, len(ds.x_test))
    x_eval = torch.as_tensor(ds.x_test[:n_eval]).float().to(device)
    y_eval = training_targets(model, ds.y_test[:n_eval], device)
    loss = head_loss(model.config, ds.task.loss)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    best, best_obj = None, float("inf")
    min_accuracy = min(min_accuracy, _evaluate(model, x_eval, y_eval, loss, l1)[0])
    for step in range(steps + 1):
        if step % cfg.eval_every == 0 or step == steps:
            acc, obj = _evaluate(model, x_eval, y_eval, loss, l1)
            if acc >= min_accuracy and obj < best_obj:
                best, best_obj = copy.deepcopy(model.state_dict()), obj
        if step == steps:
            break
        idx = torch.randint(len(x_train), (cfg.batch_size,), generator=gen)
        xb = x_train[idx].float().to(device)
        yb = training_targets(model, y_train[idx], device)
        objective = task_loss(model(xb), yb, loss) + (l1 * l1_norm(model) if l1 else 0.0)
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()
        if frozen:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p[frozen[name]] = pinned[name][frozen[name]]
    if best is not None:
        model.load_state_dict(best)
    return model.eval(), {"kept_checkpoint": best is not None, "objective": best_obj}


def l1_sweep(model: RNN, ds: Dataset, cfg: SimplifyConfig, base_accuracy: float,
             device: str = "cpu") -> tuple[RNN, float, list[dict]]:
    """Fine-tune with ε·Σ|θ| for each ε in turn, each continuing from the last accepted network.

    Returns the network of the largest ε whose whole-test accuracy stays at ``base_accuracy`` (the input's,
    1.0 for a perfect network), that ε (0.0 if none), and the curve (ε, accuracy, loss, Σ|θ|, accepted).
    """
    current, chosen, curve = model, 0.0, []
    for i, eps in enumerate(tqdm(cfg.l1_eps, desc="L1 sweep", leave=False, disable=None)):
        cand, info = finetune(current, ds, cfg.l1_steps, cfg.l1_lr, cfg, l1=eps, min_accuracy=base_accuracy,
                              seed=cfg.seed + i, device=device)
        acc = test_accuracy(cand, ds, device)
        ok = info["kept_checkpoint"] and acc >= base_accuracy
        curve.append({"eps": eps, "test_accuracy": acc, "l1_norm": l1_value(cand), "accepted": ok})
        log.info("L1 ε=%g: test accuracy %.6f, Σ|θ| %.3f%s", eps, acc, curve[-1]["l1_norm"],
                 "" if ok else " (rejected; sweep stops)")
        if not ok:
            break
        current, chosen = cand, eps
    return current, chosen, curve


def retrain_frozen_zeros(model: RNN, ds: Dataset, cfg: SimplifyConfig, base_accuracy: float,
                         device: str = "cpu") -> tuple[RNN, dict]:
    """Retrain with every exactly-zero parameter held at zero (spec §9.3); keep it only if accuracy holds."""
    frozen = {name: (p.detach() == 0).to(device) for name, p in model.named_parameters()}
    cand, info = finetune(model, ds, cfg.retrain_steps, cfg.retrain_lr, cfg, frozen=frozen,
                          min_accuracy=base_accuracy, seed=cfg.seed + 1000, device=device)
    acc = test_accuracy(cand, ds, device)
    ok = cfg.retrain_steps > 0 and info["kept_checkpoint"] and acc >= base_accuracy
    n_frozen = int(sum(m.sum() for m in frozen.values()))
    return (cand if ok else model), {"accepted": ok, "test_accuracy": acc, "frozen_zeros": n_frozen}


def retrain_integer_recurrence(model: RNN, ds: Dataset, cfg: SimplifyConfig, base_accuracy: float,
                               device: str = "cpu") -> tuple[RNN | None, dict]:
    """Round the recurrent weights (f's first layer, from h_{t-1}) that lie within ``recurrence_tol`` of an
    integer, hold them there (with every exact zero) and retrain the rest until accuracy returns.

    A network whose recurrence is *almost* integer (a counter that leaks by 1%, an integrator mixed into
    another by 0.01) often still solves its task, since only the rounded or arg-max output is checked,
    but its hidden states then spread off any lattice. Rounding the recurrence alone breaks it; rounding it
    and letting the input and output weights adapt repairs it. None when nothing is left to round.
    """
    H = model.config.hidden_dim
    new = copy.deepcopy(model)
    w = new.hidden_mlp.layers[0].weight
    with torch.no_grad():
        rec = w[:, :H]
        near = ((rec - rec.round()).abs() <= cfg.recurrence_tol) & (rec != rec.round())
        if not bool(near.any()):
            return None, {"skipped": "the recurrent weights are integers already or far from any"}
        rec[near] = rec.round()[near]
    frozen = {name: (p.detach() == 0) for name, p in new.named_parameters()}
    frozen["hidden_mlp.layers.0.weight"][:, :H] |= (w[:, :H] == w[:, :H].round()).detach()
    cand, info = finetune(new, ds, cfg.retrain_steps, cfg.retrain_lr, cfg, frozen=frozen,
                          min_accuracy=base_accuracy, seed=cfg.seed + 2000, device=device)
    if not info["kept_checkpoint"]:
        return None, {"rounded": int(near.sum()), "reason": "retraining did not recover the accuracy"}
    return cand, {"rounded": int(near.sum())}


# ---------------------------------------------------------------------------------------------------------
# Change of hidden basis


@torch.no_grad()
def hidden_states(model: RNN, x, device: str = "cpu", batch_size: int = 65_536) -> np.ndarray:
    """Hidden states h_0..h_T (n, T+1, H) as float64 for integer inputs x (n, T, I)."""
    x = torch.as_tensor(x)
    out = [model.run_with_cache(x[i:i + batch_size].to(device).float())["hook_h"].double().cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()


@torch.no_grad()
def change_hidden_basis(model: RNN, M: np.ndarray) -> RNN:
    """A copy computing the same function with hidden state h' = M h (spec §9.2).

    The layer that writes h gets M·W and M·b, the hidden columns of the layer that reads h get W·M⁻¹, and
    so does the output MLP's first layer. With a depth-1 update both happen to one layer: M W_hh M⁻¹.
    """
    H = model.config.hidden_dim
    M = np.asarray(M, dtype=np.float64)
    M_inv = np.linalg.inv(M)
    new = copy.deepcopy(model)
    f, g = new.hidden_mlp.layers, new.output_mlp.layers
    weights = {id(layer): layer.weight.detach().double().cpu().numpy() for layer in (f[0], f[-1], g[0])}
    write = weights[id(f[-1])]
    weights[id(f[-1])] = M @ write
    weights[id(f[0])][:, :H] = weights[id(f[0])][:, :H] @ M_inv
    weights[id(g[0])] = weights[id(g[0])] @ M_inv
    for layer in (f[0], f[-1], g[0]):
        layer.weight.copy_(torch.as_tensor(weights[id(layer)]))
    f[-1].bias.copy_(torch.as_tensor(M @ f[-1].bias.detach().double().cpu().numpy()))
    return new


def recurrent_matrix(model: RNN) -> np.ndarray | None:
    """W_hh of a depth-1 update h_t = W_hh h_{t-1} + W_x x_t + b, or None when the update is nonlinear."""
    if model.config.hidden_depth != 1:
        return None
    return model.hidden_mlp.layers[0].weight.detach().double().cpu().numpy()[:, :model.config.hidden_dim]


def input_matrix(model: RNN) -> np.ndarray:
    """W_x (H, I) of a depth-1 update."""
    return model.hidden_mlp.layers[0].weight.detach().double().cpu().numpy()[:, model.config.hidden_dim:]


# ---------------------------------------------------------------------------------------------------------
# The normalizers. Each returns (new network or None when it does not apply, info dict).


def whiten(model: RNN, states: np.ndarray, eps: float = 0.1) -> tuple[RNN, dict]:
    """ZCA-whiten the hidden state with its uncentered second moment C = E[h hᵀ] over all time steps.

    M = U diag(s_i > eps ? s_i^-½ : 1) Uᵀ; directions with tiny second moment are left unscaled.
    """
    h = states.reshape(-1, states.shape[-1])
    s, U = np.linalg.eigh(h.T @ h / len(h))
    scale = np.where(s > eps, 1.0 / np.sqrt(np.maximum(s, eps)), 1.0)
    return change_hidden_basis(model, (U * scale) @ U.T), {"second_moment_eigenvalues": s.tolist()}


@dataclass(frozen=True)
class JordanBlock:
    """One block of a real Jordan form: rows start..start+size of the hidden state.

    ``kind`` is "real" (λ on the diagonal, ones above it) or "complex" (size 2: [[a, b], [−b, a]] for
    λ = a ± ib).
    """

    start: int
    size: int
    kind: str
    eigenvalue: complex

    def to_dict(self) -> dict:
        return {"start": self.start, "size": self.size, "kind": self.kind,
                "eigenvalue": [float(np.real(self.eigenvalue)), float(np.imag(self.eigenvalue))]}


def _null_space(A: np.ndarray, dim: int) -> np.ndarray:
    """The ``dim`` right singular vectors of A with the smallest singular values (columns)."""
    _, _, vh = np.linalg.svd(A)
    return vh[len(vh) - dim:].conj().T if dim else np.zeros((A.shape[1], 0), dtype=A.dtype)


def _cluster_eigenvalues(lams: np.ndarray, tol: float) -> list[np.ndarray]:
    """Single-linkage groups (index arrays) of eigenvalues closer than ``tol``."""
    parent = list(range(len(lams)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(lams)):
        for j in range(i + 1, len(lams)):
            if abs(lams[i] - lams[j]) <= tol:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(lams)):
        groups.setdefault(root(i), []).append(i)
    return [np.array(g) for g in groups.values()]


def _rank(A: np.ndarray, tol: float) -> int:
    return int((np.linalg.svd(A, compute_uv=False) > tol).sum()) if A.size else 0


def nilpotent_chains(N: np.ndarray, tol: float) -> tuple[np.ndarray, list[int]] | None:
    """Jordan chains of a (nearly) nilpotent N: P with P⁻¹ N P ≈ the nilpotent Jordan matrix of ``sizes``.

    Ranks of N^j are decided with singular-value tolerance ``tol``; chains are built longest first, each
    head chosen orthogonally to the kernels below it and to the chains already taken. None if N is not
    nilpotent within the tolerance.
    """
    m = len(N)
    powers = [np.eye(m)]
    for _ in range(m):
        powers.append(powers[-1] @ N)
    kernel_dims = [m - _rank(P, tol) for P in powers]
    if kernel_dims[-1] != m:
        return None
    p = next(j for j, d in enumerate(kernel_dims) if d == m)
    chains: list[tuple[np.ndarray, int]] = []
    for j in range(p, 0, -1):
        longer = [powers[length - j] @ v for v, length in chains]
        n_new = (kernel_dims[j] - kernel_dims[j - 1]) - len(longer)
        if n_new <= 0:
            continue
        below = _null_space(powers[j - 1], kernel_dims[j - 1])
        taken = np.column_stack([below] + longer) if (below.size or longer) else np.zeros((m, 0))
        kernel = _null_space(powers[j], kernel_dims[j])
        if taken.shape[1]:
            q, _ = np.linalg.qr(taken)
            kernel = kernel - q @ (q.T @ kernel)
        u, _, _ = np.linalg.svd(kernel, full_matrices=False)
        chains += [(u[:, i], j) for i in range(n_new)]
    cols, sizes = [], []
    for v, length in chains:
        v = v * np.sign(v[np.argmax(np.abs(v))])
        cols += [powers[length - 1 - i] @ v for i in range(length)]
        sizes.append(length)
    return np.column_stack(cols), sizes


def _realify(v: np.ndarray) -> np.ndarray:
    """[Re v, Im v] of a complex eigenvector after a phase turn making them orthogonal (‖Re‖ ≥ ‖Im‖)."""
    theta = -0.5 * np.angle(np.sum(v * v))
    v = v * np.exp(1j * theta)
    p, q = v.real, v.imag
    if np.linalg.norm(q) > np.linalg.norm(p):
        p, q = q, -p          # multiply v by -i: same eigenvector, swapped roles
    sign = np.sign(p[np.argmax(np.abs(p))])
    return np.column_stack([p * sign, q * sign])


def _jordan_basis_at(W: np.ndarray, lams: np.ndarray, tol: float,
                     rank_tol: float) -> tuple[np.ndarray, list[JordanBlock]] | None:
    """Real Jordan basis T (columns) with eigenvalues grouped at ``tol``, or None if a group fails."""
    H = len(W)
    groups = _cluster_eigenvalues(lams, tol)
    groups.sort(key=lambda g: (-round(abs(lams[g].mean()), 6), -round(lams[g].mean().real, 6)))
    cols: list[np.ndarray] = []
    blocks: list[JordanBlock] = []
    for g in groups:
        mu = lams[g].mean()
        start = sum(b.size for b in blocks)
        # Single linkage keeps the spectrum's conjugate symmetry: a group either contains the conjugates of
        # its members (its mean is real) or pairs with a mirror group whose members all lie below the axis.
        if abs(mu.imag) <= tol / 2:                              # a real group: real Jordan chains
            poly = np.eye(H, dtype=complex)
            for i in g:
                poly = poly @ (W - lams[i] * np.eye(H))
            Q = _null_space(poly.real, len(g)).real
            Q, _ = np.linalg.qr(Q)
            N = Q.T @ W @ Q - mu.real * np.eye(len(g))
            chains = nilpotent_chains(N, rank_tol)
            if chains is None:
                return None
            P, sizes = chains
            cols.append(Q @ P)
            for size in sizes:
                blocks.append(JordanBlock(start, size, "real", complex(mu.real)))
                start += size
            continue
        if mu.imag < 0:                                          # each pair is built from its upper member
            continue
        if len(g) == 1:
            v = _null_space(W - lams[g[0]] * np.eye(H), 1)[:, 0]
            cols.append(_realify(v))
            blocks.append(JordanBlock(start, 2, "complex", complex(lams[g[0]])))
        else:                                                    # repeated complex pair: real invariant basis
            poly = np.eye(H, dtype=complex)
            for i in g:
                poly = poly @ (W - lams[i] * np.eye(H))
            V = _null_space(poly, len(g))
            Q, _ = np.linalg.qr(np.column_stack([V.real, V.imag]))
            cols.append(Q)
            blocks.append(JordanBlock(start, 2 * len(g), "invariant", complex(mu)))
    T = np.column_stack(cols)
    if T.shape != (H, H) or np.linalg.cond(T) > 1e8:
        return None
    return T, blocks


def jordan_matrix(blocks: list[JordanBlock], H: int) -> np.ndarray:
    """The ideal real Jordan form of ``blocks`` (invariant blocks are left as zeros: no fixed pattern)."""
    J = np.zeros((H, H))
    for b in blocks:
        s = slice(b.start, b.start + b.size)
        if b.kind == "real":
            J[s, s] = np.real(b.eigenvalue) * np.eye(b.size) + np.eye(b.size, k=1)
        elif b.kind == "complex":
            a, c = np.real(b.eigenvalue), np.imag(b.eigenvalue)
            J[s, s] = [[a, c], [-c, a]]
    return J


def jordan_basis(W: np.ndarray, eps: float = 0.7, rank_tol: float = 0.02,
                 fit_tol: float = 0.05) -> tuple[np.ndarray, list[JordanBlock], float]:
    """A real basis T with T⁻¹ W T in real Jordan normal form, robust to the noise of trained weights.

    Eigenvalues within ``eps`` are first grouped into one block; when the result is not in Jordan form
    (largest deviation > ``fit_tol``) the grouping tolerance is halved (up to 6 times). Returns T, the
    blocks and the deviation max|T⁻¹WT − J| of the best attempt.
    """
    lams = np.linalg.eigvals(W)
    best = None
    tol = eps
    for _ in range(7):
        found = _jordan_basis_at(W, lams, tol, rank_tol)
        if found is not None:
            T, blocks = found
            J = np.linalg.solve(T, W @ T)
            fixed = [b for b in blocks if b.kind != "invariant"]
            mask = np.zeros_like(J, dtype=bool)
            for b in blocks:
                if b.kind == "invariant":
                    mask[b.start:b.start + b.size, b.start:b.start + b.size] = True
            dev = float(np.abs(np.where(mask, 0.0, J - jordan_matrix(fixed, len(W)))).max())
            if best is None or dev < best[2]:
                best = (T, blocks, dev)
            if dev <= fit_tol:
                break
        tol /= 2
    if best is None:
        raise np.linalg.LinAlgError("no real Jordan basis found")
    return best


def _block_name(b: JordanBlock) -> str:
    """J2(1.00) for a real block, R(0.50±0.80i) for a rotation pair, V4(…) for an invariant subspace."""
    lam = f"{b.eigenvalue.real:.2f}"
    if b.kind == "real":
        return f"J{b.size}({lam})"
    return f"{'R' if b.kind == 'complex' else f'V{b.size}'}({lam}±{abs(b.eigenvalue.imag):.2f}i)"


def jordan_normalize(model: RNN, eps: float = 0.7, rank_tol: float = 0.02) -> tuple[RNN | None, dict]:
    """Change the hidden basis so that W_hh is in real Jordan normal form (depth-1 update only).

    With a deeper update f there is no single recurrent matrix (the original multiplied f's weights,
    ignoring the ReLUs and biases); the step is skipped and the info says so.
    """
    W = recurrent_matrix(model)
    if W is None:
        return None, {"skipped": f"the update f has depth {model.config.hidden_depth} > 1: "
                                  "no linear recurrent matrix to put in Jordan form"}
    try:
        T, blocks, dev = jordan_basis(W, eps, rank_tol)
    except np.linalg.LinAlgError as exc:
        return None, {"skipped": f"Jordan basis failed: {exc}"}
    info = {"form": " ⊕ ".join(_block_name(b) for b in blocks), "blocks": [b.to_dict() for b in blocks],
            "jordan_deviation": dev,
            "eigenvalues": [[float(v.real), float(v.imag)] for v in np.linalg.eigvals(W)]}
    return change_hidden_basis(model, np.linalg.inv(T)), info


def _driving_column(rows: np.ndarray, min_entry: float) -> int:
    """The input column (last column = bias) that drives a block: the largest input entry, else the bias."""
    norms = np.linalg.norm(rows, axis=0)
    return int(np.argmax(norms[:-1])) if norms[:-1].max() > min_entry else len(norms) - 1


def toeplitz_normalize(model: RNN, blocks: list[JordanBlock], min_entry: float = 1e-4,
                       complex_form: str = "companion") -> tuple[RNN | None, dict]:
    """Normalize each Jordan block's input weights to a unit vector with a matrix that commutes with it.

    For a real block the commuting matrices are upper-triangular Toeplitz T = Σ c_j N^j; choosing T's last
    column equal to the input column with the largest entry in the block's last row gives T⁻¹ x = e_last
    (the bias plays the input's role for a block that no input drives, e.g. a clock), and W_hh stays in
    Jordan form. For a complex pair [[a, b], [−b, a]], ``complex_form="rotation"`` (the paper's) uses the
    commuting [[c, d], [−d, c]], keeping the rotation; ``"companion"`` (ours) uses the basis (x, Bx), which
    turns the block into its companion matrix [[0, −det], [1, trace]]: integers whenever the pair's trace and
    determinant are (a rotation by 60° has irrational entries but trace 1 and determinant 1).
    """
    if complex_form not in ("companion", "rotation"):
        raise ValueError(f"complex_form must be 'companion' or 'rotation', got {complex_form!r}")
    if recurrent_matrix(model) is None or not blocks:
        return None, {"skipped": "needs a depth-1 update in Jordan form"}
    W = recurrent_matrix(model)
    X = np.column_stack([input_matrix(model), model.hidden_mlp.layers[0].bias.detach().double().cpu().numpy()])
    H = model.config.hidden_dim
    T, chosen = np.eye(H), []
    for b in blocks:
        s = slice(b.start, b.start + b.size)
        if b.kind == "real":
            col = _driving_column(X[b.start + b.size - 1][None, :], min_entry)
            x = X[s, col]
            if abs(x[-1]) <= min_entry:
                chosen.append(None)
                continue
            T[s, s] = sum(x[b.size - 1 - j] * np.eye(b.size, k=j) for j in range(b.size))
        elif b.kind == "complex":
            col = _driving_column(X[s], min_entry)
            x = X[s, col]
            if np.linalg.norm(x) <= min_entry:
                chosen.append(None)
                continue
            T[s, s] = np.column_stack([x, W[s, s] @ x]) if complex_form == "companion" else \
                [[x[0], -x[1]], [x[1], x[0]]]
        else:
            chosen.append(None)
            continue
        chosen.append(col)
    names = [f"x{i}" for i in range(X.shape[1] - 1)] + ["bias"]
    return change_hidden_basis(model, np.linalg.inv(T)), {
        "input_column": [None if c is None else names[c] for c in chosen], "complex_form": complex_form}


@torch.no_grad()
def debias(model: RNN, eps: float = 0.1) -> tuple[RNN | None, dict]:
    """Move the part of the update's bias that the recurrence never reads into the output layer's bias.

    P projects onto the null space (σ ≤ eps) of the hidden columns of f's first layer; b_h ← (I−P) b_h and
    g's first bias ← + W_g P b_h. Exact when that null space is exact (the accuracy check guards the rest).
    """
    H = model.config.hidden_dim
    R = model.hidden_mlp.layers[0].weight.detach().double().cpu().numpy()[:, :H]
    _, s, vh = np.linalg.svd(R)
    s = np.concatenate([s, np.zeros(H - len(s))])
    V = vh[s <= eps].T
    if V.shape[1] == 0:
        return None, {"skipped": "the recurrent read matrix has no null space"}
    P = V @ V.T
    new = copy.deepcopy(model)
    write, out = new.hidden_mlp.layers[-1], new.output_mlp.layers[0]
    b = write.bias.detach().double().cpu().numpy()
    moved = P @ b
    write.bias.copy_(torch.as_tensor(b - moved))
    out.bias.add_(torch.as_tensor(out.weight.detach().double().cpu().numpy() @ moved).to(out.bias.dtype))
    return new, {"null_dim": int(V.shape[1]), "moved_norm": float(np.linalg.norm(moved))}


@torch.no_grad()
def quantize(model: RNN, tol: float = 0.01) -> tuple[RNN, dict]:
    """Round every weight and bias within ``tol`` of an integer to that integer."""
    new = copy.deepcopy(model)
    n = 0
    for p in new.parameters():
        r = torch.round(p)
        near = (p - r).abs() <= tol
        n += int((near & (p != r)).sum())
        p.copy_(torch.where(near, r, p))
    return new, {"rounded": n}


@torch.no_grad()
def snap_to_integers(model: RNN, accepts: Callable[[RNN], bool], tol: float = 0.5,
                     max_params: int = 400, passes: int = 2) -> tuple[RNN, dict]:
    """Round the remaining non-integer parameters to integers, keeping what ``accepts`` (the accuracy check).

    First all at once, to the nearest integers, then with every bias below 1 set to 0 instead (weights of a
    Jordan block, or small biases that cancel along a delay line, only work together); if neither is
    accepted, one at a time, closest to an integer first, trying the nearest integer and then the other
    neighbour, in up to ``passes`` sweeps. Quantization (within 0.01) is all-or-nothing; this removes the
    leftover biases (a counter's drift, a delay line's offsets) that a perfect network tolerates but that
    keep its hidden states off an integer lattice.
    """
    new = copy.deepcopy(model)
    params = dict(new.named_parameters())

    def candidates() -> list[tuple[float, str, int]]:
        out = []
        for name, p in params.items():
            dist = (p - p.round()).abs().flatten()
            out += [(float(dist[i]), name, i) for i in torch.nonzero((dist > 0) & (dist <= tol)).flatten().tolist()]
        return sorted(out)[:max_params]

    first = candidates()
    saved = {name: p.detach().clone() for name, p in params.items()}
    for variant in ("nearest", "biases to zero"):
        for _, name, i in first:
            value = params[name].view(-1)[i]
            zero = variant == "biases to zero" and name.endswith("bias") and abs(float(value)) < 1
            params[name].view(-1)[i] = 0.0 if zero else torch.round(value)
        if first and accepts(new):
            return new, {"candidates": len(first), "rounded": len(first), "mode": f"all at once ({variant})"}
        for name, p in params.items():
            p.copy_(saved[name])
    kept, tried = [], 2
    for _ in range(passes):
        changed = False
        for _, name, i in candidates():
            flat = params[name].view(-1)
            old = float(flat[i])
            for target in (round(old), math.floor(old) if round(old) > old else math.ceil(old)):
                flat[i] = target
                tried += 1
                if accepts(new):
                    kept.append(f"{name}[{i}]: {old:.4g} -> {target}")
                    changed = True
                    break
                flat[i] = old
        if not changed:
            break
    return new, {"candidates": len(first), "rounded": len(kept), "mode": "one at a time", "tried": tried,
                 "roundings": kept[:50]}


def influence(layers, H_in: int | None = None) -> np.ndarray:
    """Boolean (out, in) matrix: which inputs reach which outputs through the MLP's nonzero weights."""
    first = layers[0].weight.detach().cpu().numpy()
    reach = (first[:, :H_in] if H_in is not None else first) != 0
    for layer in layers[1:]:
        reach = ((layer.weight.detach().cpu().numpy() != 0).astype(np.int64) @ reach.astype(np.int64)) > 0
    return reach


@torch.no_grad()
def prune_dead_hidden(model: RNN) -> tuple[RNN | None, dict]:
    """Zero every hidden coordinate that can never influence an output, however many steps later.

    A coordinate is live when it reaches g's inputs directly or reaches a live coordinate through f's
    nonzero weights. Dead coordinates only feed dead ones, so setting them to 0 (zero write rows and bias,
    zero read columns) leaves the function exactly unchanged, and they stop adding dimensions to the states.
    """
    H = model.config.hidden_dim
    f, g = model.hidden_mlp.layers, model.output_mlp.layers
    step = influence(f, H)                       # step[i, j]: h_{t-1}[j] influences h_t[i]
    live = influence(g).any(axis=0)
    while True:
        grown = live | step[live].any(axis=0)
        if (grown == live).all():
            break
        live = grown
    dead = np.flatnonzero(~live)
    if not len(dead):
        return None, {"skipped": "every hidden coordinate reaches the output"}
    new = copy.deepcopy(model)
    nf, ng = new.hidden_mlp.layers, new.output_mlp.layers
    nf[-1].weight[dead] = 0.0
    nf[-1].bias[dead] = 0.0
    nf[0].weight[:, dead] = 0.0
    ng[0].weight[:, dead] = 0.0
    return new, {"dead": dead.tolist()}


# ---------------------------------------------------------------------------------------------------------
# The paper's network metrics


@torch.no_grad()
def network_metrics(model: RNN, threshold: float = 0.01) -> dict:
    """Neurons, effective hidden dim, nonzero / integer weights and biases, Σ|θ| (thresholds as the paper's).

    A hidden-state coordinate counts when it is both written (a weight or bias of f's last layer above the
    threshold) and read (by f's first layer or g's first layer); an MLP unit counts when it has an incoming
    and an outgoing weight above the threshold. A parameter is an integer when it is nonzero and within
    1e-6 of an integer.
    """
    H = model.config.hidden_dim
    f, g = model.hidden_mlp.layers, model.output_mlp.layers
    big = lambda t: t.abs() > threshold
    written = big(f[-1].weight).any(1) | big(f[-1].bias)
    read = big(f[0].weight[:, :H]).any(0) | big(g[0].weight).any(0)
    effective = int((written & read).sum())
    units = 0
    for layers in (f, g):
        for a, b in zip(layers[:-1], layers[1:], strict=True):
            units += int(((big(a.weight).any(1) | big(a.bias)) & big(b.weight).any(0)).sum())
    out = {"hidden_dim": H, "effective_hidden_dim": effective, "neurons": effective + units}
    for kind, plural in (("weight", "weights"), ("bias", "biases")):
        ps = torch.cat([p.flatten() for n, p in model.named_parameters() if n.endswith(kind)]).double()
        out[plural] = int(ps.numel())
        out[f"{plural}_nonzero"] = int(big(ps).sum())
        out[f"{plural}_integer"] = int((big(ps) & ((ps - ps.round()).abs() <= 1e-6)).sum())
    out["l1_norm"] = l1_value(model)
    return out


# ---------------------------------------------------------------------------------------------------------
# The whole hammering


@dataclass
class NormalizerStep:
    """What one normalizer did: applied, reverted (accuracy dropped / weights blew up) or skipped."""

    name: str
    status: str
    test_accuracy: float | None = None
    max_output_change: float | None = None
    info: dict = field(default_factory=dict)


@dataclass
class SimplifyResult:
    """The simplified network and the story of how it was obtained."""

    model: RNN
    before: dict
    after: dict
    l1_eps: float
    l1_curve: list[dict]
    steps: list[NormalizerStep]
    retrain: dict

    def report(self) -> dict:
        """The JSON written to before_after.json."""
        return {"before": self.before, "after": self.after, "l1_eps": self.l1_eps, "l1_curve": self.l1_curve,
                "normalizers": [asdict(s) for s in self.steps], "retrain": self.retrain}


@torch.no_grad()
def _output_change(a: RNN, b: RNN, x: torch.Tensor) -> float:
    """max |y_a − y_b| on a batch: how far a normalizer moved the function."""
    return float((a(x) - b(x)).abs().max())


def apply_checked(model: RNN, name: str, transform: Callable[[RNN], tuple[RNN | None, dict]], ds: Dataset,
                  base_accuracy: float, x_probe: torch.Tensor, device: str = "cpu") -> tuple[RNN, NormalizerStep]:
    """Apply one normalizer and keep it only if weights stay finite and bounded and accuracy holds."""
    candidate, info = transform(model)
    if candidate is None:
        return model, NormalizerStep(name, "skipped", info=info)
    params = torch.cat([p.detach().flatten() for p in candidate.parameters()])
    if not torch.isfinite(params).all() or params.abs().max() > MAX_WEIGHT:
        return model, NormalizerStep(name, "reverted", info=info | {"reason": f"weights above {MAX_WEIGHT:g}"})
    acc = test_accuracy(candidate, ds, device)
    change = _output_change(model, candidate, x_probe)
    if acc < base_accuracy:
        info = info | {"reason": f"test accuracy fell to {acc:.6f}"}
        return model, NormalizerStep(name, "reverted", acc, change, info)
    return candidate, NormalizerStep(name, "applied", acc, change, info)


def hammer(model: RNN, ds: Dataset, cfg: SimplifyConfig, base_accuracy: float,
           device: str = "cpu") -> tuple[RNN, list[NormalizerStep]]:
    """Run whiten → jnf → toeplitz → debias → quantize, each checked on the whole test split."""
    rng = np.random.default_rng(cfg.seed)
    train_rows = rng.choice(len(ds.x_train), min(cfg.state_rows, len(ds.x_train)), replace=False)
    x_probe = torch.as_tensor(ds.x_test[: cfg.eval_rows]).float().to(device)
    steps: list[NormalizerStep] = []

    def run(name: str, transform) -> None:
        nonlocal model
        model, step = apply_checked(model, name, transform, ds, base_accuracy, x_probe, device)
        log.info("normalizer %s: %s", name, step.status)
        steps.append(step)

    run("whiten", lambda m: whiten(m, hidden_states(m, ds.x_train[train_rows], device)[:, 1:], cfg.whiten_eps))
    run("jnf", lambda m: jordan_normalize(m, cfg.jnf_eps, cfg.jnf_rank_tol))
    jnf = steps[-1]
    blocks = [JordanBlock(b["start"], b["size"], b["kind"], complex(*b["eigenvalue"]))
              for b in jnf.info.get("blocks", [])] if jnf.status == "applied" else []
    run("toeplitz", lambda m: toeplitz_normalize(m, blocks, complex_form=cfg.complex_form) if blocks else
        (None, {"skipped": "the Jordan form step was not applied"}))
    run("debias", lambda m: debias(m, cfg.debias_eps))
    run("quantize", lambda m: quantize(m, cfg.quantize_tol))
    return model, steps


def _batch_check(model: RNN, ds: Dataset, cfg: SimplifyConfig, device: str) -> Callable[[RNN], bool]:
    """A fast check for greedy steps: accuracy on the evaluation batch no lower than ``model``'s."""
    n = min(cfg.eval_rows, len(ds.x_test))
    x = torch.as_tensor(ds.x_test[:n]).float().to(device)
    y = training_targets(model, ds.y_test[:n], device)
    loss = head_loss(model.config, ds.task.loss)
    target = _evaluate(model, x, y, loss, 0.0)[0]
    return lambda m: _evaluate(m, x, y, loss, 0.0)[0] >= target


def simplify(model: RNN, ds: Dataset, cfg: SimplifyConfig, device: str = "cpu") -> SimplifyResult:
    """L1 sweep → normalizers → retraining with frozen zeros → quantization → integer snapping → an integer
    recurrence (then snapping again) → pruning of dead hidden coordinates; every step keeps the whole-test
    accuracy, so the function never gets worse."""
    with intra_op_threads(cfg.threads):
        return _simplify(model, ds, cfg, device)


def _simplify(model: RNN, ds: Dataset, cfg: SimplifyConfig, device: str) -> SimplifyResult:
    torch.manual_seed(cfg.seed)
    model = model.to(device).eval()
    base = test_accuracy(model, ds, device)
    before = network_metrics(model, cfg.metric_threshold) | {"test_accuracy": base}
    model, eps, curve = l1_sweep(model, ds, cfg, base, device)
    model, steps = hammer(model, ds, cfg, base, device)
    model, retrain = retrain_frozen_zeros(model, ds, cfg, base, device)
    steps.append(NormalizerStep("retrain", "applied" if retrain["accepted"] else "reverted",
                                retrain["test_accuracy"], None, {"frozen_zeros": retrain["frozen_zeros"]}))
    x_probe = torch.as_tensor(ds.x_test[: cfg.eval_rows]).float().to(device)
    if retrain["accepted"]:
        model, step = apply_checked(model, "quantize_after_retrain", lambda m: quantize(m, cfg.quantize_tol),
                                    ds, base, x_probe, device)
        steps.append(step)
    on_batch = _batch_check(model, ds, cfg, device)
    snap = lambda m: snap_to_integers(m, on_batch, cfg.snap_tol, cfg.snap_max_params)
    model, step = apply_checked(model, "snap", snap, ds, base, x_probe, device)
    if step.status == "reverted":     # the batch let a harmful rounding through: judge each on the whole split
        on_split = lambda m: test_accuracy(m, ds, device) >= base
        model, step = apply_checked(model, "snap", lambda m: snap_to_integers(m, on_split, cfg.snap_tol, 50),
                                    ds, base, x_probe, device)
    steps.append(step)
    recurrence = lambda m: retrain_integer_recurrence(m, ds, cfg, base, device)
    model, step = apply_checked(model, "integer_recurrence", recurrence, ds, base, x_probe, device)
    steps.append(step)
    if step.status == "applied":
        model, step = apply_checked(model, "snap_after_recurrence", snap, ds, base, x_probe, device)
        steps.append(step)
    model, step = apply_checked(model, "prune", prune_dead_hidden, ds, base, x_probe, device)
    steps.append(step)
    after = network_metrics(model, cfg.metric_threshold) | {"test_accuracy": test_accuracy(model, ds, device)}
    return SimplifyResult(model, before, after, eps, curve, steps, retrain)


# ---------------------------------------------------------------------------------------------------------
# The stage


def _flat_metrics(result: SimplifyResult, input_perfect: bool) -> dict:
    """Record metrics: every paper metric as ``<name>_before`` / ``<name>_after`` plus the chosen ε."""
    out = {f"{k}_{when}": v for when, d in (("before", result.before), ("after", result.after))
           for k, v in d.items()}
    out.update({"l1_eps": result.l1_eps, "input_perfect": input_perfect,
                "retrain_accepted": result.retrain["accepted"],
                "normalizers": {s.name: s.status for s in result.steps}})
    return out


def run(task: Task, preset: str = "full", run_dir: Path | None = None, device: str = "cpu") -> Record:
    """The ``simplify`` stage: read the search's network, hammer it, write model.pt and before_after.json."""
    cfg = SimplifyConfig.for_preset(preset)
    search = require_record(task.id, "search", run_dir)
    stage = StageRun(task.id, "simplify", asdict(cfg) | {"preset": preset}, upstream={"search": search.key},
                     run_dir=run_dir)
    if (rec := stage.cached()) is not None:
        return rec
    model_path = stage_dir(task.id, "search", run_dir) / "model.pt"
    if not model_path.exists():
        return stage.finish({}, success=False, message=f"skipped: the search wrote no network ({search.message})")
    model = load_model(model_path, device)
    ds = dataset_for(task, preset)
    result = simplify(model, ds, cfg, device)
    save_model(result.model.cpu(), stage.path("model.pt"))
    write_json(stage.path("before_after.json"), result.report())
    metrics = _flat_metrics(result, search.success)
    acc = result.after["test_accuracy"]
    if not search.success:
        message = (f"the input network is imperfect (search success=False, test accuracy "
                   f"{result.before['test_accuracy']:.6f}); simplified anyway, function kept")
    elif acc < 1.0:
        message = f"simplified network is at {acc:.6f} on the test split"
    else:
        message = ""
    return stage.finish(metrics, success=search.success and acc == 1.0, message=message)


@dataclass
class SimplifyArtifacts:
    """What the stage left on disk, for the notebook: the record, both networks and before_after.json."""

    record: Record
    network_before: RNN | None
    network_after: RNN | None
    report: dict


def load_artifacts(task: Task, run_dir: Path | None = None, device: str = "cpu") -> SimplifyArtifacts:
    """Read ``runs/<task>/simplify/`` and the search's network it started from (None where missing)."""
    record = require_record(task.id, "simplify", run_dir)
    folder = stage_dir(task.id, "simplify", run_dir)
    before = stage_dir(task.id, "search", run_dir) / "model.pt"
    report = folder / "before_after.json"
    return SimplifyArtifacts(record,
                             load_model(before, device) if before.exists() else None,
                             load_model(folder / "model.pt", device) if (folder / "model.pt").exists() else None,
                             json.loads(report.read_text()) if report.exists() else {})
