"""The sandbox contains hostile and broken programs and classifies each outcome.

Every test runs a real child process: an infinite loop, a sleeper, a memory bomb, a connection to a
listener the test opens on 127.0.0.1 (nothing may arrive), writes outside the working directory, fork and
subprocess attempts, reads of the project's data, and the ordinary cases the judges rely on.
"""

import socket
import sys

import pytest

from mips import sandbox
from mips.sandbox import Limits, run_program, run_script

QUICK = Limits(cpu_seconds=2, wall_seconds=10, memory_mb=512)


def test_program_outputs_come_back_as_lists():
    src = ("def f(xs):\n    total, ys = 0, []\n    for x in xs:\n"
           "        total += x\n        ys.append(total)\n    return tuple(ys)\n")
    res = run_program(src, [[1, 2, 3], [5]], limits=QUICK)
    assert res.outcome == sandbox.OK, res.error
    assert res.outputs == [[1, 3, 6], [5]]


def test_two_dim_inputs_and_bool_and_numpy_outputs_are_plain():
    src = "import numpy as np\ndef g(xs):\n    return [bool(a ^ b) for a, b in xs] + list(np.array([7]))\n"
    res = run_program(src, [[(0, 1), (1, 1)]], entry="g", limits=QUICK)
    assert res.outcome == sandbox.OK, res.error
    assert res.outputs == [[1, 0, 7]]


def test_script_stdout_and_exit_status():
    ok = run_script("print('Row 1: Success')", limits=QUICK)
    assert (ok.outcome, ok.returncode, ok.stdout) == (sandbox.OK, 0, "Row 1: Success\n")
    failed = run_script("import sys\nprint('Failure')\nsys.exit(2)", limits=QUICK)
    assert (failed.outcome, failed.returncode) == (sandbox.RUNTIME_ERROR, 2)
    assert failed.stdout == "Failure\n"


def test_syntax_error_is_classified():
    res = run_program("def f(xs)\n    return xs\n", [[1]], limits=QUICK)
    assert res.outcome == sandbox.SYNTAX_ERROR
    assert "SyntaxError" in res.error


def test_missing_entry_and_row_errors():
    assert run_program("def g(xs):\n    return xs\n", [[1]], limits=QUICK).outcome == sandbox.NO_ENTRY
    res = run_program("def f(xs):\n    return [1 // x for x in xs]\n", [[1], [0]], limits=QUICK)
    assert res.outcome == sandbox.RUNTIME_ERROR
    assert res.error.startswith("row 1: ZeroDivisionError")


def test_infinite_loop_hits_the_cpu_limit():
    res = run_program("def f(xs):\n    while True:\n        pass\n", [[1]], limits=Limits(1, 20, 512))
    assert res.outcome == sandbox.TIMEOUT
    assert res.seconds < 15


def test_sleeper_hits_the_wall_clock():
    res = run_script("import time\ntime.sleep(60)", limits=Limits(cpu_seconds=5, wall_seconds=1.5))
    assert res.outcome == sandbox.TIMEOUT
    assert "wall-clock" in res.error and res.seconds < 10


@pytest.mark.parametrize("bomb", ["x = bytearray(8 * 1024 ** 3)",
                                  "xs = []\nwhile True:\n    xs.append(' ' * 10 ** 7)"])
def test_memory_bomb_is_contained(bomb):
    res = run_script(bomb, limits=Limits(cpu_seconds=10, wall_seconds=30, memory_mb=256))
    assert res.outcome == sandbox.MEMORY_ERROR, (res.outcome, res.error)


def test_socket_connection_reaches_nothing():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(1.0)
    port = listener.getsockname()[1]
    src = ("import socket\n"
           f"s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
           "s.sendall(b'exfiltrated')\n")
    try:
        res = run_script(src, limits=QUICK)
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
    assert res.outcome == sandbox.RUNTIME_ERROR
    assert "PermissionError" in res.error or "Errno" in res.error


def test_write_outside_working_directory_is_refused(tmp_path):
    target = tmp_path / "pwned.txt"
    for src in (f"open({str(target)!r}, 'w').write('x')",
                f"import os\nfd = os.open({str(target)!r}, os.O_CREAT | os.O_WRONLY)\nos.write(fd, b'x')",
                f"import shutil\nopen('here.txt', 'w').write('x')\nshutil.copy('here.txt', {str(target)!r})"):
        res = run_script(src, limits=QUICK)
        assert res.outcome == sandbox.RUNTIME_ERROR, src
        assert "PermissionError" in res.error
    assert not target.exists()


def test_writes_inside_the_working_directory_are_allowed():
    res = run_script("open('scratch.txt', 'w').write('ok')\nprint(open('scratch.txt').read())", limits=QUICK)
    assert (res.outcome, res.stdout) == (sandbox.OK, "ok\n")


@pytest.mark.parametrize("attempt", [
    "import os\npid = os.fork()\nif pid == 0:\n    open({path!r}, 'w').write('x')\n",
    "import subprocess\nsubprocess.run(['touch', {path!r}])\n",
    "import os\nos.system('touch {path}')\n",
])
def test_fork_and_subprocess_are_refused(tmp_path, attempt):
    target = tmp_path / "spawned.txt"
    res = run_script(attempt.format(path=str(target)), limits=QUICK)
    assert res.outcome == sandbox.RUNTIME_ERROR
    assert "not allowed" in res.error
    assert not target.exists()


def test_project_data_and_package_are_hidden():
    from mips.artifacts import project_root

    readme = project_root() / "pyproject.toml"
    res = run_script(f"print(open({str(readme)!r}).read())", limits=QUICK)
    assert res.outcome == sandbox.RUNTIME_ERROR and "PermissionError" in res.error
    res = run_script("from mips.tasks import get_task", limits=QUICK)
    assert res.outcome == sandbox.RUNTIME_ERROR and "PermissionError" in res.error


def test_stdout_flood_is_bounded():
    res = run_script("while True:\n    print('y' * 1000)", limits=Limits(5, 30, 256, file_mb=1))
    assert res.outcome == sandbox.RUNTIME_ERROR
    assert len(res.stdout) <= 20_000


def test_isolation_report_names_the_layers():
    layers = sandbox.isolation_report()
    assert layers["audit_hook"] is True and layers["rlimits"] is True
    if sys.platform == "linux":
        assert layers["network_namespace"] == sandbox.network_namespace_available()


# ---------------------------------------------------------------------------------------------------------
# The kernel layers alone (issue 20, items 1, 2, 10): with the in-process audit hook left out, as a program
# that switched it off would have it, nothing below may get through. Each probe touches only what the
# test itself creates (a Unix socket in tmp_path, processes it can see end) and is bounded in time.

kernel_only = pytest.mark.skipif(not (sandbox.isolation_report().get("landlock_abi")
                                      and sandbox.isolation_report().get("seccomp")
                                      and sandbox.isolation_report().get("pid_namespace")),
                                 reason="this machine lacks Landlock, seccomp or PID namespaces")


KERNEL_PROBE = Limits(cpu_seconds=5, wall_seconds=20)


def _without_hook(source: str, limits: Limits = KERNEL_PROBE):
    return sandbox._execute(source, "script", "", None, limits, audit_hook=False)


@kernel_only
def test_no_program_can_be_started_even_without_the_audit_hook():
    res = _without_hook("import subprocess\ntry:\n    subprocess.run(['/bin/echo', 'escaped'])\n"
                        "except PermissionError as e:\n    print('refused', e.errno)\n")
    assert res.meta["isolation"]["audit_hook"] is False
    assert "refused 1" in res.stdout and "escaped" not in res.stdout


@kernel_only
def test_no_unix_socket_reaches_the_host_even_without_the_audit_hook(tmp_path):
    path = tmp_path / "host.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        server.settimeout(0.5)
        res = _without_hook(f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({str(path)!r})\n"
                            f"s.sendall(b'leak')\n")
        with pytest.raises(TimeoutError):
            server.accept()
    assert res.outcome == sandbox.RUNTIME_ERROR and "PermissionError" in res.error


@kernel_only
def test_etc_shadow_is_not_readable_even_without_the_audit_hook():
    res = _without_hook("print(open('/etc/shadow').read()[:20])")
    assert res.outcome == sandbox.RUNTIME_ERROR and "PermissionError" in res.error and not res.stdout.strip()
    ok = _without_hook("import json, datetime\nprint(json.dumps({'t': str(datetime.date(2020, 1, 1))}))")
    assert ok.outcome == sandbox.OK and "2020-01-01" in ok.stdout       # the runtime still works


@kernel_only
def test_a_forked_child_in_a_new_session_dies_with_the_sandbox(tmp_path, monkeypatch):
    """A child that leaves the process group (setsid) used to outlive the run; in the sandbox's own PID
    namespace it dies when the sandbox does, after a normal end and after a timeout."""
    import os
    import tempfile
    import time

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))      # the sandbox's work dirs land here

    def survivors() -> list[int]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.readlink(f"/proc/{pid}/cwd").startswith(str(tmp_path)):
                    found.append(int(pid))
            except OSError:
                continue
        return found

    fork = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n    os._exit(0)\n"
    for tail, outcome in (("print('parent done')\n", sandbox.OK), ("time.sleep(60)\n", sandbox.TIMEOUT)):
        res = _without_hook(fork + tail, Limits(cpu_seconds=5, wall_seconds=2))
        assert res.outcome == outcome
        deadline = time.time() + 5
        while survivors() and time.time() < deadline:
            time.sleep(0.1)
        left = survivors()
        for pid in left:
            os.kill(pid, 9)
        assert not left, f"processes outlived the sandbox: {left}"


def test_the_audit_hook_cannot_be_rewritten_from_inside():
    """Finding the hook through gc and replacing its code (issue 20, item 2) is refused by the hook."""
    res = run_script("import gc\nfor o in gc.get_objects():\n"
                     "    if getattr(o, '__name__', '') == 'guard' and hasattr(o, '__code__'):\n"
                     "        o.__code__ = (lambda event, args: None).__code__\n",
                     Limits(cpu_seconds=5, wall_seconds=20))
    assert res.outcome == sandbox.RUNTIME_ERROR and "replacing a function's code" in res.error
