"""The `regress` stage: exact formulas for the update map (z_t, x_{t+1}) -> z_{t+1} and the output map
z_t -> y_t of the machine that `extract` read out of the network's hidden states.

The tables hold every time step of every sequence (the original fitted the last step of 1000 rows), reduced
to their distinct rows. Each target (one state coordinate or one output) is fitted on its own by the
methods below, in order; the first one exact on every row of the table wins:

  linear    least squares, coefficients rounded to integers (or small rationals with an exact ``//``);
  boolean   minimal sum/product of products (sympy) or a symmetric form (parity, threshold) when all
            variables are bits;
  symbolic  the enumerative search of :mod:`mips.symbolic`;
  pysr      PySR, only where the package and Julia are installed;
  table     the exact lookup table (an exact program, reported apart from formulas).

A finite-state machine's state numbers are arbitrary, so they are renumbered breadth-first from the start
state (which makes counters count), and, when the inputs are bits, the states are also encoded in
ceil(log2 n) bits under every code assignment (up to a budget) to find the shortest Boolean formulas.
Writes ``formulas.json``. Explained in notebooks/regress.ipynb.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import sympy
from tqdm import tqdm

from mips import artifacts, codegen, symbolic
from mips.tasks import Task

log = logging.getLogger(__name__)

UPSTREAM = ("extract",)
METHODS = ("linear", "boolean", "symbolic", "additive", "argmax", "pysr", "table")


@dataclass(frozen=True)
class RegressConfig:
    """Which methods to try, in order, and how far each may go."""

    methods: tuple[str, ...] = METHODS
    max_denominator: int = 12          # linear: rational coefficients p/q with q up to this
    max_boolean_vars: int = 8          # boolean: truth tables up to 2^8 rows
    max_symbolic_vars: int = 4         # symbolic: the enumerator's variables (after dropping unused ones)
    max_bit_assignments: int = 720     # FSM bit encodings tried (all of them when there are fewer)
    max_fsm_states_for_bits: int = 8
    table_max_rows: int = 4096         # table: the largest lookup table emitted
    max_argmax_classes: int = 16       # argmax: outputs with up to this many values
    max_argmax_coefficient: int = 64   # argmax: the largest integer score coefficient accepted
    symbolic: symbolic.SearchConfig = field(default_factory=symbolic.SearchConfig)
    seed: int = 0

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown regression methods {unknown}; choose from {', '.join(METHODS)}")


PRESETS = {
    "smoke": RegressConfig(max_bit_assignments=120,
                           symbolic=symbolic.SearchConfig(max_length=6, max_seconds=20.0)),
    "full": RegressConfig(),
}


def config_for(preset: str) -> RegressConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


@dataclass
class Formula:
    """One target's exact formula (or the reason there is none)."""

    name: str                          # the target: a state coordinate or an output
    method: str                        # linear | boolean | symbolic | pysr | table | none
    expression: str                    # Python expression over ``variables`` ("" when method is none)
    variables: list[str]
    exact: bool                        # exact on every row of the table
    rows: int = 0                      # distinct rows of the table
    length: int = 0                    # formula size (codegen.expression_length)
    seconds: float = 0.0
    latex: str = ""
    note: str = ""
    attempts: list[dict] = field(default_factory=list)   # per method tried: result and seconds
    table: list[list[int]] | None = None                 # methods table, additive: rows [*key, value]
    table_name: str = ""


@dataclass
class Machine:
    """The fitted machine: initial state, one update formula per state coordinate, one per output."""

    task: str
    kind: str
    state_names: list[str]
    input_names: list[str]
    output_names: list[str]
    initial_state: list[int]
    updates: list[Formula]
    outputs: list[Formula]
    state_description: str = ""
    encoding: dict = field(default_factory=dict)
    note: str = ""

    @property
    def formulas(self) -> list[Formula]:
        return self.updates + self.outputs

    @property
    def exact(self) -> bool:
        """Every target has an exact formula or table: a program can be emitted."""
        return all(f.exact for f in self.formulas)

    @property
    def method(self) -> str:
        """linear / boolean / symbolic / pysr / table when one method did every target, else mixed."""
        used = {f.method for f in self.formulas}
        return used.pop() if len(used) == 1 else "mixed"

    def score(self) -> tuple[int, int, int]:
        """Lower is better: targets without exact fit, tables, total formula size."""
        return (sum(not f.exact for f in self.formulas), sum(f.method == "table" for f in self.formulas),
                sum(f.length for f in self.formulas))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(exact=self.exact, method=self.method)
        return d


# ---------------------------------------------------------------------------------------------------------
# Tables


def unique_rows(M: np.ndarray) -> np.ndarray:
    """Distinct rows of an integer matrix (packed into one int64 key when the value ranges allow it)."""
    M = np.asarray(M, dtype=np.int64)
    if M.shape[0] == 0 or M.shape[1] == 0:
        return M[:1] if M.shape[1] == 0 else M
    lo = M.min(axis=0)
    span = M.max(axis=0) - lo + 1
    if float(np.prod(span.astype(np.float64))) < 2.0**62:
        key = np.zeros(len(M), dtype=np.int64)
        for c in range(M.shape[1]):
            key = key * span[c] + (M[:, c] - lo[c])
        _, idx = np.unique(key, return_index=True)
        return M[np.sort(idx)]
    return np.unique(M, axis=0)


def update_table(x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows [z_t, x_{t+1}] -> z_{t+1} from every time step: (n*T, k+I) and (n*T, k)."""
    k, d_in = z.shape[2], x.shape[2]
    X = np.concatenate([z[:, :-1, :], x], axis=2).reshape(-1, k + d_in)
    return X, z[:, 1:, :].reshape(-1, k)


def output_table(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows z_t -> y_t for t = 1..T: (n*T, k) and (n*T, O)."""
    return z[:, 1:, :].reshape(-1, z.shape[2]), y.reshape(-1, y.shape[2])


def distinct_table(X: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Distinct rows (X, t) and the number of X rows that map to more than one t (0 for a function)."""
    U = unique_rows(np.column_stack([X, t]))
    Xd, td = U[:, :-1], U[:, -1]
    return Xd, td, len(U) - len(unique_rows(Xd))


def relevant_columns(X: np.ndarray, t: np.ndarray) -> list[int]:
    """Columns the target depends on: drop each column whose removal keeps the table a function."""
    keep = list(range(X.shape[1]))
    for c in range(X.shape[1]):
        rest = [k for k in keep if k != c]
        if len(unique_rows(np.column_stack([X[:, rest], t]))) == len(unique_rows(X[:, rest])):
            keep = rest
    return keep


# ---------------------------------------------------------------------------------------------------------
# The methods. Each returns (expression or None, note); ``fit_target`` checks exactness.


def fit_linear(X: np.ndarray, t: np.ndarray, names: Sequence[str], cfg: RegressConfig, **_) -> tuple:
    """Least squares with an intercept; coefficients rounded to p/q (q <= max_denominator), exact or None."""
    n, v = X.shape
    cols: list[int] = []
    ones = np.ones((n, 1))
    for c in range(v):   # a maximal independent set of columns, so rounding sees unique coefficients
        A = np.column_stack([X[:, cols + [c]].astype(np.float64), ones])
        if np.linalg.matrix_rank(A) == len(cols) + 2:
            cols.append(c)
    A = np.column_stack([X[:, cols].astype(np.float64), ones])
    w = np.linalg.lstsq(A, t.astype(np.float64), rcond=None)[0]
    Ai = np.column_stack([X[:, cols], np.ones(n, np.int64)])
    for q in range(1, cfg.max_denominator + 1):
        p = np.round(w * q).astype(np.int64)
        if np.array_equal(Ai @ p, q * t):
            return linear_expression(p[:-1], int(p[-1]), [names[c] for c in cols], q), ""
    return None, "coefficients are not small rationals"


def linear_expression(coefs: Sequence[int], intercept: int, names: Sequence[str],
                      denominator: int = 1) -> str:
    """``2 * h - x + 3`` (or ``(h + x) // 2``) from integer coefficients."""
    terms = []
    for c, name in zip(coefs, names, strict=True):
        if c == 0:
            continue
        mag = name if abs(c) == 1 else f"{abs(c)} * {name}"
        terms.append(("-" if c < 0 else "+", mag))
    if intercept or not terms:
        terms.append(("-" if intercept < 0 else "+", str(abs(intercept))))
    expr = ("-" if terms[0][0] == "-" else "") + terms[0][1]
    for sign, mag in terms[1:]:
        expr += f" {sign} {mag}"
    return expr if denominator == 1 else f"({expr}) // {denominator}"


def fit_boolean(X: np.ndarray, t: np.ndarray, names: Sequence[str], cfg: RegressConfig, **_) -> tuple:
    """The shortest of sympy's minimal SOP/POS forms and symmetric forms, when every variable is a bit."""
    if not (np.isin(X, (0, 1)).all() and np.isin(t, (0, 1)).all()):
        return None, "not all variables are bits"
    if X.shape[1] > cfg.max_boolean_vars:
        return None, f"more than {cfg.max_boolean_vars} variables"
    ones = frozenset(map(tuple, X[t == 1].tolist()))
    zeros = frozenset(map(tuple, X[t == 0].tolist()))
    return boolean_formula(tuple(names), ones, zeros), ""


@functools.lru_cache(maxsize=4096)
def boolean_formula(names: tuple[str, ...], ones: frozenset, zeros: frozenset) -> str:
    """Shortest Python formula over bits true on ``ones``, false on ``zeros`` (other rows: don't care)."""
    v = len(names)
    if not ones:
        return "0"
    if not zeros:
        return "1"
    syms = sympy.symbols(names) if v > 1 else (sympy.Symbol(names[0]),)
    seen = ones | zeros
    dontcares = [list(r) for r in itertools.product((0, 1), repeat=v) if r not in seen]
    minterms = [list(r) for r in sorted(ones)]
    candidates = [_bool_python(sympy.SOPform(syms, minterms, dontcares)),
                  _bool_python(sympy.POSform(syms, minterms, dontcares))]
    candidates += _symmetric_forms(names, ones, zeros)
    return min(candidates, key=lambda e: (codegen.expression_length(e), len(e)))


def _symmetric_forms(names: Sequence[str], ones: frozenset, zeros: frozenset) -> list[str]:
    """Parity and threshold forms when the target depends only on the number of ones."""
    by_count: dict[int, set[int]] = {}
    for rows, val in ((ones, 1), (zeros, 0)):
        for r in rows:
            by_count.setdefault(sum(r), set()).add(val)
    if any(len(v) > 1 for v in by_count.values()):
        return []
    value = {s: v.pop() for s, v in by_count.items()}
    total = " + ".join(names)
    out = []
    if all(val == s % 2 for s, val in value.items()):
        out.append(" ^ ".join(names))
    if all(val == 1 - s % 2 for s, val in value.items()):
        out.append(f"1 - ({' ^ '.join(names)})" if len(names) > 1 else f"1 - {names[0]}")
    for k in range(len(names) + 1):
        if all(val == int(s >= k) for s, val in value.items()):
            out.append(f"int({total} >= {k})")
        if all(val == int(s <= k) for s, val in value.items()):
            out.append(f"int({total} <= {k})")
        if all(val == int(s == k) for s, val in value.items()):
            out.append(f"int({total} == {k})")
    return out


def _bool_python(e) -> str:
    """sympy logic -> Python over 0/1 ints: & | ^ and ``1 - a`` for not."""
    if e is sympy.true:
        return "1"
    if e is sympy.false:
        return "0"
    if isinstance(e, sympy.Symbol):
        return e.name
    if isinstance(e, sympy.Not):
        return f"1 - {_bool_atom(e.args[0])}"
    op = {sympy.And: " & ", sympy.Or: " | ", sympy.Xor: " ^ "}[type(e)]
    return op.join(_bool_atom(a) for a in sorted(e.args, key=sympy.default_sort_key))


def _bool_atom(e) -> str:
    s = _bool_python(e)
    return s if isinstance(e, sympy.Symbol) or e in (sympy.true, sympy.false) else f"({s})"


def fit_symbolic(X: np.ndarray, t: np.ndarray, names: Sequence[str], cfg: RegressConfig,
                 constants: Sequence[int] = (), **_) -> tuple:
    """The enumerative search (mips.symbolic) with the task's constants added to the defaults."""
    if X.shape[1] > cfg.max_symbolic_vars:
        return None, f"more than {cfg.max_symbolic_vars} variables"
    extra = tuple(c for c in dict.fromkeys(constants) if c not in cfg.symbolic.constants)
    res = symbolic.search(X, t, names, replace(cfg.symbolic, constants=cfg.symbolic.constants + extra,
                                                 seed=cfg.seed))
    if res.expression is None:
        return None, res.stopped
    return res.expression, f"length {res.length}, {res.candidates:,} candidates, {res.rounds} round(s)"


@functools.cache
def pysr_available() -> bool:
    """PySR needs its Python package and a Julia install; say once when they are missing."""
    ok = importlib.util.find_spec("pysr") is not None and shutil.which("julia") is not None
    if not ok:
        log.info("PySR is not available here (it needs the pysr package and Julia); regress skips it")
    return ok


def fit_pysr(X: np.ndarray, t: np.ndarray, names: Sequence[str], cfg: RegressConfig, **_) -> tuple:
    """PySR's equations, simplest first, rounded to integers; the first exact one. Not run on this machine."""
    if not pysr_available():
        return None, "pysr not available"
    from pysr import PySRRegressor

    model = PySRRegressor(niterations=40, binary_operators=["+", "-", "*"], unary_operators=["abs"],
                          random_state=cfg.seed, deterministic=True, parallelism="serial", verbosity=0,
                          progress=False)
    model.fit(X.astype(np.float64), t.astype(np.float64), variable_names=list(names))
    for eq in model.equations_.sort_values("complexity")["sympy_format"]:
        try:
            expr = codegen.sympy_to_python(sympy.nsimplify(eq, rational=True, tolerance=1e-6))
        except (ValueError, TypeError):
            continue
        if codegen.is_exact(expr, names, X, t):
            return expr, ""
    return None, "no PySR equation is exact"


def fit_table(X: np.ndarray, t: np.ndarray, names: Sequence[str], cfg: RegressConfig,
              table_name: str = "TABLE", **_) -> tuple:
    """The exact lookup table: no formula, but still an exact program on every state the network reached."""
    if len(X) > cfg.table_max_rows:
        return None, f"{len(X)} rows exceed table_max_rows={cfg.table_max_rows}"
    if not names:
        return None, "a constant needs no table"
    return f"{table_name}[{', '.join(names)}]", ""


def fit_additive(X: np.ndarray, t: np.ndarray, names: Sequence[str], cfg: RegressConfig,
                 inputs: Sequence[str] = (), table_name: str = "TABLE", **_) -> tuple:
    """Integer-linear in the state plus one offset per input symbol, ``h + 2 * h1 + D[x]``: the update of
    a counter or accumulator whose increment is any function of the current symbol (what a linear
    recurrence over one-hot inputs computes). Unlike a full table, it holds on states never seen.
    Returns (expression, note, table rows [*input key, offset]) or (None, reason)."""
    s_cols = [c for c, n in enumerate(names) if n not in inputs]
    i_cols = [c for c, n in enumerate(names) if n in inputs]
    if not s_cols or not i_cols:
        return None, "needs both state and input variables"
    keys, inverse = np.unique(X[:, i_cols], axis=0, return_inverse=True)
    design = np.column_stack([X[:, s_cols].astype(np.float64), np.eye(len(keys))[inverse.reshape(-1)]])
    w = np.round(np.linalg.lstsq(design, t.astype(np.float64), rcond=None)[0][: len(s_cols)]).astype(np.int64)
    if not w.any():
        return None, "no state term"
    offset = t - X[:, s_cols] @ w
    values = [np.unique(offset[inverse.reshape(-1) == k]) for k in range(len(keys))]
    if any(len(v) != 1 for v in values):
        return None, "the offset depends on more than the input"
    lookup = f"{table_name}[{', '.join(names[c] for c in i_cols)}]"
    expr = f"{linear_expression(w, 0, [names[c] for c in s_cols])} + {lookup}"
    return expr, "", [[*map(int, k), int(v[0])] for k, v in zip(keys, values, strict=True)]


def fit_argmax(X: np.ndarray, t: np.ndarray, names: Sequence[str], cfg: RegressConfig,
               inputs: Sequence[str] = (), table_name: str = "TABLE", **_) -> tuple:
    """An output read as the arg-max of integer-linear scores of the state, one per value: what a linear
    classification head computes, with the smallest integer coefficients a linear program finds.

    Each value v gets a score s_v = w_v · z + c_v with s_y > s_v for every other v on every row (class 0's
    score is 0; minimising Σ|w| keeps the rest small); the LP solution is scaled and rounded to integers.
    Returns (``argmax(s_0, s_1, ...)``, note) or, when the values are not 0..C-1, the arg-max through a
    table of values, with its rows.
    """
    from scipy.optimize import linprog

    values = np.unique(t)
    C, (n, k) = len(values), X.shape
    if inputs or not 2 <= C <= cfg.max_argmax_classes or k == 0:
        return None, "for outputs of the state with 2..max_argmax_classes values"
    F = np.column_stack([X, np.ones(n)]).astype(np.float64)          # features [z, 1]
    d = k + 1
    label = np.searchsorted(values, t)
    rows = []                                                        # (s_y - s_v) >= 1 as -(...) <= -1
    for v in range(C):
        sel = label != v
        for y in range(C):
            m = sel & (label == y)
            if not m.any():
                continue
            block = np.zeros((int(m.sum()), C * d))
            block[:, y * d:(y + 1) * d] -= F[m]
            block[:, v * d:(v + 1) * d] += F[m]
            rows.append(block)
    A = np.vstack(rows)[:, d:]                                        # class 0's score is fixed at 0
    nv = A.shape[1]
    res = linprog(np.ones(2 * nv), A_ub=np.hstack([A, -A]), b_ub=-np.ones(len(A)), bounds=(0, None),
                  method="highs")
    if res.status != 0:
        return None, "the values are not separated by linear scores of the state"
    w = np.concatenate([np.zeros(d), res.x[:nv] - res.x[nv:]]).reshape(C, d)
    for scale in (1, 2, 3, 4, 6, 8, 12):
        W = np.round(w * scale).astype(np.int64)
        if np.abs(W).max() > cfg.max_argmax_coefficient:
            break
        scores = np.column_stack([X, np.ones(n, np.int64)]) @ W.T
        if np.array_equal(np.argmax(scores, axis=1), label) and np.all(
                np.sort(scores, axis=1)[:, -1] > np.sort(scores, axis=1)[:, -2]):
            terms = ", ".join(linear_expression(W[c, :-1], int(W[c, -1]), names) for c in range(C))
            if np.array_equal(values, np.arange(values[0], values[0] + C)):
                shift = f" + {values[0]}" if values[0] > 0 else (f" - {-values[0]}" if values[0] < 0 else "")
                return f"argmax({terms}){shift}", ""
            return f"{table_name}[argmax({terms})]", "", [[c, int(values[c])] for c in range(C)]
    return None, "no small integer scores separate the values"


WHOLE_STATE = {"argmax"}               # methods fitted on every variable, not only the ones the rows need
FITTERS = {"linear": fit_linear, "boolean": fit_boolean, "symbolic": fit_symbolic, "additive": fit_additive,
           "argmax": fit_argmax, "pysr": fit_pysr, "table": fit_table}


def fit_target(name: str, X: np.ndarray, t: np.ndarray, names: Sequence[str], cfg: RegressConfig,
               constants: Sequence[int] = (), table_name: str = "", methods: Sequence[str] | None = None,
               inputs: Sequence[str] = ()) -> Formula:
    """Fit one target on its table with each method in turn; the first exact one wins. ``inputs`` names
    the input variables among ``names`` (the rest are state)."""
    start = time.time()
    Xd, td, conflicts = distinct_table(X, t)
    if conflicts:
        return Formula(name, "none", "", list(names), False, rows=len(Xd), seconds=time.time() - start,
                       note=f"not a function: {conflicts} input row(s) lead to more than one value")
    keep = relevant_columns(Xd, td)
    U = unique_rows(np.column_stack([Xd[:, keep], td]))
    Xr, tr, used = U[:, :-1], U[:, -1], [names[c] for c in keep]
    table_name = table_name or f"TABLE_{name.upper()}"
    attempts = []
    for method in methods or cfg.methods:
        t0 = time.time()
        if method in WHOLE_STATE:      # every variable: dropping one that the seen rows happen not to need
            Xr, tr, used = Xd, td, list(names)        # would not generalize (the LP keeps the needed ones)
        else:
            Xr, tr, used = U[:, :-1], U[:, -1], [names[c] for c in keep]
        expr, note, *extra = FITTERS[method](Xr, tr, used, cfg, constants=constants, table_name=table_name,
                                             inputs=inputs)
        rows = np.column_stack([Xr, tr]).tolist() if method == "table" else (extra[0] if extra else None)
        tables = {table_name: _table_dict(np.asarray(rows)[:, :-1], np.asarray(rows)[:, -1])} if rows else None
        exact = expr is not None and codegen.is_exact(expr, used, Xr, tr, tables)
        attempts.append({"method": method, "seconds": round(time.time() - t0, 4),
                         "result": "exact" if exact else (note or "not exact")})
        if not exact:
            continue
        if method in ("linear", "symbolic", "pysr"):
            expr = codegen.tidy(expr, used, Xr, tr)
        formula = Formula(name, method, expr, used, True, rows=len(Xr),
                          length=codegen.expression_length(expr), seconds=round(time.time() - start, 4),
                          latex=codegen.to_latex(expr, used), note=note, attempts=attempts)
        if rows:
            formula.table, formula.table_name = rows, table_name
        return formula
    return Formula(name, "none", "", used, False, rows=len(Xr), seconds=round(time.time() - start, 4),
                   note="no method fit exactly", attempts=attempts)


def _table_dict(X: np.ndarray, t: np.ndarray) -> dict:
    if X.shape[1] == 1:
        return {int(k): int(v) for k, v in zip(X[:, 0], t, strict=True)}
    return {tuple(int(a) for a in k): int(v) for k, v in zip(X, t, strict=True)}


# ---------------------------------------------------------------------------------------------------------
# Machines


def state_names(k: int) -> list[str]:
    return ["h"] if k == 1 else [f"h{i}" for i in range(k)]


def input_names(d_in: int) -> list[str]:
    return ["x"] if d_in == 1 else ([chr(ord("a") + i) for i in range(d_in)] if d_in <= 6
                                    else [f"x{i}" for i in range(d_in)])


def output_names(d_out: int) -> list[str]:
    return ["y"] if d_out == 1 else [f"y{i}" for i in range(d_out)]


DESCRIPTIONS = {
    "lattice": "integer lattice coordinates of the hidden state",
    "bits": "bits read from the hidden state",
    "fsm": "state of the minimized finite-state machine, numbered breadth-first from the start",
    "fsm_bits": "bits encoding the finite-state machine's state",
}


def fit_tables(X_up: np.ndarray, Z_next: np.ndarray, Z_out: np.ndarray, Y: np.ndarray,
               names: tuple[list[str], list[str], list[str]], cfg: RegressConfig, task: str = "",
               constants: Sequence[int] = (), methods: Sequence[str] | None = None,
               progress: bool = True) -> tuple[list[Formula], list[Formula]]:
    """Fit every state coordinate on the update table and every output on the output table."""
    s_names, i_names, o_names = names
    k = len(s_names)
    U = unique_rows(np.column_stack([X_up, Z_next]))        # deduplicate once for all coordinates
    V = unique_rows(np.column_stack([Z_out, Y]))
    jobs = [("update", c) for c in range(k)] + [("output", o) for o in range(len(o_names))]
    updates, outputs = [], []
    for role, c in tqdm(jobs, desc=f"regress {task}", disable=not progress, leave=False):
        if role == "update":
            v = X_up.shape[1]
            updates.append(fit_target(s_names[c], U[:, :v], U[:, v + c], s_names + i_names, cfg, constants,
                                      f"NEXT_{s_names[c].upper()}", methods, inputs=i_names))
        else:
            outputs.append(fit_target(o_names[c], V[:, :k], V[:, k + c], s_names, cfg, constants,
                                      f"OUT_{o_names[c].upper()}", methods))
    return updates, outputs


def fit_representation(x: np.ndarray, y: np.ndarray, z: np.ndarray, cfg: RegressConfig, task: str,
                       kind: str, constants: Sequence[int] = (), encoding: dict | None = None) -> Machine:
    """The machine read with z as its state coordinates, fitted on tables from all time steps."""
    names = state_names(z.shape[2]), input_names(x.shape[2]), output_names(y.shape[2])
    updates, outputs = fit_tables(*update_table(x, z), *output_table(z, y), names, cfg, task, constants)
    init = unique_rows(z[:, 0, :])
    note = "" if len(init) == 1 else f"{len(init)} different initial states; using the first"
    encoding = encoding or {"type": kind}
    return Machine(task, kind, *names, [int(v) for v in init[0]], updates, outputs,
                   DESCRIPTIONS.get(encoding["type"], "integer state"), encoding, note)


def canonical_fsm_labels(x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """Renumber FSM states breadth-first from the start state, inputs in increasing order.

    Counters then count: in Add_Mod_3 the state reached by reading 1 from the start becomes 1.
    """
    X_up, Z_next = update_table(x, z)
    rows = unique_rows(np.column_stack([X_up, Z_next]))
    step: dict[int, list] = {}
    for r in rows.tolist():
        step.setdefault(r[0], []).append((tuple(r[1:-1]), r[-1]))
    start = int(z[0, 0, 0])
    order, queue = [start], [start]
    while queue:
        s = queue.pop(0)
        for _, nxt in sorted(step.get(s, [])):
            if nxt not in order:
                order.append(nxt)
                queue.append(nxt)
    order += sorted(set(np.unique(z).tolist()) - set(order))
    labels = {old: new for new, old in enumerate(order)}
    states = np.array(sorted(labels))
    new = np.array([labels[s] for s in states.tolist()])
    return new[np.searchsorted(states, z)], labels


def fit_fsm_bits(x: np.ndarray, y: np.ndarray, z: np.ndarray, cfg: RegressConfig, task: str = "",
                 ) -> Machine | None:
    """Encode the n FSM states in ceil(log2 n) bits; search code assignments for the shortest Boolean fit.

    The start state gets code 0 (flipping a bit only negates formulas); the others are tried in every
    order, up to ``max_bit_assignments`` (a seeded sample beyond that). Returns None if none is all-Boolean.
    """
    n = int(z.max()) + 1
    m = max(1, math.ceil(math.log2(n)))
    start = int(z[0, 0, 0])
    # Distinct transitions and outputs once; the search never touches the full data again.
    trans = unique_rows(np.column_stack(update_table(x, z)))
    outs = unique_rows(np.column_stack(output_table(z, y)))
    names = state_names(m), input_names(x.shape[2]), output_names(y.shape[2])
    others = [s for s in range(n) if s != start]
    if math.perm(2**m - 1, n - 1) <= cfg.max_bit_assignments:
        perms = itertools.permutations(range(1, 2**m), n - 1)
    else:
        rng = np.random.default_rng(cfg.seed)
        perms = (rng.permutation(np.arange(1, 2**m))[:n - 1] for _ in range(cfg.max_bit_assignments))
    best: Machine | None = None
    for perm in perms:
        codes = np.zeros(n, dtype=np.int64)
        codes[others] = perm
        bits = (codes[:, None] >> np.arange(m)) & 1            # (n, m): the code of each state
        X_up = np.column_stack([bits[trans[:, 0]], trans[:, 1:-1]])
        updates, outputs = fit_tables(X_up, bits[trans[:, -1]], bits[outs[:, 0]], outs[:, 1:], names, cfg,
                                      task, methods=("boolean",), progress=False)
        encoding = {"type": "fsm_bits", "codes": {s: int(c) for s, c in enumerate(codes)}}
        machine = Machine(task, "fsm", *names, bits[start].tolist(), updates, outputs,
                          DESCRIPTIONS["fsm_bits"], encoding)
        if machine.exact and (best is None or machine.score() < best.score()):
            best = machine
    return best


def fit_machine(x: np.ndarray, y: np.ndarray, z: np.ndarray, kind: str = "lattice",
                config: RegressConfig | None = None, task: str = "",
                constants: Sequence[int] = ()) -> Machine:
    """Fit the machine behind extracted states: x (n, T, I) inputs, y (n, T, O) outputs, z (n, T+1, k) codes.

    For an FSM (k = 1, z = state index), the states are renumbered first and, when the integer numbering
    needs tables and the inputs are bits, bit encodings are searched for an all-Boolean machine.
    """
    cfg = config or RegressConfig()
    x, y, z = (np.asarray(a, dtype=np.int64) for a in (x, y, z))
    if not (z.ndim == x.ndim == y.ndim == 3 and z.shape[1] == x.shape[1] + 1 and y.shape[:2] == x.shape[:2]):
        raise ValueError(f"expected x (n,T,I), y (n,T,O), z (n,T+1,k); got {x.shape}, {y.shape}, {z.shape}")
    if kind != "fsm":
        return fit_representation(x, y, z, cfg, task, kind, constants)
    if z.shape[2] != 1:
        raise ValueError(f"an fsm has one state index per step; z has {z.shape[2]} columns")
    zc, labels = canonical_fsm_labels(x, z)
    n = len(labels)
    machine = fit_representation(x, y, zc, cfg, task, "fsm", tuple(constants) + (n,),
                                 encoding={"type": "fsm", "labels": {int(k): v for k, v in labels.items()}})
    if machine.score()[:2] != (0, 0) and 2 < n <= cfg.max_fsm_states_for_bits and np.isin(x, (0, 1)).all():
        t0 = time.time()
        alt = fit_fsm_bits(x, y, zc, cfg, task)
        log.info("%s: bit-encoding search %s in %.1fs", task, "found an all-Boolean machine" if alt else
                 "found nothing better", time.time() - t0)
        if alt is not None and alt.score() < machine.score():
            alt.encoding["labels"] = machine.encoding["labels"]
            return alt
    return machine


def encode_states(z: np.ndarray, encoding: dict) -> np.ndarray:
    """Extracted codes z (n, T+1, k) in the fitted machine's coordinates (renumbered or bit-encoded)."""
    if encoding.get("type") not in ("fsm", "fsm_bits"):
        return z
    labels = {int(k): int(v) for k, v in encoding["labels"].items()}
    states = np.array(sorted(labels))
    z = np.array([labels[s] for s in states.tolist()])[np.searchsorted(states, z[..., 0])]
    if encoding["type"] == "fsm":
        return z[..., None]
    codes = {int(k): int(v) for k, v in encoding["codes"].items()}
    code = np.array([codes[s] for s in range(len(codes))])[z]
    m = max(1, math.ceil(math.log2(len(codes))))        # as in fit_fsm_bits
    return (code[..., None] >> np.arange(m)) & 1


def machine_tables(states: dict, machine: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The distinct rows each formula was fitted on, in the machine's own variables: name -> (X, target)."""
    z = encode_states(np.asarray(states["z"], dtype=np.int64), machine["encoding"])
    X_up, Z_next = update_table(np.asarray(states["x"], dtype=np.int64), z)
    Z_out, Y = output_table(z, np.asarray(states["y"], dtype=np.int64))
    columns = machine["state_names"] + machine["input_names"]
    out = {}
    for c, f in enumerate(machine["updates"]):
        idx = [columns.index(v) for v in f["variables"]]
        U = unique_rows(np.column_stack([X_up[:, idx], Z_next[:, c]]))
        out[f["name"]] = (U[:, :-1], U[:, -1])
    for o, f in enumerate(machine["outputs"]):
        idx = [machine["state_names"].index(v) for v in f["variables"]]
        U = unique_rows(np.column_stack([Z_out[:, idx], Y[:, o]]))
        out[f["name"]] = (U[:, :-1], U[:, -1])
    return out


def recheck(states: dict, machine: dict) -> dict[str, bool]:
    """Each saved formula re-evaluated on its table from the extracted states: name -> exact."""
    tables = machine_tables(states, machine)
    out = {}
    for f in machine["updates"] + machine["outputs"]:
        X, t = tables[f["name"]]
        lookup = None
        if f.get("table"):
            lookup = {f["table_name"]: _table_dict(np.asarray(f["table"])[:, :-1], np.asarray(f["table"])[:, -1])}
        out[f["name"]] = bool(f["exact"]) and codegen.is_exact(f["expression"], f["variables"], X, t, lookup)
    return out


def summary(machine: dict) -> list[dict]:
    """One row per target: the winning method, formula size, table rows, seconds and what was tried."""
    return [{"target": f["name"], "map": "update" if f in machine["updates"] else "output",
             "method": f["method"], "size": f["length"], "rows": f["rows"], "seconds": f["seconds"],
             "tried": ", ".join(f"{a['method']} ({a['result']})" for a in f["attempts"])}
            for f in machine["updates"] + machine["outputs"]]


# ---------------------------------------------------------------------------------------------------------
# The stage


def task_constants(task: Task) -> tuple[int, ...]:
    """Constants a task suggests to the enumerator: its alphabet's size and largest value."""
    return (len(task.input_values), max(task.input_values))


def load_states(task_id: str, run_dir: Path | None = None) -> dict[str, np.ndarray]:
    """The extract stage's states.npz as a dict of arrays (``kind`` as a str)."""
    path = artifacts.stage_dir(task_id, "extract", run_dir) / "states.npz"
    with np.load(path, allow_pickle=False) as f:
        out = {k: f[k] for k in f.files}
    out["kind"] = str(out["kind"])
    return out


def metrics_of(machine: Machine) -> dict:
    """The numbers the record keeps: method per target, counts of exact formulas and tables."""
    return {
        "kind": machine.kind,
        "encoding": machine.encoding.get("type", machine.kind),
        "n_targets": len(machine.formulas),
        "n_exact": sum(f.exact for f in machine.formulas),
        "n_formulas": sum(f.exact and f.method != "table" for f in machine.formulas),
        "n_tables": sum(f.method == "table" for f in machine.formulas),
        "methods": {f.name: f.method for f in machine.formulas},
        "expressions": {f.name: f.expression for f in machine.formulas},
        "seconds_per_target": {f.name: f.seconds for f in machine.formulas},
        "table_rows": {f.name: f.rows for f in machine.formulas},
        "lookup_rows": sum(len(f.table or []) for f in machine.formulas if f.method == "table"),
        "method": machine.method,
        "success": machine.exact,
    }


def run(task: Task, preset: str = "full", run_dir: Path | None = None,
        device: str = "cpu") -> artifacts.Record:
    """Fit exact formulas to the extracted machine and write formulas.json (device is unused: numpy)."""
    cfg = config_for(preset)
    ext = artifacts.require_record(task.id, "extract", run_dir)
    stage = artifacts.StageRun(task.id, "regress", asdict(cfg), upstream={"extract": ext.key},
                               run_dir=run_dir)
    if (rec := stage.cached()) is not None:
        return rec
    if not ext.success:
        return stage.finish({"success": False, "skipped": True}, success=False,
                            message=f"skipped: the extract stage failed ({ext.message})")
    states = load_states(task.id, run_dir)
    machine = fit_machine(states["x"], states["y"], states["z"], states["kind"], cfg, task.name,
                          task_constants(task))
    artifacts.write_json(stage.path("formulas.json"), machine.to_dict())
    metrics = metrics_of(machine)
    missing = [f"{f.name} ({f.note})" for f in machine.formulas if not f.exact]
    message = "" if machine.exact else "no exact fit for " + "; ".join(missing)
    log.info("%s: regress %s", task.name, metrics["methods"])
    return stage.finish(metrics, success=machine.exact, message=message)
