"""Probe the project as an attacker and a careless user would, one line per probe (issue 20's list).

Every probe is bounded in time and cleans up after itself; network probes only touch sockets this script
creates (a Unix socket in a temporary folder). The kernel-layer probes run with the in-process audit hook
left out, as a program that switched it off would have it: they pass only if Landlock, seccomp and the
sandbox's PID namespace hold on their own. Exit status: the number of probes that failed.

    .venv/bin/python benchmarks/hostile.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mips import artifacts, llm, sandbox, verify
from mips.data import Dataset
from mips.tasks import discover, get_task

ROOT = Path(__file__).resolve().parents[1]
QUICK = sandbox.Limits(cpu_seconds=3, wall_seconds=10)


def kernel_only(source: str, limits: sandbox.Limits = QUICK) -> sandbox.SandboxResult:
    """Run a script with the audit hook left out: only the kernel layers stand."""
    return sandbox._execute(source, "script", "", None, limits, audit_hook=False)


def p1_no_exec() -> str:
    res = kernel_only("import subprocess\ntry:\n    subprocess.run(['/bin/echo', 'escaped'])\n"
                      "except PermissionError:\n    print('refused')\n")
    assert "refused" in res.stdout and "escaped" not in res.stdout, res
    return "starting a program is refused by seccomp (no audit hook)"


def p1_children_die() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        old, tempfile.tempdir = tempfile.tempdir, tmp
        try:
            kernel_only("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n",
                        sandbox.Limits(cpu_seconds=3, wall_seconds=2))
        finally:
            tempfile.tempdir = old
        time.sleep(1)
        left = [pid for pid in filter(str.isdigit, os.listdir("/proc"))
                if _cwd(pid).startswith(tmp)]
        for pid in left:
            os.kill(int(pid), 9)
        assert not left, f"survivors {left}"
    return "a forked child in a new session dies with the sandbox (PID namespace)"


def _cwd(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def p2_hook_code() -> str:
    res = sandbox.run_script("import gc\nfor o in gc.get_objects():\n"
                             "    if getattr(o, '__name__', '') == 'guard' and hasattr(o, '__code__'):\n"
                             "        o.__code__ = o.__code__.replace(co_consts=o.__code__.co_consts)\n",
                             QUICK)
    assert res.outcome == sandbox.RUNTIME_ERROR and "replacing a function's code" in res.error, res
    return "replacing the audit hook's __code__ is refused"


def p2_unix_socket() -> str:
    with tempfile.TemporaryDirectory() as tmp, socket.socket(socket.AF_UNIX) as server:
        path = os.path.join(tmp, "host.sock")
        server.bind(path)
        server.listen(1)
        server.settimeout(0.5)
        kernel_only(f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({path!r})\ns.sendall(b'x')\n")
        try:
            server.accept()
            raise AssertionError("a connection arrived")
        except TimeoutError:
            pass
    return "a path-named Unix socket on the host is unreachable (no audit hook)"


def p3_verdicts() -> str:
    task = get_task("Sum_All")
    x = np.random.default_rng(0).integers(0, 100, (20, 10, 1))
    ds = Dataset(task, x, np.cumsum(x, axis=1), x, np.cumsum(x, axis=1), seed=0, size=40, key="probe")
    outcomes = []
    for body in ("return [10 ** 400 for x in xs]", "import os; os._exit(0)",
                 "import json, os; os.write(1, json.dumps({'outcome': 'ok', 'outputs': [[0]] * 999}).encode()); "
                 "os._exit(0)"):
        v = verify.verify_source(f"def f(xs):\n    {body}\n", task, ds, exhaustive_budget=50, limits=QUICK)
        assert not v.solved
        outcomes.append(v.outcome)
    return f"hostile outputs get verdicts: {', '.join(outcomes)}"


def p4_credentials() -> str:
    os.environ["OPENAI_BASE_URL"] = "http://alice:hunter2secret@127.0.0.1:9/v1"
    try:
        text = llm._redact("error at http://alice:hunter2secret@127.0.0.1:9/v1")
        url = llm._public_url(os.environ["OPENAI_BASE_URL"])
    finally:
        del os.environ["OPENAI_BASE_URL"]
    assert "hunter2secret" not in text + url and "alice" not in text + url, (text, url)
    return "credentials in OPENAI_BASE_URL are removed from errors and replies"


def p5_duplicate_id() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "parity_all.py").write_text((ROOT / "tasks" / "bitwise_not.py").read_text()
                                                 .replace('name="Bitwise_Not"', 'name="Fake_Parity"'))
        reg = discover([ROOT / "tasks", Path(tmp)])
        assert "Fake_Parity" not in reg.tasks and any("already taken" in e for e in reg.errors.values())
    return "a task file reusing a built-in's file id is refused"


def p6_lock_and_workers() -> str:
    from mips.runner import RunsFolderBusy, runs_lock

    with tempfile.TemporaryDirectory() as tmp, runs_lock(Path(tmp)):
        probe = f"from pathlib import Path\nfrom mips.runner import runs_lock\nwith runs_lock(Path({tmp!r})): pass\n"
        busy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert busy.returncode != 0 and RunsFolderBusy.__name__ in busy.stderr
    return "a second mips run in the same runs folder is refused (workers also die with their parent)"


def p7_corrupt_artifact() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        run = artifacts.StageRun("t", "search", {"x": 1}, run_dir=Path(tmp))
        run.path("model.pt").write_bytes(b"weights")
        run.finish({}, success=True)
        (Path(tmp) / "t" / "search" / "model.pt").write_bytes(b"garbage")
        assert artifacts.StageRun("t", "search", {"x": 1}, run_dir=Path(tmp)).cached() is None
    return "a corrupted stage file is detected and the stage recomputed"


def p8_llm_server() -> str:
    from mips import llm_server

    try:
        model = llm_server.ChatModel("smollm2-135m", threads=1)
    except Exception as exc:                 # the local model is optional
        return f"skipped: local model not available ({type(exc).__name__})"
    with llm_server.ChatServer(model) as srv:
        import http.client

        statuses = []
        for body in ([1], {"messages": [{"role": "user", "content": "hi"}], "seed": "abc"},
                     {"messages": [{"role": "user", "content": "hi"}], "n": "x"}):
            conn = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
            conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
            statuses.append(conn.getresponse().status)
        assert statuses == [400, 400, 400], statuses
    return "the local LLM server answers malformed requests with 400 and stays up"


def p9_exit_at_import() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "exits.py").write_text("import sys\nsys.exit(3)\n")
        reg = discover([Path(tmp)])
        assert any("SystemExit" in e for e in reg.errors.values())
    return "a task file calling sys.exit() at import is reported, not fatal"


def p10_shadow() -> str:
    res = kernel_only("print(open('/etc/shadow').read()[:10])")
    assert res.outcome == sandbox.RUNTIME_ERROR and "PermissionError" in res.error and not res.stdout.strip()
    return "/etc/shadow is unreadable (Landlock, no audit hook)"


def p11_cli() -> str:
    proc = subprocess.run([sys.executable, "-m", "mips", "run", "--tasks", "Sum_All", "--workers", "-1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--workers" in proc.stderr
    return "python -m mips works and rejects --workers -1 clearly"


PROBES: list[Callable[[], str]] = [p1_no_exec, p1_children_die, p2_hook_code, p2_unix_socket, p3_verdicts,
                                   p4_credentials, p5_duplicate_id, p6_lock_and_workers, p7_corrupt_artifact,
                                   p8_llm_server, p9_exit_at_import, p10_shadow, p11_cli]


def main() -> int:
    layers = sandbox.isolation_report()
    print("sandbox layers here: " + ", ".join(f"{k}={v}" for k, v in layers.items()), flush=True)
    failed, start = 0, time.time()
    for probe in PROBES:
        t0 = time.time()
        try:
            line, mark = probe(), "held"
        except Exception as exc:            # a probe that got through is a finding, the others still run
            line, mark, failed = f"{type(exc).__name__}: {str(exc)[:200]}", "FAILED", failed + 1
        print(f"{mark:>6}  {probe.__name__:<22} {time.time() - t0:5.1f}s  {line}", flush=True)
    print(f"{len(PROBES) - failed} held, {failed} failed, {time.time() - start:.0f}s", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
