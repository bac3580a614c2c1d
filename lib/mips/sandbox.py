"""Run untrusted Python (anything an LLM wrote) in a separate process with limits.

The child gets a fresh temporary working directory, CPU-time, address-space and file-size limits, a wall
clock, no network (a new network namespace via ``unshare -n`` where the OS allows it, and an audit hook that
refuses sockets everywhere), no subprocesses, and no file writes outside its working directory. A hung,
greedy or hostile program is classified, never allowed to take the batch down.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# Outcomes of one sandboxed execution.
OK, SYNTAX_ERROR, RUNTIME_ERROR, TIMEOUT, MEMORY_ERROR, NO_ENTRY = (
    "ok", "syntax_error", "runtime_error", "timeout", "memory_error", "no_entry")


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed process."""

    cpu_seconds: int = 60
    wall_seconds: float = 90.0
    memory_mb: int = 1024
    file_mb: int = 16


@dataclass
class SandboxResult:
    """What came back from the child: an outcome, the outputs (one per input), and diagnostics."""

    outcome: str
    outputs: list | None = None
    error: str = ""
    stdout: str = ""
    returncode: int | None = None
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)


_DRIVER = r'''
import builtins, io, json, os, resource, sys, traceback
lim = json.loads(sys.argv[1])
mb = 1024 * 1024
resource.setrlimit(resource.RLIMIT_CPU, (lim["cpu_seconds"], lim["cpu_seconds"] + 1))
resource.setrlimit(resource.RLIMIT_AS, (lim["memory_mb"] * mb, lim["memory_mb"] * mb))
resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_mb"] * mb, lim["file_mb"] * mb))
HOME = os.path.realpath(os.getcwd())
_real_write = sys.__stdout__.write

def _inside(path):
    try:
        p = os.path.realpath(os.fspath(path) if not isinstance(path, int) else "/proc/self/fd")
    except Exception:
        return False
    return p == HOME or p.startswith(HOME + os.sep) or p.startswith("/dev/null")

def _guard(event, args):
    if event.startswith("socket.") and event not in ("socket.gethostname",):
        raise PermissionError("sandbox: network access is not allowed")
    if event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                 "os.forkpty", "pty.spawn", "ctypes.dlopen", "os.kill", "os.killpg"):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open" and len(args) > 1 and isinstance(args[1], str) and any(c in args[1] for c in "wax+"):
        if not _inside(args[0]):
            raise PermissionError(f"sandbox: writing outside the working directory is not allowed: {args[0]}")
    if event in ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.chmod", "os.truncate"):
        if args and not isinstance(args[0], int) and not _inside(args[0]):
            raise PermissionError(f"sandbox: {event} outside the working directory is not allowed")

mode, entry = sys.argv[2], sys.argv[3]
src = open("program.py").read()
inputs = json.load(open("inputs.json")) if mode == "call" else None
try:
    code = compile(src, "program.py", "exec")
except (SyntaxError, ValueError) as e:
    json.dump({"outcome": "syntax_error", "error": f"{type(e).__name__}: {e}"}, open("result.json", "w"))
    sys.exit(0)
captured = io.StringIO()
sys.addaudithook(_guard)
ns = {"__name__": "__main__" if mode == "script" else "program"}
try:
    real_stdout, sys.stdout = sys.stdout, captured
    exec(code, ns)
    if mode == "call":
        fn = ns.get(entry)
        if not callable(fn):
            raise LookupError(f"no function named {entry!r}")
        outputs = [fn(list(x)) for x in inputs]
        outputs = [list(o) if not isinstance(o, (int, float, bool)) and o is not None else o for o in outputs]
    else:
        outputs = None
    sys.stdout = real_stdout
    res = {"outcome": "ok", "outputs": outputs}
except LookupError as e:
    sys.stdout = real_stdout
    res = {"outcome": "no_entry" if "no function named" in str(e) else "runtime_error",
           "error": f"{type(e).__name__}: {e}"}
except MemoryError as e:
    sys.stdout = real_stdout
    res = {"outcome": "memory_error", "error": "MemoryError"}
except SystemExit as e:
    sys.stdout = real_stdout
    res = {"outcome": "ok" if e.code in (0, None) else "runtime_error", "error": f"SystemExit({e.code})",
           "exit": e.code if isinstance(e.code, int) else (0 if e.code is None else 1)}
except BaseException as e:
    sys.stdout = real_stdout
    tb = traceback.format_exception_only(type(e), e)[-1].strip()
    res = {"outcome": "runtime_error", "error": tb[:2000]}
res["stdout"] = captured.getvalue()[-20000:]
def _plain(o):
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    if isinstance(o, bool):
        return int(o)
    if hasattr(o, "item"):
        return o.item()
    return o
try:
    res["outputs"] = _plain(res.get("outputs"))
    payload = json.dumps(res)
except (TypeError, ValueError) as e:
    payload = json.dumps({"outcome": "runtime_error", "error": f"unserializable output: {e}",
                          "stdout": res.get("stdout", "")})
open("result.json", "w").write(payload)
sys.exit(res.get("exit", 0) if mode == "script" else 0)
'''


@functools.lru_cache(maxsize=1)
def network_namespace_available() -> bool:
    """Whether ``unshare -n`` can give a child its own empty network namespace here."""
    if not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _execute(source: str, mode: str, entry: str, inputs: list | None, limits: Limits) -> SandboxResult:
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="mips-sandbox-") as work:
        Path(work, "program.py").write_text(source)
        if inputs is not None:
            Path(work, "inputs.json").write_text(json.dumps(inputs))
        lim = json.dumps({"cpu_seconds": limits.cpu_seconds, "memory_mb": limits.memory_mb,
                          "file_mb": limits.file_mb})
        cmd = [sys.executable, "-I", "-c", _DRIVER, lim, mode, entry]
        if network_namespace_available():
            cmd = ["unshare", "-n"] + cmd
        env = {"PATH": "/usr/bin:/bin", "HOME": work, "PYTHONHASHSEED": "0", "LANG": "C.UTF-8"}
        try:
            proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                                  timeout=limits.wall_seconds, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return SandboxResult(TIMEOUT, error=f"wall-clock limit of {limits.wall_seconds}s reached",
                                 stdout=out[-20000:], seconds=time.time() - start)
        seconds = time.time() - start
        result_file = Path(work, "result.json")
        if result_file.exists():
            try:
                res = json.loads(result_file.read_text())
            except json.JSONDecodeError:
                res = {"outcome": RUNTIME_ERROR, "error": "unreadable result (output too large?)"}
            return SandboxResult(res["outcome"], res.get("outputs"), res.get("error", ""),
                                 res.get("stdout", ""), proc.returncode, seconds)
        # The child died without writing a result: killed by a limit, most likely.
        stderr = proc.stderr[-2000:]
        if proc.returncode in (-9, -24, 137, 152) or "CPU time limit" in stderr:
            return SandboxResult(TIMEOUT, error=f"CPU-time limit of {limits.cpu_seconds}s reached",
                                 returncode=proc.returncode, seconds=seconds)
        if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
            return SandboxResult(MEMORY_ERROR, error="memory limit reached", returncode=proc.returncode,
                                 seconds=seconds)
        return SandboxResult(RUNTIME_ERROR, error=f"process exited {proc.returncode}: {stderr}",
                             returncode=proc.returncode, seconds=seconds)


def run_program(source: str, inputs: list[list], entry: str = "f", limits: Limits | None = None) -> SandboxResult:
    """Define ``source``, then call ``entry(x)`` on every input sequence; outputs come back as lists."""
    return _execute(source, "call", entry, inputs, limits or Limits())


def run_script(source: str, limits: Limits | None = None) -> SandboxResult:
    """Run ``source`` as ``__main__`` and capture what it prints and its exit status."""
    return _execute(source, "script", "", None, limits or Limits())
