"""PG-TD: P-UCB and backpropagation, the test harness, the three caches, and the search itself on real
models: a tiny character GPT trained here on programs for some of the book's tasks (seconds; cached in
the project cache), the local SmolLM2-135M in this process, and the same model behind the project's
OpenAI-compatible server. No reply is canned."""

import math
import warnings

import numpy as np
import pytest
import torch

from mips.pgtd import baselines, experiment, problems, tree
from mips.pgtd.lm import Stop
from mips.pgtd.problems import COMPILE, PASS, RUNTIME, TIMEOUT, WRONG, make_problem, run_tests

SMOKE = "smoke"
torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------------------
# P-UCB and the tree


def test_beta_and_ucb_follow_the_original():
    assert tree.beta(1) == pytest.approx(math.log(12 / 10) + 4) == pytest.approx(4.1823, abs=1e-4)
    root = tree.DecisionNode(None, (0,), False, [((1,), 0.2), ((2,), 0.7), ((3,), 0.1)])
    assert [c.action for c in root.children] == [(2,), (1,), (3,)]          # sorted by prior
    cfg = tree.PGTDConfig()
    # N = 1 at the root: log 1 = 0, every score is Q = 0, and the highest prior wins the tie.
    assert tree.select_child(root, cfg).action == (2,)
    root.visits = 5
    child = root.children[1]
    child.sampled_returns = [0.2, 1.0, 0.1]
    assert child.value == 1.0                                                # Q = max, not mean
    want = 1.0 + tree.beta(5) * 0.2 * math.sqrt(math.log(5)) / (1 + 3)
    assert tree.ucb_score(child, cfg) == pytest.approx(want)


def test_backpropagation_appends_one_return_per_chance_node():
    root = tree.DecisionNode(None, (), False, [((1,), 0.6), ((2,), 0.4)])
    a = root.children[0]
    mid = tree.DecisionNode(a, (1,), False, [((3,), 1.0)])
    a.children[(1,)] = mid
    b = mid.children[0]
    leaf = tree.DecisionNode(b, (1, 3), False, [])
    b.children[(1, 3)] = leaf
    tree.backpropagate(leaf, [0.0, 0.0], 0.75)
    assert b.sampled_returns == [0.75] and a.sampled_returns == [0.75]
    assert root.children[1].sampled_returns == []
    assert (leaf.visits, mid.visits, root.visits) == (2, 2, 2)


def test_stop_ends_the_body_at_the_first_top_level_line():
    stop = Stop()
    assert stop.cut("\n    s = 0\n    return s\n") is None
    text = "\n    return s\n\ndef g():\n"
    assert text[:stop.cut(text)] == "\n    return s\n\n"
    assert stop.cut("def g():") == 0                        # the body starts on a fresh line
    # A continuation is judged with the body written before it: "od = 3" continues "    m".
    assert stop.after("\n    m").cut("od = 3\n    s = 0") is None
    assert stop.after("\n    m").cut("od = 3\nx") == len("od = 3\n")


# ---------------------------------------------------------------------------------------------------------
# The harness


@pytest.fixture(scope="module")
def sum_all():
    return make_problem("Sum_All", SMOKE)


def test_prompt_shows_the_public_tests(sum_all):
    assert sum_all.prompt.startswith('def f(xs):\n    """Sum_All: ')
    assert len(sum_all.public) == 3
    for x, y in sum_all.public:
        assert f"    >>> f({x})\n    {y}\n" in sum_all.prompt
        assert y == sum_all.task.reference(x)


def test_each_outcome_class(sum_all):
    rows = list(sum_all.public)
    right = sum_all.program("\n    s, ys = 0, []\n    for x in xs:\n        s += x\n        ys.append(s)\n"
                            "    return ys\n")
    assert run_tests(right, rows) == [PASS] * 3
    assert run_tests(sum_all.program("\n    return xs\n"), rows) == [WRONG] * 3
    # One row raising does not hide the others.
    assert run_tests(sum_all.program("\n    if xs[0] == 15:\n        raise ValueError\n    return xs\n"),
                     rows) == [RUNTIME, WRONG, WRONG]
    assert run_tests(sum_all.program("\n    return [x +]\n"), rows) == [COMPILE] * 3
    with warnings.catch_warnings():      # a program that compiles with a SyntaxWarning runs, and stays quiet
        warnings.simplefilter("error")
        assert run_tests(sum_all.program("\n    return (1, 2)(3)\n"), rows) == [RUNTIME] * 3
    fast = problems.sandbox.Limits(cpu_seconds=1, wall_seconds=3)
    assert run_tests(sum_all.program("\n    while True:\n        pass\n"), rows, fast) == [TIMEOUT] * 3
    assert problems.pass_rate([PASS, WRONG, RUNTIME]) == pytest.approx(1 / 3)
    assert problems.private_verdict(sum_all, right)["solved"]


# ---------------------------------------------------------------------------------------------------------
# A real model that can succeed: the tiny program GPT


@pytest.fixture(scope="module")
def tiny():
    from mips.pgtd.tinygpt import TinyLM

    lm = TinyLM.pretrained()
    assert lm.losses[-1] < lm.losses[0] / 5        # it learned the corpus
    return lm


@pytest.fixture(scope="module")
def add_mod_5():
    return make_problem("Add_Mod_5", SMOKE)


def test_caches_skip_model_calls_and_test_runs(tiny, add_mod_5):
    env = tree.ProgramEnv(add_mod_5, tiny, 256)
    caches = tree.Caches(1024, True)
    r = tiny.greedy(env.prompt, 256, env.stop, k=3)
    caches.add(env.prompt, r.pieces, r.topk)
    full = env.prompt + r.pieces
    # A greedy rollout from a state on the cached output is that output: no model call needed ...
    mid = full[:len(env.prompt) + 7]
    assert caches.get_seq(mid) == full
    assert tiny.greedy(mid, 256, env.stop_after(mid)).pieces == full[len(mid):]
    # ... and the top-k at each of its positions is cached, equal to what a model call would say.
    assert [a for (a,), _ in caches.get_topk(mid)] == [a for a, _ in tiny.topk_next(mid, 3)]
    assert caches.get_topk(mid + (tiny.encode("#")[0],)) is None
    # The reward cache runs one program once.
    program = env.program(full)
    env.score(program), env.score(program)
    assert env.evaluations == 1 and len(env.candidates) == 1


def test_cache_ablation_same_search_fewer_calls(tiny, add_mod_5):
    rows = experiment.cache_ablation(add_mod_5, tiny, tree.PGTDConfig(budget=16, horizon=256))
    by = {r["setting"]: r for r in rows}
    assert all(r["same_programs"] for r in rows)               # the caches change the cost, not the search
    # Without caches every new node costs a top-k call and every rollout a generation (an iteration that
    # ends on a terminal node needs neither).
    assert by["no caches"]["topk calls"] == by["no top-k cache"]["topk calls"] > by["all caches"]["topk calls"]
    assert by["no caches"]["rollout calls"] == by["no sequence cache"]["rollout calls"] > \
        by["all caches"]["rollout calls"]
    assert by["all caches"]["lm calls"] < by["no top-k cache"]["lm calls"] < by["no caches"]["lm calls"]
    assert by["no reward cache"]["test runs"] > by["all caches"]["test runs"]


def test_pgtd_solves_what_greedy_cannot(tiny, add_mod_5):
    cfg = tree.PGTDConfig(budget=16, horizon=256)
    res = tree.pgtd(add_mod_5, tiny, cfg)
    greedy = baselines.greedy(add_mod_5, tiny, 256).best()
    assert res.candidates[0].program == greedy.program        # the first rollout is the greedy program
    assert greedy.reward < 1.0 and "mod = 3" in greedy.program  # the corpus's most common constant
    best = res.best()
    assert best.reward == 1.0 and "mod = 5" in best.program
    assert problems.private_verdict(add_mod_5, best.program)["solved"]
    # Sampling + filtering with as many program evaluations does no better.
    samp = baselines.sampling(add_mod_5, tiny, baselines.SamplingConfig(n_samples=res.evaluations, horizon=256))
    assert len(samp.candidates) == res.evaluations
    assert samp.best().reward <= best.reward


def test_line_actions_search_too(tiny, add_mod_5):
    res = tree.pgtd(add_mod_5, tiny, tree.PGTDConfig(budget=16, horizon=256, action="line"))
    assert res.lm_calls["lines"] >= 2 and "topk" not in res.lm_calls
    best = res.best()
    assert best.reward == 1.0 and "mod = 5" in best.program


def test_chapter_records_and_results_table(tiny, isolated):
    cfg = experiment.ChapterConfig(budget=16, horizon=256, num_beams=2, private_rows=2)
    tasks = [make_problem("Add_Mod_5", SMOKE).task, make_problem("Prev2", SMOKE).task]
    recs = experiment.run_tasks(tasks, tiny, cfg, SMOKE, isolated / "runs", progress=False)
    assert all(r.success for r in recs)
    again = experiment.run_task(tasks[0], tiny, cfg, SMOKE, isolated / "runs")
    assert again.created == recs[0].created                               # resumable: reused
    table = experiment.results_table(isolated / "runs")
    assert list(table["task"]) == ["Add_Mod_5", "Prev2"]
    assert bool(table.set_index("task").loc["Add_Mod_5", "pgtd_solved"])
    res = recs[0].metrics["results"]
    assert set(res) == {"pgtd", "greedy", "sampling T=1", "beam"}
    assert res["sampling T=1"]["n_candidates"] == res["pgtd"]["n_candidates"]
    assert [t["test"] for t in res["pgtd"]["tests"]] == ["public 0", "public 1", "public 2", "private 0",
                                                         "private 1"]
    outcomes = experiment.test_outcomes(isolated / "runs")
    assert set(outcomes["outcome"]) <= set(problems.OUTCOMES)
    summary = experiment.summary_table(isolated / "runs").set_index("algorithm")
    assert summary.loc["pgtd", "public pass rate"] >= summary.loc["greedy", "public pass rate"]
    # Every scored program's public tests are counted, each once: candidates × public tests per algorithm.
    counts = experiment.candidate_outcomes(isolated / "runs")
    assert set(counts["outcome"]) <= set(problems.OUTCOMES)
    ran = counts.groupby(["task", "algorithm"])["tests"].sum()
    for name in ("pgtd", "sampling T=1", "beam"):
        assert ran[("Add_Mod_5", name)] == res[name]["n_candidates"] * cfg.n_public
    assert counts.set_index(["task", "algorithm", "outcome"]).loc[("Add_Mod_5", "pgtd", "pass"), "tests"] > 0
    shares = experiment.outcome_shares(counts)
    assert np.allclose(shares.drop(columns="runs").sum(axis=1), 1.0)
    assert shares["runs"].sum() == counts["tests"].sum()


def test_chapter_tasks_and_shards_cover_the_book():
    assert [t.name for t in experiment.chapter_tasks("default", SMOKE)] == ["Sum_All"]
    every = experiment.chapter_tasks("default", "full")
    assert len(every) == 62 and [t.name for t in every] == [t.name for t in experiment.chapter_tasks("all")]
    halves = [experiment.shard(every, f"{i}/2") for i in range(2)]
    assert sorted(t.name for h in halves for t in h) == sorted(t.name for t in every)
    assert not {t.name for t in halves[0]} & {t.name for t in halves[1]}
    with pytest.raises(ValueError):
        experiment.shard(every, "2/2")


# ---------------------------------------------------------------------------------------------------------
# The local SmolLM2-135M, in this process and behind the project's OpenAI-compatible server


def _need_local_model():
    from mips import llm_server

    try:
        llm_server.gguf_path(llm_server.local_model("smollm2-135m"))
    except llm_server.LocalModelError as exc:
        pytest.skip(f"local model not installed: {exc}")


def test_local_model_topk_matches_its_greedy_rollout(sum_all):
    _need_local_model()
    from mips.pgtd.lm import HFLocal

    lm = HFLocal()
    prompt = lm.encode(sum_all.prompt)
    top = lm.topk_next(prompt, 3)
    assert sum(p for _, p in top) == pytest.approx(1.0) and top[0][1] >= top[1][1] >= top[2][1]
    r = lm.greedy(prompt, 6, Stop(), k=3)
    assert r.pieces[0] == top[0][0]
    # The top-k a rollout records (with the KV cache) is what a fresh call says at that position.
    fresh = lm.topk_next(prompt + r.pieces[:3], 3)
    assert [a for a, _ in r.topk[3]] == [a for a, _ in fresh]
    assert lm.calls == {"topk": 2, "greedy": 1}
    # Those calls reused the prompt's KV cache; running the whole prefix from scratch gives the same logits.
    state = prompt + r.pieces[:5]
    warm, _ = lm._start(state)
    lm._base = None
    cold, _ = lm._start(state)
    assert np.allclose(warm, cold, atol=1e-3) and int(np.argmax(warm)) == int(np.argmax(cold))


def test_pgtd_through_the_local_server_with_line_actions(sum_all):
    _need_local_model()
    from mips import llm_server
    from mips.pgtd.lm import OpenAICompat

    server = llm_server.shared_server("smollm2-135m")
    lm = OpenAICompat(base_url=server.base_url, model="smollm2-135m", mode="chat")
    with pytest.raises(NotImplementedError):
        lm.topk_next(lm.encode(sum_all.prompt), 3)               # a chat server has no raw-prefix top-k
    res = tree.pgtd(sum_all, lm, tree.PGTDConfig(budget=1, width=2, horizon=12, line_tokens=6, action="line"))
    assert res.lm_calls["lines"] == 1 and res.lm_calls.get("greedy", 0) <= 1
    assert res.candidates and all(c.program.startswith(sum_all.prompt) for c in res.candidates)
    assert all(o in problems.OUTCOMES for c in res.candidates for o in c.public)
