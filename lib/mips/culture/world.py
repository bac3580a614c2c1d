"""The grid quiz world of Fleuret's *culture* experiments, at CPU scale (culture spec §1, §4.2).

A grid is ``height × width`` cells, each one of 11 colours (0 = white background, 1..10 colours). A quiz is
four grids ``A, f(A), B, f(B)`` where the same rule ``f`` (drawn once per quiz) maps A to f(A) and B to f(B).
As a token sequence each grid is preceded by its label token, so a quiz is ``4 * (1 + H*W)`` tokens
(148 on the 6×6 default grid, 404 on the original's 10×10)::

    [11] A(S) [12] f(A)(S) [13] B(S) [14] f(B)(S)        tokens 0..10 colours, 11..14 labels, vocab 15

A *structure* reorders the four (label, grid) blocks; the model always predicts the last grid:

=================  ======================  ============================================
structure          order                   question
=================  ======================  ============================================
forward            A, f(A), B, f(B)        apply the rule shown by the example
inverse            f(A), A, f(B), B        undo it (the "other time direction")
forward_swapped    B, f(B), A, f(A)        forward, roles of the two pairs swapped
inverse_swapped    f(B), B, f(A), A        inverse, roles swapped
=================  ======================  ============================================

Prompt noise replaces each cell of the third grid by a uniformly random colour with probability
``prompt_noise`` (labels are never noised), so a model must infer the rule rather than copy a detail.

Task generators (spec §1.3, adapted to small grids with ``n_rects`` rectangles): ``replace_color``,
``translate``, ``grow``, ``frame``, ``detect`` and ``corners``. The special rectangle is identified by its
colour only, which is shared by the two pairs of a quiz: a solver must bind the rule to a colour from the
example pair. Explained in notebooks/culture_world.ipynb.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

N_COLORS = 11
COLOR_NAMES = ("white", "red", "green", "blue", "yellow", "cyan", "violet", "lightgreen", "brown", "lightblue",
               "gray")
COLOR_RGB = ((255, 255, 255), (255, 0, 0), (0, 192, 0), (0, 0, 255), (255, 224, 0), (0, 255, 255),
             (224, 128, 255), (192, 255, 192), (165, 42, 42), (128, 192, 255), (128, 128, 128))
LABEL_A, LABEL_FA, LABEL_B, LABEL_FB = 11, 12, 13, 14
LABELS = (LABEL_A, LABEL_FA, LABEL_B, LABEL_FB)
LABEL_NAMES = {LABEL_A: "A", LABEL_FA: "f(A)", LABEL_B: "B", LABEL_FB: "f(B)"}
VOCAB_SIZE = 15

# structure name -> the canonical parts (0=A, 1=f(A), 2=B, 3=f(B)) in sequence order
STRUCTURES: dict[str, tuple[int, int, int, int]] = {
    "forward": (0, 1, 2, 3),
    "inverse": (1, 0, 3, 2),
    "forward_swapped": (2, 3, 0, 1),
    "inverse_swapped": (3, 2, 1, 0),
}
DIRECTIONS = ("forward", "inverse")

Rect = tuple[int, int, int, int]   # (i1, j1, i2, j2), half-open


@dataclass(frozen=True)
class WorldConfig:
    """The world: grid size, the tasks quizzes are drawn from, rectangle sizes and prompt noise."""

    height: int = 6
    width: int = 6
    tasks: tuple[str, ...] = ("replace_color", "translate", "grow", "frame", "detect", "corners")
    n_rects: int = 2               # rectangles per grid (the original: 3 on 10×10)
    min_size: int = 2              # smallest rectangle side (frame and corners need 3)
    max_size: int = 4              # largest rectangle side
    prompt_noise: float = 0.05     # probability that a cell of the third grid is replaced by a random colour

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(self.tasks))
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; tasks are {', '.join(TASKS)}")
        if min(self.height, self.width) < 5:
            raise ValueError("grids must be at least 5×5 to hold the tasks' rectangles")

    @property
    def n_cells(self) -> int:
        return self.height * self.width

    @property
    def part_len(self) -> int:
        """One (label, grid) block."""
        return 1 + self.n_cells

    @property
    def seq_len(self) -> int:
        return 4 * self.part_len


def world_config(size: int = 6, tasks: Sequence[str] | None = None, **kw) -> WorldConfig:
    """The 6×6 mini world (default, spec §4.2) or the original's 10×10 (3 rectangles of side 3..6)."""
    base = dict(height=size, width=size)
    if size >= 10:
        base.update(n_rects=3, min_size=3, max_size=6)
    if tasks is not None:
        base["tasks"] = tuple(tasks)
    return WorldConfig(**(base | kw))


# ------------------------------------------------------------------------------------------- rectangles

def _free(occupied: np.ndarray, r: Rect) -> bool:
    i1, j1, i2, j2 = r
    return not occupied[i1:i2, j1:j2].any()


def place(rng: np.random.Generator, shape: tuple[int, int], occupied: np.ndarray, tries: int = 60) -> Rect | None:
    """A random rectangle of ``shape`` inside the grid avoiding ``occupied`` (None if none found)."""
    H, W = occupied.shape
    h, w = shape
    if h > H or w > W:
        return None
    for _ in range(tries):
        i, j = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        r = (i, j, i + h, j + w)
        if _free(occupied, r):
            return r
    return None


def _mark(occupied: np.ndarray, r: Rect) -> None:
    occupied[r[0]:r[2], r[1]:r[3]] = True


def _size(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int]:
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


def _fill(g: np.ndarray, r: Rect, color: int) -> None:
    g[r[0]:r[2], r[1]:r[3]] = color


def _paint(cfg: WorldConfig, rects: list[Rect], colors) -> np.ndarray:
    """A blank grid with rectangle ``k`` filled in ``colors[k]``."""
    g = np.zeros((cfg.height, cfg.width), np.int64)
    for k, r in enumerate(rects):
        _fill(g, r, colors[k])
    return g


class _Retry(Exception):
    """A placement failed: the generator draws the grid again."""


def _rects(rng, cfg: WorldConfig, n: int, occupied: np.ndarray, lo: int | None = None) -> list[Rect]:
    out = []
    for _ in range(n):
        r = place(rng, _size(rng, lo or cfg.min_size, cfg.max_size), occupied)
        if r is None:
            raise _Retry
        _mark(occupied, r)
        out.append(r)
    return out


# ------------------------------------------------------------------------------------------------- tasks
# Each task draws its rule (colours c, a shift, a polarity...) once, then returns a function that makes one
# (X, f(X)) pair with fresh rectangles. The quiz applies it twice: (A, f(A)) and (B, f(B)).

PairMaker = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _colors(rng) -> np.ndarray:
    return rng.permutation(N_COLORS - 1) + 1


def task_replace_color(rng, cfg: WorldConfig) -> PairMaker:
    """The rectangle of colour c[0] is recoloured c[n] in f(X); the others stay."""
    c, n = _colors(rng), cfg.n_rects

    def pair(rng):
        occ = np.zeros((cfg.height, cfg.width), bool)
        rs = _rects(rng, cfg, n, occ)
        x = _paint(cfg, rs, c)
        fx = x.copy()
        _fill(fx, rs[0], c[n])
        return x, fx
    return pair


def task_translate(rng, cfg: WorldConfig) -> PairMaker:
    """The rectangle of colour c[n-1] moves by one cell (the same (di, dj) ≠ (0, 0) for A and B)."""
    c, n = _colors(rng), cfg.n_rects
    moves = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)]
    di, dj = moves[int(rng.integers(len(moves)))]

    def pair(rng):
        occ = np.zeros((cfg.height, cfg.width), bool)
        h, w = _size(rng, cfg.min_size, cfg.max_size - 1)
        hull = place(rng, (h + abs(di), w + abs(dj)), occ)      # the rectangle before and after the move
        if hull is None:
            raise _Retry
        _mark(occ, hull)
        i0, j0 = hull[0] + max(0, -di), hull[1] + max(0, -dj)
        before, after = (i0, j0, i0 + h, j0 + w), (i0 + di, j0 + dj, i0 + di + h, j0 + dj + w)
        others = _rects(rng, cfg, n - 1, occ)
        x = _paint(cfg, others, c)
        fx = x.copy()
        _fill(x, before, c[n - 1])
        _fill(fx, after, c[n - 1])
        return x, fx
    return pair


def task_grow(rng, cfg: WorldConfig) -> PairMaker:
    """The rectangle of colour c[n-1] grows by one cell on every side (or shrinks: drawn once per quiz)."""
    c, n = _colors(rng), cfg.n_rects
    grow = bool(rng.integers(2))

    def pair(rng):
        occ = np.zeros((cfg.height, cfg.width), bool)
        big = place(rng, _size(rng, max(4, cfg.min_size + 2), max(4, cfg.max_size)), occ)
        if big is None:
            raise _Retry
        _mark(occ, big)
        small = (big[0] + 1, big[1] + 1, big[2] - 1, big[3] - 1)
        others = _rects(rng, cfg, n - 1, occ)
        x = _paint(cfg, others, c)
        fx = x.copy()
        _fill(x, small if grow else big, c[n - 1])
        _fill(fx, big if grow else small, c[n - 1])
        return x, fx
    return pair


def task_frame(rng, cfg: WorldConfig) -> PairMaker:
    """The rectangle of colour c[n-1] (at least 3×3) is hollowed to its one-cell border."""
    c, n = _colors(rng), cfg.n_rects

    def pair(rng):
        occ = np.zeros((cfg.height, cfg.width), bool)
        last = place(rng, _size(rng, max(3, cfg.min_size), cfg.max_size), occ)
        if last is None:
            raise _Retry
        _mark(occ, last)
        others = _rects(rng, cfg, n - 1, occ)
        x = _paint(cfg, others, c)
        _fill(x, last, c[n - 1])
        fx = x.copy()
        fx[last[0] + 1:last[2] - 1, last[1] + 1:last[3] - 1] = 0
        return x, fx
    return pair


def task_detect(rng, cfg: WorldConfig) -> PairMaker:
    """Every rectangle except the one of colour c[n-1] gets its top-left cell marked in colour c[n]."""
    c, n = _colors(rng), cfg.n_rects

    def pair(rng):
        occ = np.zeros((cfg.height, cfg.width), bool)
        rs = _rects(rng, cfg, n, occ)
        x = _paint(cfg, rs, c)
        fx = x.copy()
        for r in rs[:-1]:
            fx[r[0], r[1]] = c[n]
        return x, fx
    return pair


def task_corners(rng, cfg: WorldConfig) -> PairMaker:
    """Rectangles (≥ 3×3) are shown only by two opposite corners, each a corner cell and its two neighbours
    along the edges (main or anti-diagonal: drawn once per quiz); f(X) fills them."""
    c, n = _colors(rng), cfg.n_rects
    anti = bool(rng.integers(2))

    def pair(rng):
        occ = np.zeros((cfg.height, cfg.width), bool)
        rs = _rects(rng, cfg, n, occ, lo=max(3, cfg.min_size))
        x = np.zeros((cfg.height, cfg.width), np.int64)
        fx = x.copy()
        for k, (i1, j1, i2, j2) in enumerate(rs):
            _fill(fx, (i1, j1, i2, j2), c[k])
            corners = [(i1, j2 - 1, 1, -1), (i2 - 1, j1, -1, 1)] if anti else [(i1, j1, 1, 1), (i2 - 1, j2 - 1, -1, -1)]
            for i, j, si, sj in corners:
                x[i, j] = x[i + si, j] = x[i, j + sj] = c[k]
        return x, fx
    return pair


TASKS: dict[str, Callable[..., PairMaker]] = {
    "replace_color": task_replace_color,
    "translate": task_translate,
    "grow": task_grow,
    "frame": task_frame,
    "detect": task_detect,
    "corners": task_corners,
}


def make_quiz(task: str, rng: np.random.Generator, cfg: WorldConfig, max_tries: int = 200) -> np.ndarray:
    """One quiz of ``task``: grids ``(4, H, W)`` in canonical order A, f(A), B, f(B); never trivial."""
    for _ in range(max_tries):
        try:
            pair = TASKS[task](rng, cfg)
            a, fa = pair(rng)
            b, fb = pair(rng)
        except _Retry:
            continue
        if not (np.array_equal(a, fa) or np.array_equal(b, fb)):
            return np.stack([a, fa, b, fb])
    raise RuntimeError(f"task {task} could not place its rectangles on a {cfg.height}×{cfg.width} grid "
                       f"in {max_tries} tries; raise the grid size or lower max_size")


@dataclass
class QuizSet:
    """Quizzes in canonical order: ``grids`` (n, 4, H, W) int64 and ``task`` (n,) indices into ``tasks``."""

    grids: np.ndarray
    task: np.ndarray
    tasks: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.grids)

    def __getitem__(self, idx) -> QuizSet:
        return QuizSet(self.grids[idx], self.task[idx], self.tasks)

    @staticmethod
    def cat(sets: Sequence[QuizSet]) -> QuizSet:
        return QuizSet(np.concatenate([s.grids for s in sets]), np.concatenate([s.task for s in sets]),
                       sets[0].tasks)


def make_quizzes(cfg: WorldConfig, n: int, seed: int, tasks: Sequence[str] | None = None) -> QuizSet:
    """``n`` world quizzes, tasks drawn uniformly from ``tasks`` (default: the config's), seeded."""
    tasks = tuple(tasks or cfg.tasks)
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(tasks), size=n)
    grids = np.stack([make_quiz(tasks[k], rng, cfg) for k in which]) if n else np.zeros(
        (0, 4, cfg.height, cfg.width), np.int64)
    return QuizSet(grids, which.astype(np.int64), tasks)


def invert(grids: np.ndarray) -> np.ndarray:
    """The quizzes of the inverse rules: ``(f(A), A, f(B), B)`` read as a canonical quiz (f⁻¹ maps f(A) to A)."""
    return grids[:, [1, 0, 3, 2]]


def cells_only(tokens: np.ndarray, cfg: WorldConfig) -> np.ndarray:
    """Token sequences without their label tokens ``(n, 4 * H W)``."""
    return tokens.reshape(len(tokens), 4, cfg.part_len)[:, :, 1:].reshape(len(tokens), -1)


def trivial(grids: np.ndarray) -> np.ndarray:
    """Quizzes ``(n, 4, H, W)`` where A == f(A) or B == f(B) (the culture loop rejects them)."""
    flat = grids.reshape(len(grids), 4, grids.shape[-2] * grids.shape[-1])
    return (flat[:, 0] == flat[:, 1]).all(-1) | (flat[:, 2] == flat[:, 3]).all(-1)


# ------------------------------------------------------------------------------------------------ tokens

def to_tokens(grids: np.ndarray, structure: str | Sequence[str]) -> np.ndarray:
    """Canonical grids ``(n, 4, H, W)`` -> token sequences ``(n, 4 (1 + H W))`` in the given structure(s)."""
    n = len(grids)
    flat = grids.reshape(n, 4, -1)
    names = [structure] * n if isinstance(structure, str) else list(structure)
    order = np.array([STRUCTURES[s] for s in names]).reshape(n, 4)
    parts = flat[np.arange(n)[:, None], order]                          # (n, 4, S)
    labels = np.asarray(LABELS)[order][..., None]                        # (n, 4, 1)
    return np.concatenate([labels, parts], axis=2).reshape(n, -1).astype(np.int64)


def from_tokens(tokens: np.ndarray, cfg: WorldConfig) -> np.ndarray:
    """Token sequences (any structure) -> canonical grids ``(n, 4, H, W)``, read from the label tokens."""
    n = len(tokens)
    blocks = tokens.reshape(n, 4, cfg.part_len)
    labels, cells = blocks[:, :, 0], blocks[:, :, 1:]
    if not np.isin(labels, LABELS).all():
        raise ValueError("a block does not start with a label token 11..14")
    canon = np.zeros((n, 4, cfg.n_cells), np.int64)
    rows = np.arange(n)[:, None]
    canon[rows, labels - LABEL_A] = cells
    return canon.reshape(n, 4, cfg.height, cfg.width)


def answer_slice(cfg: WorldConfig) -> slice:
    """Token positions of the predicted (last) grid's cells."""
    return slice(3 * cfg.part_len + 1, 4 * cfg.part_len)


def part_slice(cfg: WorldConfig, part: int) -> slice:
    """Token positions of the cells of the part-th block in sequence order."""
    return slice(part * cfg.part_len + 1, (part + 1) * cfg.part_len)


def add_prompt_noise(tokens: np.ndarray, cfg: WorldConfig, rng: np.random.Generator,
                     noise: float | None = None) -> np.ndarray:
    """Replace each cell of the third block by a random colour with probability ``noise`` (a copy)."""
    noise = cfg.prompt_noise if noise is None else noise
    out = tokens.copy()
    sl = part_slice(cfg, 2)
    hit = rng.random(out[:, sl].shape) < noise
    out[:, sl] = np.where(hit, rng.integers(0, N_COLORS, size=hit.shape), out[:, sl])
    return out


def training_tokens(quizzes: QuizSet, cfg: WorldConfig, rng: np.random.Generator,
                    structures: Sequence[str] = DIRECTIONS) -> tuple[np.ndarray, np.ndarray]:
    """Each quiz in a random structure among ``structures``, with prompt noise: (tokens, structure index)."""
    which = rng.integers(0, len(structures), size=len(quizzes))
    tokens = to_tokens(quizzes.grids, [structures[k] for k in which])
    return add_prompt_noise(tokens, cfg, rng), which


def describe(quizzes: QuizSet) -> dict[str, int]:
    """How many quizzes of each task."""
    return {t: int((quizzes.task == k).sum()) for k, t in enumerate(quizzes.tasks)}
