"""Cart pole (gymnasium ``CartPole-v1``) by hierarchical goal pursuit, scaled down for a CPU.

Two layers, both neural slot memories over the 4-number cart-pole state:

- **layer 1 (top)**: from the current state, with the constant goal "expectation" ``[1]``, propose the state
  to be in ``skip_step`` steps from now. It learns from the pivots of demonstrated episodes (every
  ``skip_step``-th state): from each pivot toward the next two, scored ``discount ** k * value`` where ``k``
  is the number of steps to that pivot and ``value`` the fraction of the ``value_window`` steps after it
  that the pole stayed up (steps past a time-limit truncation count as up).
- **layer 0**: from the current state, heading for a state proposed above, choose the push (left or right).
  It learns by hindsight: every state learns toward its next two pivots, scored ``discount ** k``.

The agent acts with ``react`` (closed loop, every step). Training follows the original's curriculum: a
"kindergarten" model fitted on random episodes, then courses in which the current model plays with an
``epsilon`` share of random actions and a curriculum model is fitted on everything played so far.

Explained in notebooks/humn_cartpole.ipynb.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from mips.artifacts import Record, StageRun, stage_dir, write_json
from mips.humn.abstraction import skip_pivots
from mips.humn.algebra import GoalAlgebra
from mips.humn.cortex import Cortex, Hindsight, TrainerConfig, hindsight
from mips.humn.hippocampus import Hippocampus
from mips.humn.kernels import SlotKernel, SlotKernelConfig
from mips.humn.model import HUMN

log = logging.getLogger(__name__)

CHAPTER = "chapter-humn"
STAGE = "cartpole"
STATE_DIM = 4
PRESETS = ("smoke", "full")
Policy = Callable[[np.ndarray], np.ndarray]


def _gym():
    try:
        import gymnasium
    except ImportError as exc:  # a user error with one fix
        raise ImportError("the cart-pole page needs gymnasium: pip install gymnasium==1.4.0") from exc
    return gymnasium


@dataclass
class CartPoleConfig:
    """Everything that decides the cart-pole page's numbers."""

    seed: int = 0
    n_random_episodes: int = 1000   # kindergarten: random episodes
    random_max_steps: int = 500     # cap of a random episode
    n_courses: int = 4              # curriculum courses after the kindergarten
    course_episodes: int = 300      # episodes played per course
    course_max_steps: int = 100     # cap of a course episode (as in the original)
    epsilon: float = 0.25           # share of random actions while playing a course
    skip_step: int = 8              # a pivot every this many steps
    discount: float = 0.9           # score of reaching a pivot k steps ahead: discount ** k
    value_window: int = 32          # steps after a pivot over which its survival value is measured
    n_updates: int = 1500           # minibatch updates per layer per training stage
    batch_size: int = 256
    action_kernel: SlotKernelConfig = field(default_factory=lambda: SlotKernelConfig(
        hidden_dim=128, memory_size=4, access="score", lr=1e-3, lse_weight=0.1))
    plan_kernel: SlotKernelConfig = field(default_factory=lambda: SlotKernelConfig(
        hidden_dim=128, memory_size=4, access="value", lr=1e-3, lse_weight=0.1))
    n_test_episodes: int = 100      # test episodes per model
    test_max_steps: int = 500       # cap of a test episode
    n_envs: int = 50                # environments stepped side by side (one batched react per step)
    n_render_episodes: int = 3      # episodes kept whole for drawing, per agent

    def __post_init__(self) -> None:
        for name in ("action_kernel", "plan_kernel"):
            if isinstance(getattr(self, name), dict):
                setattr(self, name, SlotKernelConfig(**getattr(self, name)))
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")


def cartpole_config(preset: str = "full") -> CartPoleConfig:
    """The smoke preset (CI, well under a minute) or the full one (the book)."""
    if preset == "full":
        return CartPoleConfig()
    if preset == "smoke":
        return CartPoleConfig(n_random_episodes=150, n_courses=1, course_episodes=60, n_updates=150,
                              n_test_episodes=20, test_max_steps=200, n_envs=20, n_render_episodes=2)
    raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")


# -------------------------------------------------------------------------------------------- episodes

@dataclass
class Episode:
    """One played episode: ``states (T, 4)`` seen before each action, ``actions (T,)``, and how it ended."""

    states: np.ndarray
    actions: np.ndarray
    terminated: bool     # the pole fell or the cart left the track (False: the step cap was reached)

    def __len__(self) -> int:
        return len(self.actions)


def play(policy: Policy | None, n_episodes: int, max_steps: int, seed: int, epsilon: float = 0.0,
         n_envs: int = 50) -> list[Episode]:
    """Play ``n_episodes`` (at most ``max_steps`` steps each) with ``n_envs`` environments side by side.

    ``policy(states (B, 4)) -> actions (B,)`` is asked once per step for all running environments;
    ``None`` (or the ``epsilon`` share of steps) plays uniformly random pushes. Episode ``i`` is reset with
    seed ``seed + i``, so the same seed gives the same episodes.
    """
    gym = _gym()
    rng = np.random.default_rng(seed)
    n_envs = max(1, min(n_envs, n_episodes))
    envs = [gym.make("CartPole-v1", max_episode_steps=max_steps) for _ in range(n_envs)]
    episodes: list[Episode | None] = [None] * n_episodes
    slot_episode = list(range(n_envs))
    next_episode = n_envs
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    traces: list[tuple[list, list]] = [([], []) for _ in range(n_envs)]
    running = list(range(n_envs))
    while running:
        states = obs[running]
        actions = rng.integers(0, 2, len(running))
        if policy is not None:
            chosen = np.asarray(policy(states))
            greedy = rng.random(len(running)) >= epsilon
            actions = np.where(greedy, chosen, actions)
        still = []
        for k, slot in enumerate(running):
            traces[slot][0].append(obs[slot].copy())
            traces[slot][1].append(int(actions[k]))
            new_obs, _, terminated, truncated, _ = envs[slot].step(int(actions[k]))
            obs[slot] = new_obs
            if terminated or truncated:
                episodes[slot_episode[slot]] = Episode(np.asarray(traces[slot][0], np.float32),
                                                       np.asarray(traces[slot][1], np.int64), bool(terminated))
                traces[slot] = ([], [])
                if next_episode < n_episodes:
                    slot_episode[slot] = next_episode
                    obs[slot] = envs[slot].reset(seed=seed + next_episode)[0]
                    next_episode += 1
                    still.append(slot)
            else:
                still.append(slot)
        running = still
    for env in envs:
        env.close()
    return [e for e in episodes if e is not None]


# -------------------------------------------------------------------------------------------- training

def survival_value(episode: Episode, window: int) -> np.ndarray:
    """Per step ``t``: the fraction of the ``window`` steps from ``t`` on that the pole stays up.

    After a fall every step counts as down; after a time-limit truncation every step counts as up.
    """
    t = np.arange(len(episode))
    up = np.minimum(len(episode) - t, window) if episode.terminated else np.full(len(episode), window)
    return up / window


def episode_examples(episode: Episode, config: CartPoleConfig) -> tuple[Hindsight, Hindsight]:
    """Hindsight examples of one episode for (layer 0, layer 1)."""
    c = config
    states = episode.states
    pivots = skip_pivots(len(states), c.skip_step)
    k = pivots[:, None] - np.arange(len(states))[None, :]
    actions = episode.actions[:, None].astype(np.float32)
    low = hindsight(states, actions, pivots, states[pivots], c.discount ** k.astype(np.float64))

    top_states = states[pivots]
    top_steps = np.concatenate([top_states[1:], np.zeros((1, STATE_DIM), np.float32)])
    value = survival_value(episode, c.value_window)[pivots]
    top_k = pivots[:, None] - pivots[None, :]
    top_pivots = np.arange(len(pivots))
    top_scores = (c.discount ** top_k.astype(np.float64)) * value[:, None]
    high = hindsight(top_states, top_steps, top_pivots, np.ones((len(pivots), 1), np.float32), top_scores)
    return low, high


def examples(episodes: Sequence[Episode], config: CartPoleConfig) -> list[Hindsight]:
    pairs = [episode_examples(e, config) for e in episodes if len(e) > 1]
    return [Hindsight.cat([p[0] for p in pairs]), Hindsight.cat([p[1] for p in pairs])]


def new_agent(config: CartPoleConfig, salt: int = 0, device: str = "cpu") -> HUMN:
    """An untrained two-layer agent (layer 0 -> push, layer 1 -> next pivot state)."""
    algebra = GoalAlgebra()
    a_cfg = SlotKernelConfig(**{**asdict(config.action_kernel), "seed": config.seed + 1000 * salt})
    p_cfg = SlotKernelConfig(**{**asdict(config.plan_kernel), "seed": config.seed + 1000 * salt + 1})
    low = SlotKernel(STATE_DIM, STATE_DIM, 1, 1, a_cfg, device)
    high = SlotKernel(STATE_DIM, 1, STATE_DIM, 1, p_cfg, device)
    return HUMN([Cortex(low, algebra), Cortex(high, algebra)], [Hippocampus(1), Hippocampus(1)], algebra)


def train(agent: HUMN, data: Sequence[Hindsight], config: CartPoleConfig, seed: int, device: str = "cpu",
          progress: bool = True, desc: str = "train") -> list[list[float]]:
    cfgs = [TrainerConfig(config.n_updates, config.batch_size, seed + i) for i in range(agent.depth)]
    return [t.fit(desc=f"{desc} layer {i}", progress=progress)
            for i, t in enumerate(agent.observe(data, cfgs, device))]


def agent_policy(agent: HUMN, device: str = "cpu") -> Policy:
    """``react`` toward the expectation ``[1]``; a layer-0 output above 0.5 pushes right."""

    @torch.no_grad()
    def policy(states: np.ndarray) -> np.ndarray:
        s = torch.as_tensor(states, dtype=torch.float32, device=device)
        agent.refresh()
        action = agent.react(s, torch.ones(len(s), 1, device=device))
        return (action[:, 0] > 0.5).long().cpu().numpy()

    return policy


# ------------------------------------------------------------------------------------------------ stage

@dataclass
class CartPoleResult:
    """What the cart-pole stage measured, read back from its folder."""

    config: dict
    stages: list[str]                       # "random", "kindergarten", "course 1", ...
    test_lengths: dict[str, list[int]]      # agent -> steps of each test episode
    data_lengths: dict[str, list[int]]      # training stage -> steps of each episode it played
    losses: dict[str, list[list[float]]]    # training stage -> layer -> loss per update
    renders: dict[str, list[np.ndarray]]    # agent -> a few whole test episodes' states (T, 4)
    seconds: dict[str, float]
    record: Record

    def average(self, agent: str) -> float:
        return float(np.mean(self.test_lengths[agent]))

    @classmethod
    def load(cls, folder: Path) -> CartPoleResult:
        folder = Path(folder)
        data = json.loads((folder / "results.json").read_text())
        arrays = np.load(folder / "renders.npz")
        renders = {a: [arrays[f"{a}/{i}"] for i in range(n)] for a, n in data["n_renders"].items()}
        return cls(data["config"], data["stages"], data["test_lengths"], data["data_lengths"], data["losses"],
                   renders, data["seconds"], Record.load(folder / "record.json"))


def run(preset: str = "full", run_dir: Path | str | None = None, device: str = "cpu",
        config: CartPoleConfig | None = None, progress: bool = True) -> CartPoleResult:
    """The cart-pole stage: random baseline, kindergarten, curriculum, and a test of every model.

    Artifacts go to ``runs/chapter-humn/cartpole/``; an unchanged config is reused, not recomputed.
    """
    config = config or cartpole_config(preset)
    run_dir = Path(run_dir) if run_dir else None
    stage = StageRun(CHAPTER, STAGE, asdict(config), run_dir=run_dir)
    stage.cached_or_compute(lambda st: _compute(config, st, device, progress))
    return CartPoleResult.load(stage_dir(CHAPTER, STAGE, run_dir))


def _compute(config: CartPoleConfig, stage: StageRun, device: str, progress: bool) -> dict:
    c = config
    test_seed = c.seed + 10_000_000          # test episodes never share a reset seed with training ones
    t0 = time.time()
    seconds, losses, data_lengths, test_lengths, renders = {}, {}, {}, {}, {}

    def test(name: str, policy: Policy | None) -> None:
        t = time.time()
        eps = play(policy, c.n_test_episodes, c.test_max_steps, test_seed, 0.0, c.n_envs)
        test_lengths[name] = [len(e) for e in eps]
        renders[name] = [e.states for e in eps[:c.n_render_episodes]]
        seconds[f"test {name}"] = round(time.time() - t, 2)
        log.info("%s: %.1f steps per test episode", name, np.mean(test_lengths[name]))

    random_eps = play(None, c.n_random_episodes, c.random_max_steps, c.seed, 1.0, c.n_envs)
    data_lengths["kindergarten"] = [len(e) for e in random_eps]
    test("random", None)

    t = time.time()
    kindergarten = new_agent(c, 0, device)
    losses["kindergarten"] = train(kindergarten, examples(random_eps, c), c, c.seed, device, progress, "kindergarten")
    seconds["train kindergarten"] = round(time.time() - t, 2)
    test("kindergarten", agent_policy(kindergarten, device))

    teacher, played = kindergarten, []
    curriculum = new_agent(c, 1, device)
    for course in range(1, c.n_courses + 1):
        name = f"course {course}"
        t = time.time()
        eps = play(agent_policy(teacher, device), c.course_episodes, c.course_max_steps, c.seed + 1000 * course,
                   c.epsilon, c.n_envs)
        data_lengths[name] = [len(e) for e in eps]
        played += eps
        losses[name] = train(curriculum, examples(played, c), c, c.seed + course, device, progress, name)
        seconds[f"train {name}"] = round(time.time() - t, 2)
        test(name, agent_policy(curriculum, device))
        teacher = curriculum

    stages = ["random", "kindergarten"] + [f"course {i}" for i in range(1, c.n_courses + 1)]
    np.savez(stage.path("renders.npz"), **{f"{a}/{i}": s for a, r in renders.items() for i, s in enumerate(r)})
    torch.save([cx.kernel.state_dict() for cx in curriculum.cortices], stage.path("agent.pt"))
    seconds["total"] = round(time.time() - t0, 2)
    write_json(stage.path("results.json"), {
        "config": asdict(c), "stages": stages, "test_lengths": test_lengths, "data_lengths": data_lengths,
        "losses": losses, "n_renders": {a: len(r) for a, r in renders.items()}, "seconds": seconds})
    metrics = {f"{a.replace(' ', '_')}_average": float(np.mean(v)) for a, v in test_lengths.items()}
    metrics["random_data_average"] = float(np.mean(data_lengths["kindergarten"]))
    return metrics
