"""Exact enumerative symbolic regression over integer expressions (the built-in SR backend of `regress`).

Expressions are built bottom-up by length (number of nodes: variables, constants and operators) from
constants, ``+ - *``, ``//`` and ``%`` (Python semantics, zero divisors excluded), ``abs``, unary minus,
``min``, ``max`` and comparisons (as 0/1). Every candidate is represented by its value vector on a small
sample of the table's distinct rows, and only the first (shortest) expression per value vector is kept
(observational-equivalence pruning). Vectors are identified by a linear 64-bit hash, which also lets the top
``+`` and ``-`` of the longest expressions be found by lookup instead of enumeration (meet in the middle).
A candidate that fits the sample but not the whole table adds its failing rows to the sample and the search
runs again (counterexample-guided), so the answer is exact on every row. Explained in notebooks/regress.ipynb.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

LEAF_VAR, LEAF_CONST = -1, -2
VALUE_BOUND = 2**31  # candidates with larger values are dropped, so products of two stay inside int64
_CHUNK = 1 << 22     # elements per broadcast block (rows x candidates)


@dataclass(frozen=True)
class Op:
    """One operator: its numpy implementation and how it prints as Python."""

    name: str
    arity: int
    symbol: str
    precedence: int          # Python precedence: higher binds tighter; 100 = an atom (call or int(...))
    commutative: bool = False


# Python precedence levels used by the printer.
_ADD, _MUL, _UNARY, _ATOM = 10, 20, 30, 100

UNARY_OPS = {
    "neg": Op("neg", 1, "-", _UNARY),
    "abs": Op("abs", 1, "abs", _ATOM),
}
BINARY_OPS = {
    "add": Op("add", 2, "+", _ADD, commutative=True),
    "sub": Op("sub", 2, "-", _ADD),
    "mul": Op("mul", 2, "*", _MUL, commutative=True),
    "floordiv": Op("floordiv", 2, "//", _MUL),
    "mod": Op("mod", 2, "%", _MUL),
    "min": Op("min", 2, "min", _ATOM, commutative=True),
    "max": Op("max", 2, "max", _ATOM, commutative=True),
    "eq": Op("eq", 2, "==", _ATOM, commutative=True),
    "ne": Op("ne", 2, "!=", _ATOM, commutative=True),
    "lt": Op("lt", 2, "<", _ATOM),
    "le": Op("le", 2, "<=", _ATOM),
}
_COMPARISONS = ("eq", "ne", "lt", "le")


def apply_op(name: str, a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Evaluate one operator on int64 arrays with Python's integer semantics (floor division, sign of mod)."""
    match name:
        case "neg":
            return np.negative(a)
        case "abs":
            return np.abs(a)
        case "add":
            return a + b
        case "sub":
            return a - b
        case "mul":
            return a * b
        case "floordiv":
            return np.floor_divide(a, b)
        case "mod":
            return np.mod(a, b)
        case "min":
            return np.minimum(a, b)
        case "max":
            return np.maximum(a, b)
        case "eq":
            return (a == b).astype(np.int64)
        case "ne":
            return (a != b).astype(np.int64)
        case "lt":
            return (a < b).astype(np.int64)
        case "le":
            return (a <= b).astype(np.int64)
    raise ValueError(f"unknown operator {name!r}")


@dataclass(frozen=True)
class Node:
    """An expression tree: a variable (index), a constant (value) or an operator over children."""

    op: str                      # "var", "const" or an operator name
    value: int = 0               # variable index or constant
    children: tuple[Node, ...] = ()

    @property
    def length(self) -> int:
        """Number of nodes: the expression's size in the enumeration."""
        return 1 + sum(c.length for c in self.children)

    def evaluate(self, X: np.ndarray) -> np.ndarray:
        """Values on the rows of X (n, n_vars); raises ZeroDivisionError where a divisor is 0, like Python."""
        if self.op == "var":
            return X[:, self.value].astype(np.int64)
        if self.op == "const":
            return np.full(len(X), self.value, dtype=np.int64)
        args = [c.evaluate(X) for c in self.children]
        if self.op in ("floordiv", "mod") and not np.all(args[1]):
            raise ZeroDivisionError("integer division or modulo by zero")
        return apply_op(self.op, *args)

    def render(self, names: Sequence[str]) -> tuple[str, int]:
        """Python source and its precedence, with the fewest parentheses that keep Python's meaning."""
        if self.op == "var":
            return names[self.value], _ATOM
        if self.op == "const":
            return str(self.value), (_UNARY if self.value < 0 else _ATOM)
        if self.op == "neg":
            s, p = self.children[0].render(names)
            return "-" + (f"({s})" if p < _UNARY else s), _UNARY
        if self.op == "abs":
            return f"abs({self.children[0].render(names)[0]})", _ATOM
        (ls, lp), (rs, rp) = (c.render(names) for c in self.children)
        op = BINARY_OPS[self.op]
        if self.op in ("min", "max"):
            return f"{self.op}({ls}, {rs})", _ATOM
        if self.op in _COMPARISONS:
            return f"int({ls} {op.symbol} {rs})", _ATOM
        if lp < op.precedence:
            ls = f"({ls})"
        same_assoc = self.op in ("add", "mul") and self.children[1].op == self.op
        if rp < op.precedence or (rp == op.precedence and not same_assoc):
            rs = f"({rs})"
        return f"{ls} {op.symbol} {rs}", op.precedence

    def to_python(self, names: Sequence[str]) -> str:
        return self.render(names)[0]


@dataclass(frozen=True)
class SearchConfig:
    """What the enumerator may build and how hard it tries.

    ``max_length`` counts nodes, e.g. ``abs(x - a)`` has length 4 and ``(a + x) % 3`` length 5.
    """

    max_length: int = 7
    constants: tuple[int, ...] = (-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
    unary: tuple[str, ...] = ("neg", "abs")
    binary: tuple[str, ...] = ("add", "sub", "mul", "floordiv", "mod", "min", "max", "eq", "ne", "lt", "le")
    sample_rows: int = 32          # distinct rows the first round enumerates on (all of them if fewer)
    max_sample_rows: int = 128     # the sample never grows beyond this
    max_rounds: int = 6            # counterexample-guided restarts
    max_false_positives: int = 16  # sample-exact but table-wrong candidates tolerated per round
    max_bank: int = 2_000_000      # stored expressions over all lengths; larger searches stop early
    max_seconds: float = 120.0
    seed: int = 0

    def __post_init__(self):
        unknown = [o for o in self.unary if o not in UNARY_OPS]
        unknown += [o for o in self.binary if o not in BINARY_OPS]
        if unknown:
            raise ValueError(f"unknown operators {unknown}; choose from {list(UNARY_OPS) + list(BINARY_OPS)}")
        if self.max_length < 3:
            raise ValueError(f"max_length must be >= 3, got {self.max_length}")


@dataclass
class SearchResult:
    """The outcome of one search: the shortest exact expression (or None) and what it cost."""

    expression: str | None
    node: Node | None
    length: int
    seconds: float
    candidates: int                 # value vectors computed, over all rounds
    rounds: int
    sample_rows: int
    stopped: str = ""               # why the search ended without an answer ("" when it found one)
    rejected: int = 0               # candidates exact on the sample but not on the table
    bank_sizes: list[int] = field(default_factory=list)


class _Budget(Exception):
    """Raised inside the enumeration when the time or memory budget is spent."""


class _Found(Exception):
    def __init__(self, node: Node):
        self.node = node


_OP_NAMES = list(UNARY_OPS) + list(BINARY_OPS)
_OP_ID = {name: k for k, name in enumerate(_OP_NAMES)}


class Enumerator:
    """Bottom-up enumeration on one sample of rows; ``search`` drives it round by round.

    Each stored length keeps ``vals`` (n, R) int64 value vectors, their hashes, a flag for expressions
    without variables, and provenance rows ``(op, left length, left index, right length, right index)``
    (op -1 = variable, -2 = constant; right length -1 for unary operators).
    """

    def __init__(self, X: np.ndarray, target: np.ndarray, config: SearchConfig, check, deadline: float):
        self.X, self.t, self.cfg, self.check, self.deadline = X, target, config, check, deadline
        self.R = X.shape[0]
        self.w = np.random.default_rng(config.seed).integers(1, 2**62, size=self.R, dtype=np.int64) | 1
        self.h_t = self._hash(target[None, :])[0]
        self.vals: dict[int, np.ndarray] = {}
        self.hashes: dict[int, np.ndarray] = {}
        self.is_const: dict[int, np.ndarray] = {}
        self.prov: dict[int, np.ndarray] = {}
        self.seen = np.empty(0, dtype=np.int64)  # sorted hashes of everything stored
        self.stored = 0
        self.candidates = 0
        self.false_positives: list[np.ndarray] = []
        self.fallback: Node | None = None

    # -- bookkeeping ------------------------------------------------------------------------------------
    def _hash(self, v: np.ndarray) -> np.ndarray:
        """Linear 64-bit hash of value vectors (wrapping arithmetic): h(a - b) = h(a) - h(b)."""
        return (v * self.w).sum(axis=-1)

    def _tick(self, n: int) -> None:
        self.candidates += n
        if time.time() > self.deadline:
            raise _Budget("time budget spent")

    def node(self, length: int, idx: int) -> Node:
        """Rebuild the tree of a stored expression."""
        return self._decode(self.prov[length][idx])

    def _decode(self, row) -> Node:
        op, li, la, rj, rb = (int(v) for v in row)
        if op == LEAF_VAR:
            return Node("var", la)
        if op == LEAF_CONST:
            return Node("const", self.cfg.constants[la])
        if rj < 0:
            return Node(_OP_NAMES[op], children=(self.node(li, la),))
        return Node(_OP_NAMES[op], children=(self.node(li, la), self.node(rj, rb)))

    def _store(self, length: int, vals: np.ndarray, consts: np.ndarray, prov: np.ndarray) -> None:
        """Append the vectors not seen before (at this or any shorter length), first occurrence first."""
        h = self._hash(vals)
        fresh = ~np.isin(h, self.seen)
        _, first = np.unique(h[fresh], return_index=True)
        keep = np.flatnonzero(fresh)[np.sort(first)]
        for store, new in ((self.vals, vals[keep]), (self.hashes, h[keep]), (self.is_const, consts[keep]),
                           (self.prov, prov[keep])):
            store[length] = np.concatenate([store[length], new]) if length in store else new
        self.seen = np.union1d(self.seen, h[keep])
        self.stored += len(keep)
        if self.stored > self.cfg.max_bank:
            raise _Budget(f"bank limit of {self.cfg.max_bank} expressions reached")

    def _empty(self, length: int) -> None:
        self.vals.setdefault(length, np.empty((0, self.R), np.int64))
        self.hashes.setdefault(length, np.empty(0, np.int64))
        self.is_const.setdefault(length, np.empty(0, bool))
        self.prov.setdefault(length, np.empty((0, 5), np.int64))

    def _accept(self, node: Node) -> None:
        """A sample-exact candidate: accept it if it is exact on the whole table, else learn from it."""
        bad = self.check(node)
        if bad is None:
            raise _Found(node)
        self.false_positives.append(bad)
        if len(self.false_positives) >= self.cfg.max_false_positives:
            raise _Budget("too many sample-only fits; enlarging the sample")

    # -- candidate generation -----------------------------------------------------------------------------
    def leaves(self, n_vars: int) -> None:
        consts = self.cfg.constants
        vals = np.array([self.X[:, i] for i in range(n_vars)] + [np.full(self.R, c) for c in consts],
                        dtype=np.int64).reshape(n_vars + len(consts), self.R)
        prov = np.array([(LEAF_VAR, 0, i, -1, 0) for i in range(n_vars)]
                        + [(LEAF_CONST, 0, k, -1, 0) for k in range(len(consts))], dtype=np.int64)
        self._store(1, vals, np.array([False] * n_vars + [True] * len(consts)), prov)

    def generate(self, length: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """All candidate vectors of one length, in blocks: (values, is-constant flags, provenance)."""
        step = max(1, _CHUNK // self.R)
        for name in self.cfg.unary:
            src = np.flatnonzero(~self.is_const[length - 1])
            for lo in range(0, len(src), step):
                idx = src[lo:lo + step]
                self._tick(len(idx))
                prov = np.column_stack([np.full(len(idx), _OP_ID[name]), np.full(len(idx), length - 1), idx,
                                        np.full(len(idx), -1), np.zeros(len(idx), np.int64)])
                yield apply_op(name, self.vals[length - 1][idx]), np.zeros(len(idx), bool), prov
        for i in range(1, length - 1):
            j = length - 1 - i
            for name in self.cfg.binary:
                if BINARY_OPS[name].commutative and i > j:
                    continue
                yield from self._pairs(name, i, j)

    def _pairs(self, name: str, i: int, j: int, top: bool = False):
        """op(A, B) for A of length i, B of length j, in blocks; ``top``: only those equal to the target."""
        A, B = self.vals[i], self.vals[j]
        a_idx, b_idx = np.arange(len(A)), np.arange(len(B))
        if name in ("floordiv", "mod"):
            b_idx = b_idx[np.all(B != 0, axis=1)]
        if top:
            a_idx, b_idx = self._top_filter(name, A, B, a_idx, b_idx)
        if len(a_idx) == 0 or len(b_idx) == 0:
            return
        Bs, b_const = B[b_idx], self.is_const[j][b_idx]
        step = max(1, _CHUNK // (self.R * len(b_idx)))
        for lo in range(0, len(a_idx), step):
            ai = a_idx[lo:lo + step]
            v = apply_op(name, A[ai][:, None, :], Bs[None, :, :])
            self._tick(v.shape[0] * v.shape[1])
            keep = ~(self.is_const[i][ai][:, None] & b_const[None, :])
            if BINARY_OPS[name].commutative and i == j:
                keep &= ai[:, None] <= b_idx[None, :]
            if top:
                keep &= np.all(v == self.t, axis=2)
                for ra, rb in zip(*np.nonzero(keep), strict=True):
                    left, right = self.node(i, int(ai[ra])), self.node(j, int(b_idx[rb]))
                    self._accept(Node(name, children=(left, right)))
                continue
            keep &= np.all(np.abs(v) < VALUE_BOUND, axis=2)
            ra, rb = np.nonzero(keep)
            n = len(ra)
            prov = np.column_stack([np.full(n, _OP_ID[name]), np.full(n, i), ai[ra], np.full(n, j),
                                    b_idx[rb]])
            yield v[ra, rb], np.zeros(n, bool), prov

    def _top_filter(self, name: str, A, B, a_idx, b_idx):
        """Operands that can possibly produce the target under ``name`` (cheap necessary conditions)."""
        t = self.t
        if name == "min":
            return a_idx[np.all(A[a_idx] >= t, axis=1)], b_idx[np.all(B[b_idx] >= t, axis=1)]
        if name == "max":
            return a_idx[np.all(A[a_idx] <= t, axis=1)], b_idx[np.all(B[b_idx] <= t, axis=1)]
        if name == "mod":
            Bb = B[b_idx]
            ok = np.all((np.abs(Bb) > np.abs(t)) & ((t == 0) | (np.sign(Bb) == np.sign(t))), axis=1)
            return a_idx, b_idx[ok]
        if name == "mul":
            Aa = A[a_idx]
            safe = np.where(Aa == 0, 1, Aa)
            ok = np.all(np.where(Aa == 0, t == 0, t % safe == 0), axis=1)
            return a_idx[ok], b_idx
        if name in _COMPARISONS and not np.all((t == 0) | (t == 1)):
            return a_idx[:0], b_idx
        return a_idx, b_idx

    # -- the search ---------------------------------------------------------------------------------------
    def run(self, n_vars: int) -> None:
        """Raise _Found with the shortest expression equal to the target on the sample and on the table.

        Lengths 1..L-2 are stored; length L-1 is streamed (checked as it is made, with its abs/neg giving
        length-L candidates); length L is op(A, B) over stored operands, checked without being stored.
        """
        L = self.cfg.max_length
        self.leaves(n_vars)
        self._lookup(1)
        for length in range(2, L - 1):
            self._empty(length)
            for vals, consts, prov in self.generate(length):
                self._store(length, vals, consts, prov)
            self._lookup(length)
        self._stream(L - 1)
        if self.fallback is not None:
            self._accept(self.fallback)
        self._top(L)

    def _lookup(self, length: int) -> None:
        for k in np.flatnonzero(self.hashes[length] == self.h_t):
            if np.array_equal(self.vals[length][k], self.t):
                self._accept(self.node(length, int(k)))

    def _stream(self, length: int) -> None:
        """Candidates of length L-1 are checked as they are made, as are their abs/neg (length L)."""
        for vals, _, prov in self.generate(length):
            for k in np.flatnonzero(self._hash(vals) == self.h_t):
                if np.array_equal(vals[k], self.t):
                    self._accept(self._decode(prov[k]))
            if self.fallback is None:
                for name in self.cfg.unary:
                    hit = np.flatnonzero(np.all(apply_op(name, vals) == self.t, axis=1))
                    if len(hit):
                        self.fallback = Node(name, children=(self._decode(prov[hit[0]]),))
                        break

    def _top(self, length: int) -> None:
        """Length-L expressions op(A, B): + and - by hash lookup, other operators by filtered enumeration."""
        for i in range(1, length - 1):
            j = length - 1 - i
            for name in self.cfg.binary:
                if BINARY_OPS[name].commutative and i > j:
                    continue
                if name in ("add", "sub"):
                    self._meet_in_the_middle(name, i, j)
                else:
                    for _ in self._pairs(name, i, j, top=True):
                        pass

    def _meet_in_the_middle(self, name: str, i: int, j: int) -> None:
        """A + B = t  <=>  h(B) = h(t) - h(A);  A - B = t  <=>  h(B) = h(A) - h(t)."""
        if len(self.hashes[j]) == 0:
            return
        need = self.h_t - self.hashes[i] if name == "add" else self.hashes[i] - self.h_t
        self._tick(len(need))
        order = np.argsort(self.hashes[j])
        sorted_h = self.hashes[j][order]
        pos = np.minimum(np.searchsorted(sorted_h, need), len(sorted_h) - 1)
        for a in np.flatnonzero(sorted_h[pos] == need):
            b = int(order[pos[a]])
            if self.is_const[i][a] and self.is_const[j][b]:
                continue
            if np.array_equal(apply_op(name, self.vals[i][a], self.vals[j][b]), self.t):
                self._accept(Node(name, children=(self.node(i, int(a)), self.node(j, b))))


def _distinct(X: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, idx = np.unique(np.column_stack([X, t]), axis=0, return_index=True)
    return X[idx], t[idx]


def _initial_sample(X: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices: each variable's extremes and zeros first (where formulas break), then random rows."""
    picks: list[int] = []
    for c in range(X.shape[1]):
        col = X[:, c]
        picks += [int(col.argmin()), int(col.argmax())]
        zeros = np.flatnonzero(col == 0)
        if len(zeros):
            picks.append(int(zeros[0]))
    rest = rng.permutation(len(X))
    out = list(dict.fromkeys(picks + rest.tolist()))
    return np.array(out[:size])


def search(X: np.ndarray, target: np.ndarray, names: Sequence[str],
           config: SearchConfig | None = None) -> SearchResult:
    """The shortest expression over ``names`` (one per column of X) that equals ``target`` on every row.

    Returns a SearchResult whose ``expression`` is Python source (None if nothing up to
    ``config.max_length`` fits, or the budget ran out: see ``stopped``).
    """
    cfg = config or SearchConfig()
    X = np.asarray(X, dtype=np.int64).reshape(len(target), -1)
    target = np.asarray(target, dtype=np.int64)
    if X.shape[1] != len(names):
        raise ValueError(f"{X.shape[1]} columns but {len(names)} names")
    start = time.time()
    Xd, td = _distinct(X, target)
    rng = np.random.default_rng(cfg.seed)
    sample = _initial_sample(Xd, min(cfg.sample_rows, len(Xd)), rng)
    total, stopped, banks, rejected = 0, "", [], 0

    def check(node: Node) -> np.ndarray | None:
        """None if node is exact on every distinct row, else the indices of (a few) rows where it is not."""
        with np.errstate(all="ignore"):
            try:
                bad = np.flatnonzero(node.evaluate(Xd) != td)
            except ZeroDivisionError:
                bad = _zero_divisor_rows(node, Xd)
        return None if len(bad) == 0 else bad[:4]

    for round_ in range(1, cfg.max_rounds + 1):
        en = Enumerator(Xd[sample], td[sample], cfg, check, start + cfg.max_seconds)
        try:
            with np.errstate(all="ignore"):
                en.run(X.shape[1])
            stopped = f"no expression up to length {cfg.max_length} fits"
        except _Found as hit:
            total += en.candidates
            res = SearchResult(hit.node.to_python(names), hit.node, hit.node.length, time.time() - start,
                               total, round_, len(sample), bank_sizes=[len(v) for v in en.vals.values()],
                               rejected=rejected + len(en.false_positives))
            log.debug("symbolic: %s (length %d, %d candidates, %d rounds)", res.expression, res.length,
                      total, round_)
            return res
        except _Budget as exc:
            stopped = str(exc)
        total += en.candidates
        rejected += len(en.false_positives)
        banks = [len(v) for v in en.vals.values()]
        if not en.false_positives or time.time() > start + cfg.max_seconds:
            break
        extra = np.concatenate(en.false_positives)
        sample = np.array(list(dict.fromkeys(sample.tolist() + extra.tolist())))[:cfg.max_sample_rows]
        stopped = f"sample-only fits after {round_} rounds"
    return SearchResult(None, None, 0, time.time() - start, total, round_, len(sample), stopped=stopped,
                        rejected=rejected, bank_sizes=banks)


def _zero_divisor_rows(node: Node, X: np.ndarray) -> np.ndarray:
    """Rows on which some // or % inside node divides by zero."""
    bad = np.zeros(len(X), bool)

    def walk(n: Node) -> np.ndarray:
        if n.op in ("var", "const"):
            return n.evaluate(X)
        args = [walk(c) for c in n.children]
        if n.op in ("floordiv", "mod"):
            zero = args[1] == 0
            bad[:] |= zero
            args[1] = np.where(zero, 1, args[1])
        return apply_op(n.op, *args)

    walk(node)
    return np.flatnonzero(bad)
