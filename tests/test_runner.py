"""The batch runner: resumable after a kill, failures isolated per task, the submitit path."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from mips.runner import CACHED, FAILED, OK, SKIPPED, NotebookStatus, RunOptions, run_batch
from mips.tasks import registry

ROOT = Path(__file__).resolve().parents[1]
MIPS = [sys.executable, "-m", "mips.cli"]


def _tiny_notebooks(folder: Path, fail_when: str = "") -> Path:
    """Two stage notebooks that do almost nothing; 'dataset' raises for tasks whose name starts with fail_when."""
    folder.mkdir(parents=True, exist_ok=True)
    for stage in ("dataset", "search"):
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell('task = "Sum_All"\npreset = "full"\nrun_dir = ""\ndevice = "cpu"')
        params.metadata["tags"] = ["parameters"]
        body = f'print("{stage} of", task)'
        if stage == "dataset" and fail_when:
            body = f'if task.startswith("{fail_when}"):\n    raise ValueError("boom in " + task)\n' + body
        nb.cells = [params, nbformat.v4.new_code_cell(body)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{stage}.ipynb")
    return folder


def test_failing_task_does_not_stop_the_others(isolated, monkeypatch):
    monkeypatch.setenv("MIPS_NOTEBOOKS", str(_tiny_notebooks(isolated / "nbs", fail_when="Parity")))
    tasks = registry().select("Sum_All,Parity_All,Add_Mod_3")
    result = run_batch(tasks, ["dataset", "search"], RunOptions(preset="smoke"), workers=2, quiet=True)
    by = {(s.task, s.stage): s for s in result.statuses}
    assert by[("parity_all", "dataset")].status == FAILED
    assert "boom in Parity_All" in by[("parity_all", "dataset")].error
    assert by[("parity_all", "search")].status == SKIPPED
    assert "dataset" in by[("parity_all", "search")].error
    for t in ("sum_all", "add_mod_3"):
        assert by[(t, "dataset")].status == OK and by[(t, "search")].status == OK
    assert result.n_failed == 1
    out = isolated / "book" / "generated"
    failed_nb = nbformat.read(out / "parity_all" / "dataset.ipynb", as_version=4)
    outputs = [o for c in failed_nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any(o.get("ename") == "ValueError" for o in outputs), "the failed notebook keeps its traceback"
    page = nbformat.read(next((out / "tasks").glob("*_parity_all.ipynb")), as_version=4)
    text = "\n".join(c.source for c in page.cells if c.cell_type == "markdown")
    assert "This stage failed" in text and "Not run" in text


def test_rerun_reuses_finished_notebooks_and_force_reruns(isolated, monkeypatch):
    monkeypatch.setenv("MIPS_NOTEBOOKS", str(_tiny_notebooks(isolated / "nbs")))
    tasks = registry().select("Sum_All")
    first = run_batch(tasks, ["dataset", "search"], RunOptions(preset="smoke"), workers=1, quiet=True)
    assert [s.status for s in first.statuses] == [OK, OK]
    second = run_batch(tasks, ["dataset", "search"], RunOptions(preset="smoke"), workers=1, quiet=True)
    assert [s.status for s in second.statuses] == [CACHED, CACHED]
    # Editing a stage notebook invalidates it and the stages after it, not the ones before.
    nb_path = isolated / "nbs" / "search.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("x = 1"))
    nbformat.write(nb, nb_path)
    third = run_batch(tasks, ["dataset", "search"], RunOptions(preset="smoke"), workers=1, quiet=True)
    assert [s.status for s in third.statuses] == [CACHED, OK]
    forced = run_batch(tasks, ["dataset", "search"], RunOptions(preset="smoke", force=True), workers=1, quiet=True)
    assert [s.status for s in forced.statuses] == [OK, OK]


def test_killed_run_restarts_without_redoing_finished_work(isolated):
    """SIGKILL the whole batch after the first notebook finished; the restart reuses it and completes."""
    env = dict(os.environ, MIPS_PRESET="smoke")
    out = isolated / "book" / "generated"
    cmd = MIPS + ["run", "--tasks", "Sum_All,Parity_All,Add_Mod_3", "--stages", "dataset", "--preset", "smoke",
                  "--workers", "1", "--no-results"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    first_status = None
    deadline = time.time() + 240
    while time.time() < deadline and first_status is None:
        time.sleep(0.5)
        found = sorted(out.glob("*/dataset.status.json"))
        if found:
            first_status = found[0]
    assert first_status is not None, "no notebook finished before the deadline"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = json.loads(first_status.read_text())
    assert len(list(out.glob("*/dataset.status.json"))) < 3, "the kill came too late to test a restart"

    rerun = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "reused" in rerun.stderr + rerun.stdout
    after = json.loads(first_status.read_text())
    assert after["finished"] == before["finished"], "a finished notebook was executed again"
    statuses = [NotebookStatus.load(p) for p in out.glob("*/dataset.status.json")]
    assert len(statuses) == 3 and all(s.status == OK for s in statuses)
    assert not list(out.glob("*/.*.tmp.ipynb")), "no half-written notebook is left behind"


def test_exit_status_counts_failures(isolated, monkeypatch):
    monkeypatch.setenv("MIPS_NOTEBOOKS", str(_tiny_notebooks(isolated / "nbs", fail_when="Parity_")))
    cmd = MIPS + ["run", "--tasks", "Parity_All,Parity_Last2,Sum_All", "--stages", "dataset", "--workers", "2",
                  "--no-results"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert sum(line.startswith("FAILED ") for line in proc.stdout.splitlines()) == 2


def test_submitit_local_executor_runs_the_same_work(isolated, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("MIPS_NOTEBOOKS", str(_tiny_notebooks(isolated / "nbs")))
    tasks = registry().select("Sum_All,Add_Mod_3")
    result = run_batch(tasks, ["dataset"], RunOptions(preset="smoke"), executor="submitit-local", quiet=True)
    assert sorted((s.task, s.status) for s in result.statuses) == [("add_mod_3", OK), ("sum_all", OK)]
    assert (isolated / "runs" / "_submitit").is_dir(), "submitit wrote its job folder"


def test_unknown_stage_or_task_is_a_clear_error(isolated):
    bad_stage = subprocess.run(MIPS + ["run", "--tasks", "Sum_All", "--stages", "serch"], cwd=ROOT,
                               capture_output=True, text=True)
    assert bad_stage.returncode == 2 and "unknown stage" in bad_stage.stderr
    bad_task = subprocess.run(MIPS + ["run", "--tasks", "Sum_Al", "--stages", "dataset"], cwd=ROOT,
                              capture_output=True, text=True)
    assert bad_task.returncode == 2 and "Sum_All" in bad_task.stderr


def test_chapter_notebooks_run_in_order_into_the_book(isolated, monkeypatch):
    import mips.runner as runner

    monkeypatch.setenv("MIPS_NOTEBOOKS", str(_tiny_notebooks(isolated / "nbs")))
    monkeypatch.setitem(runner.CHAPTERS, "tiny", ("dataset", "search"))
    result = run_batch([], [], RunOptions(preset="smoke"), chapters=["tiny"], quiet=True)
    assert [(s.task, s.stage, s.status) for s in result.statuses] == [
        ("chapters", "dataset", OK), ("chapters", "search", OK)]
    assert (isolated / "book" / "generated" / "chapters" / "search.ipynb").exists()
    with pytest.raises(ValueError, match="unknown chapter"):
        run_batch([], [], RunOptions(), chapters=["nope"], quiet=True)


def test_a_notebook_whose_stage_record_was_deleted_runs_again(isolated, monkeypatch):
    """Deleting a stage's folder under runs/ makes its notebook run again, not be reused as finished."""
    from mips.artifacts import load_record, stage_dir

    nbs = _tiny_notebooks(isolated / "nbs")
    nb = nbformat.read(nbs / "dataset.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "from mips.artifacts import StageRun\nfrom mips.tasks import get_task\n"
        "StageRun(get_task(task).id, 'dataset', {}, run_dir=run_dir or None).finish({}, success=True)"))
    nbformat.write(nb, nbs / "dataset.ipynb")
    monkeypatch.setenv("MIPS_NOTEBOOKS", str(nbs))
    tasks, opts = registry().select("Sum_All"), RunOptions(preset="smoke")

    def statuses():
        return [s.status for s in run_batch(tasks, ["dataset"], opts, workers=1, quiet=True).statuses]

    assert statuses() == [OK]
    assert statuses() == [CACHED]
    shutil.rmtree(stage_dir("sum_all", "dataset"))
    assert statuses() == [OK]
    assert load_record("sum_all", "dataset") is not None


def test_a_second_run_in_the_same_runs_folder_is_refused(tmp_path):
    """Two runs sharing a runs folder deleted each other's scratch files (issue 20, item 6)."""
    import subprocess
    import sys

    from mips.runner import runs_lock

    probe = (f"from pathlib import Path\nfrom mips.runner import runs_lock\n"
             f"with runs_lock(Path({str(tmp_path)!r})):\n    print('got it')\n")
    with runs_lock(tmp_path):
        busy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert busy.returncode != 0 and "another `mips run`" in busy.stderr and "--run-dir" in busy.stderr
    free = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert free.returncode == 0 and "got it" in free.stdout


def test_workers_die_with_a_killed_parent(tmp_path):
    """kill -9 of the parent used to leave its worker running notebooks beside the rerun."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = f"""
import concurrent.futures as cf, os, time
from mips.runner import die_with_parent

def work(path):
    open(path, "w").write(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    with cf.ProcessPoolExecutor(1, initializer=die_with_parent) as pool:
        pool.submit(work, {str(tmp_path / 'worker.pid')!r})
        time.sleep(120)
"""
    parent = subprocess.Popen([sys.executable, "-c", script])
    pid_file = tmp_path / "worker.pid"
    for _ in range(300):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(worker, signal.SIGKILL)
        raise AssertionError("the worker outlived its killed parent")
