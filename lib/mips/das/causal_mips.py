"""Are the integers MIPS read off a network its causal variables? Interchange tests on solved tasks.

Lattice extraction says each hidden state is h = z·A + b with integer z; regression then found the update
and output maps of z, and the emitted program runs them. Reading a variable is not the same as the network
*using* it: this stage swaps lattice coordinates between two runs of the simplified network and asks
whether the network then does what the program predicts after the same swap.

For a pair (source row, target row, source step s, target step t) and a swap group (one coordinate j, or
all k of them):

  network   h'_t = h_t + ((z_src − z_trg) ⊙ m)·A with z = (h − b)·A⁺, then run on the target's inputs
            x_{t+1}, .., x_T; outputs y_t .. y_T (rounded, or arg-max for classes)
  program   the fitted machine from the target's code z_t with the same coordinates replaced by the
            source's code, then the same inputs and outputs

IIA is the fraction of pairs where the network's outputs equal the program's at every step from t on. The
steps s and t are drawn independently (a state reached after 9 inputs can land at step 2), so the test
also covers states and sums the network never saw at that step. A control swaps a random direction of the
same dimension instead of a lattice axis (only when the hidden state has more dimensions than the lattice).
No alignment is learned here: the subspace is the one extraction fitted on training rows, and the pairs
come from the test split. Writes ``runs/<task>/causal/`` (``pairs.npz`` and the record). Explained in
notebooks/das_mips.ipynb.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mips import artifacts, codegen
from mips.data import dataset_for
from mips.models import RNN, load_model
from mips.tasks import Task

log = logging.getLogger(__name__)

UPSTREAM = ("program",)
STAGE = "causal"


@dataclass(frozen=True)
class CausalConfig:
    """How many test-split pairs per swap group, and how their steps are drawn."""

    n_pairs: int = 2000            # per swap group (each lattice coordinate, and all of them together)
    same_step: bool = False        # True: source and target swap at the same step
    seed: int = 0

    @classmethod
    def for_preset(cls, preset: str) -> CausalConfig:
        if preset == "full":
            return cls()
        if preset == "smoke":
            return cls(n_pairs=300)
        raise ValueError(f"unknown preset {preset!r}; choose 'smoke' or 'full'")


# ---------------------------------------------------------------------------------------------------------
# The program's side: the fitted machine, stepped on integer codes


class Machine:
    """The regressed machine of formulas.json: ``update(z, x) -> z'`` and ``output(z) -> y`` on arrays.

    The same formulas the emitted program runs (codegen.emit writes them into program.py verbatim).
    A state a lookup table does not cover has no defined successor; such rows are reported, not guessed.
    """

    def __init__(self, machine: dict):
        self.state_names = list(machine["state_names"])
        self.input_names = list(machine["input_names"])
        self.updates, self.outputs = machine["updates"], machine["outputs"]
        self.tables = {}
        for f in self.updates + self.outputs:
            if f.get("table"):
                rows = np.asarray(f["table"], dtype=np.int64)
                keys = rows[:, :-1]
                self.tables[f["table_name"]] = ({int(k[0]): int(v) for k, v in zip(keys, rows[:, -1], strict=True)}
                                                if keys.shape[1] == 1 else
                                                {tuple(int(a) for a in k): int(v)
                                                 for k, v in zip(keys, rows[:, -1], strict=True)})

    def _eval(self, formulas: list[dict], columns: dict[str, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
        out = np.zeros((n, len(formulas)), dtype=np.int64)
        ok = np.ones(n, dtype=bool)
        for i, f in enumerate(formulas):
            X = np.column_stack([columns[v] for v in f["variables"]]) if f["variables"] else np.zeros((n, 0))
            try:
                out[:, i] = codegen.evaluate(f["expression"], f["variables"], X, self.tables)
            except (KeyError, ZeroDivisionError):
                for r in range(n):        # find the rows that fail; the others still get their value
                    try:
                        out[r, i] = codegen.evaluate(f["expression"], f["variables"], X[r:r + 1], self.tables)[0]
                    except (KeyError, ZeroDivisionError):
                        ok[r] = False
        return out, ok

    def update(self, z: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cols = {n: z[:, i] for i, n in enumerate(self.state_names)}
        cols |= {n: x[:, i] for i, n in enumerate(self.input_names)}
        return self._eval(self.updates, cols, len(z))

    def output(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._eval(self.outputs, {n: z[:, i] for i, n in enumerate(self.state_names)}, len(z))

    def run_from(self, z: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outputs for the state z (already at step t) and then each input of x (n, m, I): (n, m+1, O)."""
        ys, ok = [], np.ones(len(z), dtype=bool)
        y, good = self.output(z)
        ys.append(y)
        ok &= good
        for s in range(x.shape[1]):
            z, good = self.update(z, x[:, s])
            ok &= good
            z = np.where(ok[:, None], z, 0)
            y, good = self.output(z)
            ok &= good
            ys.append(y)
        return np.stack(ys, axis=1), ok


# ---------------------------------------------------------------------------------------------------------
# The network's side: the simplified RNN with its state replaced at one step


@torch.no_grad()
def run_from(model: RNN, h: np.ndarray, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Raw outputs for state h (at step t) and then each input of x (n, m, I): (n, m+1, O)."""
    dtype = model.output_mlp.layers[0].weight.dtype
    state = torch.as_tensor(h, dtype=dtype, device=device)
    xs = torch.as_tensor(x, dtype=dtype, device=device)
    ys = [model.output_mlp(state)]
    for s in range(xs.shape[1]):
        state = model.step(state, xs[:, s])
        ys.append(model.output_mlp(state))
    return torch.stack(ys, dim=1).cpu().numpy()


def rounded(model: RNN, y: np.ndarray) -> np.ndarray:
    """Integer outputs: the arg-max class's value for a classifier, rounding otherwise (as extract reads them)."""
    return model.readout(torch.as_tensor(y)).numpy().astype(np.int64)


@dataclass
class Pairs:
    """Interchange pairs on the test split: rows and steps, and which swap group each pair swaps."""

    src_row: np.ndarray
    trg_row: np.ndarray
    src_step: np.ndarray      # 1..T (state after that many inputs)
    trg_step: np.ndarray      # 1..T-1 (so at least one input follows)
    group: np.ndarray         # 0..k-1: one lattice coordinate; k: all of them


def make_pairs(n_rows: int, T: int, k: int, cfg: CausalConfig) -> Pairs:
    """``cfg.n_pairs`` pairs per swap group (one group when k = 1: the coordinate is the whole lattice)."""
    if T < 2:
        raise ValueError("a causal test needs sequences of length >= 2")
    groups = k if k == 1 else k + 1
    n = cfg.n_pairs * groups
    rng = np.random.default_rng(cfg.seed)
    trg_step = rng.integers(1, T, size=n)
    src_step = trg_step.copy() if cfg.same_step else rng.integers(1, T + 1, size=n)
    return Pairs(rng.integers(n_rows, size=n), rng.integers(n_rows, size=n), src_step, trg_step,
                 np.repeat(np.arange(groups), cfg.n_pairs))


def swap_masks(k: int) -> np.ndarray:
    """(groups, k) 0/1: one row per coordinate, then (for k > 1) all coordinates."""
    eye = np.eye(k)
    return eye if k == 1 else np.vstack([eye, np.ones((1, k))])


@dataclass
class CausalResult:
    """Per pair: is the network's counterfactual the program's? Plus what both said, for display."""

    pairs: Pairs
    correct: np.ndarray           # (n,) network == program at every step from the swap on
    defined: np.ndarray           # (n,) the program's counterfactual exists (tables cover the states)
    changed: np.ndarray           # (n,) the swap changed the program's outputs (a non-trivial pair)
    net_outputs: np.ndarray       # (n, m, O) padded with -1 after the sequence's end
    program_outputs: np.ndarray
    original_outputs: np.ndarray  # the program without intervention
    control_correct: np.ndarray | None   # random-subspace swap instead of lattice axes (NaN: no control)


def interchange(model: RNN, states: np.ndarray, x: np.ndarray, machine: Machine, A: np.ndarray, b: np.ndarray,
                pairs: Pairs, device: str = "cpu", seed: int = 0) -> CausalResult:
    """Run every pair on the network (lattice swap) and on the machine (code swap); compare outputs."""
    k, H = A.shape
    T = x.shape[1]
    pinv = np.linalg.pinv(A)
    masks = swap_masks(k)[pairs.group]                                   # (n, k)
    h_trg = states[pairs.trg_row, pairs.trg_step]                        # (n, H)
    h_src = states[pairs.src_row, pairs.src_step]
    z_trg, z_src = (h_trg - b) @ pinv, (h_src - b) @ pinv
    h_new = h_trg + ((z_src - z_trg) * masks) @ A
    c_trg, c_src = np.round(z_trg).astype(np.int64), np.round(z_src).astype(np.int64)
    c_new = np.where(masks > 0, c_src, c_trg)
    rng = np.random.default_rng(seed + 1)
    dims = masks.sum(1).astype(int)
    with_control = dims < H                        # a random subspace of the whole space is no control
    h_ctl = h_trg.copy()
    for i in np.flatnonzero(with_control):
        Q, _ = np.linalg.qr(rng.standard_normal((H, dims[i])))    # a random subspace of the same dimension
        h_ctl[i] = h_trg[i] + (h_src[i] - h_trg[i]) @ Q @ Q.T
    n = len(h_trg)
    correct, defined, changed = (np.zeros(n, dtype=bool) for _ in range(3))
    ctl_ok = np.zeros(n, dtype=bool)
    net_out = prog_out = orig_out = None
    for t in np.unique(pairs.trg_step):                                 # same number of remaining inputs
        sel = np.flatnonzero(pairs.trg_step == t)
        rest = x[pairs.trg_row[sel], t:]                                 # inputs x_{t+1} .. x_T
        y_net = rounded(model, run_from(model, h_new[sel], rest, device))
        y_prog, ok = machine.run_from(c_new[sel], rest)
        y_orig, ok0 = machine.run_from(c_trg[sel], rest)
        d_out = y_net.shape[-1]
        if net_out is None:
            net_out, prog_out, orig_out = (np.full((n, T, d_out), -1, dtype=np.int64) for _ in range(3))
        m = y_net.shape[1]
        net_out[sel, :m], prog_out[sel, :m], orig_out[sel, :m] = y_net, y_prog, y_orig
        defined[sel] = ok
        correct[sel] = ok & (y_net == y_prog).all(axis=(1, 2))
        changed[sel] = ok & ok0 & (y_prog != y_orig).any(axis=(1, 2))
        if with_control[sel].any():
            y_ctl = rounded(model, run_from(model, h_ctl[sel], rest, device))
            ctl_ok[sel] = ok & (y_ctl == y_prog).all(axis=(1, 2))
    ctl = np.where(with_control, ctl_ok, np.nan) if with_control.any() else None
    return CausalResult(pairs, correct, defined, changed, net_out, prog_out, orig_out, ctl)


def summarize(res: CausalResult, k: int) -> dict:
    """IIA per swap group, pooled over single coordinates (``iia``) and for the joint swap (``iia_full``)."""
    groups = res.pairs.group
    d = res.defined
    per = {}
    for g in np.unique(groups):
        sel = (groups == g) & d
        name = "all" if g == k else f"h{g}" if k > 1 else "h"
        per[name] = {"iia": float(res.correct[sel].mean()) if sel.any() else None, "n_pairs": int(sel.sum()),
                     "changed": float(res.changed[sel].mean()) if sel.any() else None,
                     "undefined": int(((groups == g) & ~d).sum())}
        if res.control_correct is not None:
            per[name]["control_iia"] = _nanmean(res.control_correct[sel])
    single = (groups < k) & d
    full = (groups == k) & d if k > 1 else single
    out = {
        "iia": float(res.correct[single].mean()) if single.any() else None,
        "iia_full": float(res.correct[full].mean()) if full.any() else None,
        "n_pairs": int(single.sum()),
        "n_undefined": int((~d).sum()),
        "changed_fraction": float(res.changed[single].mean()) if single.any() else None,
        "iia_changed": float(res.correct[single & res.changed].mean()) if (single & res.changed).any() else None,
        "by_variable": per,
    }
    out["control_iia"] = None if res.control_correct is None else _nanmean(res.control_correct[single])
    return out


def _nanmean(v: np.ndarray) -> float | None:
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else None


def load_lattice(task_id: str, run_dir: Path | None) -> tuple[str, np.ndarray, np.ndarray]:
    """The extract stage's reading: its kind, and the lattice basis A (k, H) and offset b (H,)."""
    with np.load(artifacts.stage_dir(task_id, "extract", run_dir) / "states.npz", allow_pickle=False) as f:
        return str(f["kind"]), np.asarray(f["basis"], dtype=np.float64), np.asarray(f["offset"], dtype=np.float64)


def load_machine(task_id: str, run_dir: Path | None) -> Machine:
    """The regressed machine the program was emitted from."""
    return Machine(json.loads((artifacts.stage_dir(task_id, "regress", run_dir) / "formulas.json").read_text()))


def run(task: Task, preset: str = "full", run_dir: Path | None = None, device: str = "cpu") -> artifacts.Record:
    """The causal check of a solved task's lattice variables; a skip (success=False) says why when it cannot."""
    from mips.simplify import hidden_states

    cfg = CausalConfig.for_preset(preset)
    prog = artifacts.require_record(task.id, "program", run_dir)
    ext = artifacts.require_record(task.id, "extract", run_dir)
    upstream = {"program": prog.key, "extract": ext.key}
    stage = artifacts.StageRun(task.id, STAGE, asdict(cfg) | {"preset": preset}, upstream=upstream, run_dir=run_dir)
    if (rec := stage.cached()) is not None:
        return rec
    base = {"iia": None, "n_pairs": 0, "subspace_dim": 0}
    if not prog.metrics.get("solved"):
        return stage.finish(base, success=False, message="skipped: MIPS did not solve this task (no verified program)")
    kind, A, b = load_lattice(task.id, run_dir)
    if kind != "lattice" or len(A) == 0:
        return stage.finish(base, success=False,
                            message=f"skipped: the hidden states were read as {kind!r}, not an integer lattice")
    model = load_model(artifacts.stage_dir(task.id, "simplify", run_dir) / "model.pt", device).eval()
    machine = load_machine(task.id, run_dir)
    ds = dataset_for(task, preset)
    x = ds.x_test.astype(np.int64)
    states = hidden_states(model, x, device)
    pairs = make_pairs(len(x), x.shape[1], len(A), cfg)
    res = interchange(model, states, x, machine, A, b, pairs, device, cfg.seed)
    metrics = summarize(res, len(A)) | {"subspace_dim": int(len(A)), "hidden_dim": int(A.shape[1]),
                                        "variable_dim": 1}
    np.savez_compressed(stage.path("pairs.npz"), src_row=pairs.src_row, trg_row=pairs.trg_row,
                        src_step=pairs.src_step, trg_step=pairs.trg_step, group=pairs.group, correct=res.correct,
                        defined=res.defined, changed=res.changed, net_outputs=res.net_outputs,
                        program_outputs=res.program_outputs, original_outputs=res.original_outputs)
    log.info("%s: causal IIA %.3f on %d pairs (k=%d)", task.name, metrics["iia"] or float("nan"),
             metrics["n_pairs"], len(A))
    return stage.finish(metrics, success=metrics["iia"] is not None)


def load_pairs(task_id: str, run_dir: Path | None = None) -> dict[str, np.ndarray]:
    """The stage's pairs.npz as a dict."""
    with np.load(artifacts.stage_dir(task_id, STAGE, run_dir) / "pairs.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
