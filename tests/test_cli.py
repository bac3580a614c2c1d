"""The `mips` command: listing tasks, datasets, clear errors, extra task folders."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIPS = [sys.executable, "-m", "mips.cli"]

EXTRA_TASK = '''
import numpy as np
from mips.tasks import Task

def generate(rng, n):
    x = rng.integers(0, 5, size=(n, 6, 1))
    return x, np.cumsum(x, axis=1) % 2

def reference(xs):
    s, ys = 0, []
    for x in xs:
        s += x
        ys.append(s % 2)
    return ys

TASK = Task(name="Odd_Prefix_Sum", description="y_t = (x_0 + ... + x_t) mod 2", input_dim=1, output_dim=1,
            seq_len=6, input_values=tuple(range(5)), generate=generate, reference=reference)
'''


def run(*args, **kw):
    return subprocess.run(MIPS + list(args), cwd=ROOT, capture_output=True, text=True, timeout=120, **kw)


def test_tasks_lists_all_62_in_paper_order():
    proc = run("tasks")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln[:3].strip().isdigit() and len(ln.split()) > 5]
    assert len(lines) == 62
    assert lines[0].split()[1] == "Binary_Addition" and lines[-1].split()[1] == "Newton_Magnetic"
    assert "62 tasks" in proc.stdout


def test_data_prints_rows_and_unknown_task_suggests(isolated):
    ok = run("data", "Parity_All", "--size", "500", "--rows", "2")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("x = [") == 2 and "train=450" in ok.stdout
    bad = run("data", "Parity_Al")
    assert bad.returncode == 2
    assert "unknown task 'Parity_Al'" in bad.stderr and "Parity_All" in bad.stderr


def test_tasks_dir_adds_a_task_and_a_broken_file_is_named(tmp_path):
    (tmp_path / "odd_prefix_sum.py").write_text(EXTRA_TASK)
    (tmp_path / "broken_task.py").write_text("TASK = 3\n")
    proc = run("--tasks-dir", str(tmp_path), "tasks")
    assert "Odd_Prefix_Sum" in proc.stdout and "63 tasks" in proc.stdout
    assert "broken_task.py" in proc.stderr and "must define TASK" in proc.stderr
    assert proc.returncode == 1, "a broken task file is reported in the exit status"
    data = run("--tasks-dir", str(tmp_path), "data", "Odd_Prefix_Sum", "--size", "100", "--rows", "1")
    assert data.returncode == 0 and "x = [" in data.stdout


def test_python_dash_m_mips_and_a_negative_worker_count():
    proc = subprocess.run([sys.executable, "-m", "mips", "run", "--tasks", "Sum_All", "--workers", "-1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--workers must be 0" in proc.stderr
    assert "worker(s)" not in proc.stdout                     # refused before the run announces itself
