"""Stage records: cached by config + upstream, written atomically, leftovers of a killed stage ignored."""

import json

import pytest

from mips.artifacts import StageRun, clean_scratch, load_record, require_record, stage_dir


def test_stage_is_cached_by_config_and_upstream(isolated):
    run = StageRun("t", "search", {"steps": 10}, upstream={"dataset": "k1"})
    assert run.cached() is None
    run.path("model.txt").write_text("weights")
    rec = run.finish({"acc": 1.0}, success=True)
    assert (stage_dir("t", "search") / "model.txt").read_text() == "weights"
    assert StageRun("t", "search", {"steps": 10}, upstream={"dataset": "k1"}).cached().key == rec.key
    assert StageRun("t", "search", {"steps": 11}, upstream={"dataset": "k1"}).cached() is None
    assert StageRun("t", "search", {"steps": 10}, upstream={"dataset": "k2"}).cached() is None


def test_rerun_replaces_the_folder_and_a_killed_run_leaves_no_finished_stage(isolated):
    first = StageRun("t", "simplify", {"a": 1})
    first.path("old.txt").write_text("1")
    first.finish({}, success=True)
    killed = StageRun("t", "simplify", {"a": 2})
    killed.path("half.txt").write_text("partial")          # killed before finish(): never becomes the stage
    assert load_record("t", "simplify").config == {"a": 1}
    second = StageRun("t", "simplify", {"a": 3})
    second.path("new.txt").write_text("3")
    second.finish({}, success=False, message="no lattice")
    folder = stage_dir("t", "simplify")
    assert sorted(p.name for p in folder.iterdir()) == ["new.txt", "record.json"]
    assert json.loads((folder / "record.json").read_text())["message"] == "no lattice"
    clean_scratch(folder.parent)
    assert [p.name for p in folder.parent.iterdir()] == ["simplify"]


def test_a_damaged_or_missing_stage_file_means_the_stage_is_computed_again(isolated):
    """A corrupted model.pt used to be served from the cache for ever (and --force did not help)."""
    run = StageRun("t", "search", {"steps": 10})
    run.path("model.pt").write_bytes(b"weights")
    run.finish({}, success=True)
    again = lambda: StageRun("t", "search", {"steps": 10}).cached()   # noqa: E731
    assert again() is not None
    (stage_dir("t", "search") / "model.pt").write_bytes(b"garbage")
    assert again() is None
    (stage_dir("t", "search") / "model.pt").unlink()
    assert again() is None


def test_missing_upstream_says_what_to_run(isolated):
    with pytest.raises(FileNotFoundError, match="mips run --tasks sum_all --stages search"):
        require_record("sum_all", "search")


def test_corrupt_record_is_not_taken_as_finished(isolated):
    folder = stage_dir("t", "extract")
    folder.mkdir(parents=True)
    (folder / "record.json").write_text('{"stage": "extract", "ta')
    assert load_record("t", "extract") is None


def test_cached_or_compute_runs_once_and_leaves_nothing_after_an_error(isolated):
    calls = []

    def compute(stage):
        calls.append(1)
        stage.path("out.txt").write_text("x")
        return {"n": 1}

    assert StageRun("t", "s", {"a": 1}).cached_or_compute(compute).metrics == {"n": 1}
    assert StageRun("t", "s", {"a": 1}).cached_or_compute(compute).metrics == {"n": 1}
    assert len(calls) == 1

    def broken(stage):
        stage.path("half.txt").write_text("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        StageRun("t", "s", {"a": 2}).cached_or_compute(broken)
    assert [p.name for p in stage_dir("t", "s").parent.iterdir()] == ["s"]
    assert load_record("t", "s").config == {"a": 1}


def test_threads_of_one_run_share_one_scratch_folder(isolated):
    """Concurrent writers (the LLM baseline's conversations) all land in the finished stage folder."""
    import threading

    run = StageRun("sum_all", "llm_baseline", {"n": 8})
    gate = threading.Barrier(8)

    def write(k: int) -> None:
        gate.wait()
        run.path("transcripts").mkdir(parents=True, exist_ok=True)
        (run.path("transcripts") / f"{k}.json").write_text("{}")

    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.finish({}, success=True)
    folder = stage_dir("sum_all", "llm_baseline")
    assert sorted(p.name for p in (folder / "transcripts").iterdir()) == [f"{k}.json" for k in range(8)]
    assert not list(folder.parent.glob(".llm_baseline.tmp-*"))
