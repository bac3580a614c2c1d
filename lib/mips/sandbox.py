"""Run untrusted Python (anything an LLM wrote) in a separate process with limits.

Each run gets a fresh process in its own session and a fresh temporary working directory. Isolation is
layered, and each layer reports whether it was active (``SandboxResult.meta["isolation"]``):

1. **Process limits** (always): CPU time, address space, file size and core size (``resource``), a
   wall clock enforced by the parent (the whole process group is killed), a clean environment, no stdin.
2. **Kernel isolation** (where the OS allows it): a new, empty network namespace and a PID namespace whose
   processes all die with the run (``unshare -n -p -f --kill-child``); a Landlock domain that lets the
   child write only inside its working directory, read only the Python runtime, system libraries and a
   few files of /etc, make no TCP connection and signal no outside process; and a seccomp filter that
   refuses ``execve`` and ``socket()`` to the child and its descendants. This is what a hostile program
   cannot talk its way out of, with or without the hook below.
3. **An audit hook** (always, in the child): refuses sockets, subprocesses, ``fork``, ``ctypes``, writes
   outside the working directory, reads of the project's data (hidden test splits, run records) and
   imports of the ``mips`` package, each with a clear ``PermissionError``. It gives readable errors
   everywhere and is the only file and network guard on systems without layer 2; in-process hooks can
   be subverted by a determined program, so it is a second layer, not the guarantee.

Results come back on a pipe, the program's own stdout goes to a file opened by the parent, so a program
cannot redirect what the parent reads. Outcomes: ``ok``, ``syntax_error``, ``runtime_error``, ``timeout``,
``memory_error`` and ``no_entry``; whether an ``ok`` program's outputs are right is for the caller to judge.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Outcomes of one sandboxed execution.
OK, SYNTAX_ERROR, RUNTIME_ERROR, TIMEOUT, MEMORY_ERROR, NO_ENTRY = (
    "ok", "syntax_error", "runtime_error", "timeout", "memory_error", "no_entry")

_STDOUT_TAIL = 20_000  # characters of the program's stdout kept in the result


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed process."""

    cpu_seconds: int = 60
    wall_seconds: float = 90.0
    memory_mb: int = 1024
    file_mb: int = 16


@dataclass
class SandboxResult:
    """What came back from the child: an outcome, the outputs (one per input), and diagnostics.

    ``returncode`` is the process's exit status (negative: killed by that signal); for a script it is
    the program's own exit status. ``meta["isolation"]`` says which isolation layers were active.
    """

    outcome: str
    outputs: list | None = None
    error: str = ""
    stdout: str = ""
    returncode: int | None = None
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# The child's driver. Everything lives inside one function so that the program, which runs in a fresh
# namespace, finds no driver state in ``__main__``. argv[1] is the JSON config written by ``_execute``.
_DRIVER = r'''
def _sandbox_main():
    import builtins, io, json, os, resource, signal, sys, traceback
    cfg = json.loads(sys.argv[1])
    result_fd = os.dup(1)                       # the pipe to the parent: only the driver writes there
    os.dup2(cfg["stdout_fd"], 1)                # the program's prints go to the parent's file
    os.close(cfg["stdout_fd"])
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_seconds"], cfg["cpu_seconds"] + 1))
    resource.setrlimit(resource.RLIMIT_AS, (cfg["memory_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["file_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))   # no new processes (not enforced for root)
    except (ValueError, OSError):
        pass
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)           # an oversized write raises instead of killing
    home = os.path.realpath(os.getcwd())
    isolation = {"network_namespace": cfg["network_namespace"], "pid_namespace": cfg["pid_namespace"],
                 "landlock_abi": 0, "seccomp": "", "audit_hook": False, "rlimits": True}
    own_proc = os.path.realpath("/proc/self")    # this process in the host's /proc (in a pid namespace, pid 1)

    def landlock(read_roots):
        """Confine the process tree with Landlock: write in home only, read runtime roots, no TCP."""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        abi = libc.syscall(444, None, 0, 1)
        if abi < 1:
            return 0
        fs_bits = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}.get(abi, 16)
        handled_fs = (1 << fs_bits) - 1
        handled_net = 3 if abi >= 4 else 0                  # bind + connect TCP, no rule allows either
        scoped = 3 if abi >= 6 else 0                       # abstract unix sockets + signals
        attr = (ctypes.c_uint64 * 3)(handled_fs, handled_net, scoped)
        ruleset = libc.syscall(444, ctypes.byref(attr), ctypes.sizeof(attr), 0)
        if ruleset < 0:
            return 0

        class PathBeneath(ctypes.Structure):
            _pack_ = 1
            _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

        read_dir, read_file, execute = 1 << 3, 1 << 2, 1 << 0
        file_only = execute | (1 << 1) | read_file | ((1 << 14) if abi >= 3 else 0)

        def allow(path, access):
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                return
            if not os.path.isdir(path):
                access &= file_only
            rule = PathBeneath(access & handled_fs, fd)
            libc.syscall(445, ruleset, 1, ctypes.byref(rule), 0)
            os.close(fd)

        for root in read_roots:
            allow(root, execute | read_file | read_dir)
        allow("/dev/null", read_file | (1 << 1))
        allow(home, handled_fs)
        if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.syscall(446, ruleset, 0) != 0:
            os.close(ruleset)
            return 0
        os.close(ruleset)
        return int(abi)

    def seccomp():
        """A seccomp filter: execve/execveat and socket() fail with EPERM for this process and every
        descendant, so no program can be started and no socket (TCP, UDP or Unix) opened, whatever
        happens to the audit hook. Returns the architecture it was installed for, or ''."""
        import ctypes, platform
        arch = {"x86_64": (0xC000003E, (59, 322), 41), "aarch64": (0xC00000B7, (221, 281), 198)}
        if platform.machine() not in arch:
            return ""
        audit_arch, execs, sock = arch[platform.machine()]
        denied = (*execs, sock)

        class Filter(ctypes.Structure):
            _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                        ("k", ctypes.c_uint32)]

        class Prog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(Filter))]

        ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
        allow, eperm, kill = 0x7FFF0000, 0x00050001, 0x80000000
        n = len(denied)
        prog = [Filter(ld, 0, 0, 4), Filter(jeq, 1, 0, audit_arch), Filter(ret, 0, 0, kill),
                Filter(ld, 0, 0, 0), Filter(jge, n + 1, 0, 0x40000000)]      # x32 syscalls: denied too
        prog += [Filter(jeq, n - i, 0, nr) for i, nr in enumerate(denied)]
        prog += [Filter(ret, 0, 0, allow), Filter(ret, 0, 0, eperm)]
        arr = (Filter * len(prog))(*prog)
        fprog = Prog(len(prog), ctypes.cast(arr, ctypes.POINTER(Filter)))
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:
            return ""
        return platform.machine()

    try:
        isolation["landlock_abi"] = landlock(cfg["read_roots"])
    except Exception:                             # no Landlock here (old kernel, other OS): layer 3 only
        isolation["landlock_abi"] = 0
    try:
        isolation["seccomp"] = seccomp()
    except Exception:
        isolation["seccomp"] = ""
    denied = tuple(cfg["deny_roots"])
    allowed = tuple(cfg["read_roots"])
    sys.path[:] = [p for p in sys.path if p and any(p == r or p.startswith(r + os.sep) for r in allowed)]

    def real(path):
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        return os.path.realpath(os.fspath(path))

    def under(path, roots):
        return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)

    def check_write(path):
        if isinstance(path, int):
            return
        p = real(path)
        if not (under(p, (home,)) or p == "/dev/null"):
            raise PermissionError(f"sandbox: writing outside the working directory is not allowed: {path}")

    def deepest(p, roots):
        return max((len(r) for r in roots if under(p, (r,))), default=-1)

    def check_read(path):
        """The most specific root decides: a venv inside the project stays readable, its data does not."""
        if isinstance(path, int):
            return
        p = real(path)
        if under(p, (home,)):
            return
        if deepest(p, denied) > deepest(p, allowed) or \
                (p.startswith("/proc/") and not under(p, (own_proc,))):
            raise PermissionError(f"sandbox: reading {path} is not allowed")

    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    forbidden = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                 "os.forkpty", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill", "os.startfile",
                 "resource.setrlimit", "resource.prlimit", "sys.addaudithook", "os.chroot")
    path_writes = ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
                   "os.truncate", "os.symlink", "os.link", "os.utime", "os.chflags", "os.mkfifo",
                   "os.mknod", "os.setxattr", "os.removexattr", "shutil.rmtree", "os.chdir")

    def guard(event, args):
        if event == "object.__setattr__" and len(args) > 1 and args[1] in ("__code__", "__closure__"):
            raise PermissionError("sandbox: replacing a function's code is not allowed")
        if event.startswith("socket.") and event != "socket.gethostname":
            raise PermissionError("sandbox: network access is not allowed")
        if event in forbidden:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event.startswith("ctypes.") and event not in ("ctypes.addressof", "ctypes.set_errno",
                                                         "ctypes.get_errno"):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args and isinstance(args[0], str) and args[0].split(".")[0] == "mips":
            raise PermissionError("sandbox: importing the project's package is not allowed")
        if event == "open" and args:
            mode, flags = (args[1] if len(args) > 1 else None), (args[2] if len(args) > 2 else 0)
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                     (isinstance(flags, int) and flags & write_flags)
            (check_write if writes else check_read)(args[0])
        if event in path_writes and args:
            for a in args[:2] if event in ("os.rename", "os.symlink", "os.link") else args[:1]:
                if a is not None:
                    check_write(a)
        if event in ("os.listdir", "os.scandir") and args and args[0] is not None:
            check_read(args[0])

    mode, entry = cfg["mode"], cfg["entry"]
    with open("program.py", encoding="utf-8", errors="replace") as fh:
        source = fh.read()
    inputs = None
    if mode == "call":
        with open("inputs.json") as fh:
            inputs = json.load(fh)

    def plain(o):
        """Outputs as JSON values: sequences to lists, bools and numpy scalars to ints."""
        if isinstance(o, bool):
            return int(o)
        if isinstance(o, (int, float, str)) or o is None:
            return o
        if hasattr(o, "tolist"):
            return plain(o.tolist())
        if isinstance(o, dict):
            return {str(k): plain(v) for k, v in o.items()}
        try:
            return [plain(v) for v in o]
        except TypeError:
            return repr(o)

    def report(res):
        res["isolation"] = isolation
        data = json.dumps(res).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(result_fd, view):]
        os.close(result_fd)

    try:
        code = compile(source, "program.py", "exec")
    except (SyntaxError, ValueError) as e:
        report({"outcome": "syntax_error", "error": f"{type(e).__name__}: {e}"})
        return 0

    def on_cpu_limit(signum, frame):     # the soft CPU limit: say so (the hard limit kills 1 s later)
        report({"outcome": "timeout", "error": f"CPU-time limit of {cfg['cpu_seconds']}s reached"})
        os._exit(124)

    signal.signal(signal.SIGXCPU, on_cpu_limit)
    if cfg["audit_hook"]:
        sys.addaudithook(guard)
        isolation["audit_hook"] = True
    sys.argv = ["program.py"]
    ns = {"__name__": "__main__" if mode == "script" else "program", "__builtins__": builtins,
          "__file__": os.path.join(home, "program.py")}
    row = None
    exit_code = 0
    try:
        exec(code, ns)
        outputs = None
        if mode == "call":
            fn = ns.get(entry)
            if not callable(fn):
                report({"outcome": "no_entry", "error": f"the program defines no function {entry!r}"})
                return 0
            outputs = []
            for row, x in enumerate(inputs):
                outputs.append(plain(fn(x)))
        res = {"outcome": "ok", "outputs": outputs}
    except MemoryError:
        res, exit_code = {"outcome": "memory_error", "error": "MemoryError"}, 1
    except SystemExit as e:
        code_ = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if mode == "script":
            res, exit_code = {"outcome": "ok" if code_ == 0 else "runtime_error",
                              "error": "" if code_ == 0 else f"SystemExit({e.code!r})"}, code_
        else:
            res, exit_code = {"outcome": "runtime_error", "error": f"SystemExit({e.code!r})"}, 1
    except BaseException as e:
        where = f"row {row}: " if row is not None else ""
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        res, exit_code = {"outcome": "runtime_error", "error": (where + tb)[:2000]}, 1
    try:
        sys.stdout.flush()
    except Exception:
        pass
    try:
        report(res)
    except (TypeError, ValueError, OverflowError) as e:
        report({"outcome": "runtime_error", "error": f"outputs are not plain values: {e}"})
    return exit_code

import os as _os
_os._exit(_sandbox_main())
'''


@functools.lru_cache(maxsize=1)
def network_namespace_command() -> tuple[str, ...]:
    """The prefix that gives a child its own empty network namespace here, and where possible its own
    PID namespace whose processes all die with it (``()`` when none works)."""
    if not shutil.which("unshare"):
        return ()
    pid = ("-p", "-f", "--kill-child")
    for cmd in (("unshare", "-n", *pid), ("unshare", "-r", "-n", *pid), ("unshare", "-n"), ("unshare", "-r", "-n")):
        try:
            if subprocess.run([*cmd, "true"], capture_output=True, timeout=10).returncode == 0:
                return cmd
        except (OSError, subprocess.SubprocessError):
            continue
    return ()


def network_namespace_available() -> bool:
    """Whether the child can be put in its own empty network namespace (``unshare -n``)."""
    return bool(network_namespace_command())


ETC_READABLE = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "nsswitch.conf",
                "host.conf", "mime.types", "os-release")     # what the runtime and the standard library read


@functools.lru_cache(maxsize=1)
def _read_roots() -> tuple[str, ...]:
    """Where the child may read: the Python runtime, its packages and the system's libraries."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(Path(os.path.realpath(sys.executable)).parent.parent)}
    roots |= {"/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/sys/devices/system/cpu",
              "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full"}
    roots |= {f"/etc/{name}" for name in ETC_READABLE}     # not /etc itself: /etc/shadow is readable by root
    return tuple(sorted(os.path.realpath(r) for r in roots if os.path.exists(r)))


def _deny_roots() -> tuple[str, ...]:
    """Where the child may not read even inside a runtime root: the project's code, data and records."""
    from mips import artifacts

    roots = {artifacts.project_root(), artifacts.cache_dir(), artifacts.runs_dir(), Path.home()}
    roots |= {Path(p) for p in os.environ.get("MIPS_TASKS_DIR", "").split(os.pathsep) if p}
    return tuple(sorted({os.path.realpath(r) for r in roots}))


def _kill_group(pid: int) -> None:
    """Kill every process left in the child's session (it was started with ``start_new_session``)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(fh, n: int = _STDOUT_TAIL) -> str:
    """The last ``n`` characters the child wrote to a file the parent opened."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(max(0, size - 4 * n))
    return fh.read().decode("utf-8", errors="replace")[-n:]


def _execute(source: str, mode: str, entry: str, inputs: list | None, limits: Limits,
             audit_hook: bool = True) -> SandboxResult:
    """Run one sandboxed child. ``audit_hook=False`` leaves out layer 3, for tests that show the kernel
    layers hold on their own."""
    start = time.time()
    netns = network_namespace_command()
    with tempfile.TemporaryDirectory(prefix="mips-sandbox-") as work, \
            tempfile.TemporaryFile(dir=work) as out, tempfile.TemporaryFile(dir=work) as err:
        Path(work, "program.py").write_text(source, encoding="utf-8", errors="replace")
        if inputs is not None:
            Path(work, "inputs.json").write_text(json.dumps(inputs))
        cfg = {"cpu_seconds": int(limits.cpu_seconds), "memory_mb": int(limits.memory_mb),
               "file_mb": int(limits.file_mb), "mode": mode, "entry": entry, "stdout_fd": out.fileno(),
               "read_roots": list(_read_roots()), "deny_roots": list(_deny_roots()),
               "network_namespace": bool(netns), "pid_namespace": "-p" in netns, "audit_hook": audit_hook}
        cmd = [*netns, sys.executable, "-s", "-B", "-u", "-c", _DRIVER, json.dumps(cfg)]
        env = {"PATH": "/usr/bin:/bin", "HOME": work, "TMPDIR": work, "PYTHONHASHSEED": "0",
               "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err, pass_fds=(out.fileno(),), start_new_session=True)
        killed = False
        try:
            payload, _ = proc.communicate(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            killed = True
            _kill_group(proc.pid)
            payload, _ = proc.communicate()
        finally:
            _kill_group(proc.pid)
        seconds = time.time() - start
        stdout, stderr = _tail(out), _tail(err, 2000)
    meta = {"isolation": {"network_namespace": bool(netns)}}
    if killed:
        return SandboxResult(TIMEOUT, error=f"wall-clock limit of {limits.wall_seconds}s reached",
                             stdout=stdout, returncode=proc.returncode, seconds=seconds, meta=meta)
    res = None
    if payload:
        try:
            res = json.loads(payload)
        except json.JSONDecodeError:
            res = None
    reported = (OK, SYNTAX_ERROR, RUNTIME_ERROR, MEMORY_ERROR, NO_ENTRY, TIMEOUT)
    if isinstance(res, dict) and res.get("outcome") in reported:
        meta["isolation"] = res.get("isolation", meta["isolation"])
        return SandboxResult(res["outcome"], res.get("outputs"), res.get("error", ""), stdout,
                             proc.returncode, seconds, meta)
    return _without_result(proc.returncode, stdout, stderr, seconds, limits, meta)


def _without_result(returncode: int, stdout: str, stderr: str, seconds: float, limits: Limits,
                    meta: dict) -> SandboxResult:
    """Classify a child that ended without reporting: killed by a limit, crashed, or ``os._exit``."""
    # Under ``unshare --fork`` a child killed by a signal shows as unshare's own exit status 1.
    by_signal = returncode < 0 or (returncode == 1 and stderr.lstrip().startswith("unshare:"))
    if returncode == -signal.SIGXCPU or (by_signal and seconds >= limits.cpu_seconds):
        return SandboxResult(TIMEOUT, error=f"CPU-time limit of {limits.cpu_seconds}s reached", stdout=stdout,
                             returncode=returncode, seconds=seconds, meta=meta)
    if returncode == -signal.SIGKILL or "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return SandboxResult(MEMORY_ERROR, error="memory limit reached", stdout=stdout, returncode=returncode,
                             seconds=seconds, meta=meta)
    if returncode == 0:
        return SandboxResult(OK, stdout=stdout, returncode=0, seconds=seconds, meta=meta)
    why = f"killed by signal {signal.Signals(-returncode).name}" if returncode < 0 else f"exited {returncode}"
    return SandboxResult(RUNTIME_ERROR, error=f"process {why} without a result: {stderr.strip()[-500:]}",
                         stdout=stdout, returncode=returncode, seconds=seconds, meta=meta)


def run_program(source: str, inputs: list[list], entry: str = "f",
                limits: Limits | None = None) -> SandboxResult:
    """Define ``source``, then call ``entry(x)`` on every input sequence in one process.

    Inputs travel as JSON, so tuples arrive as lists; outputs come back as lists of plain values
    (sequences become lists, bools and numpy scalars become ints). An exception on any row fails the
    batch as ``runtime_error`` naming the row.
    """
    inputs = list(inputs)
    res = _execute(source, "call", entry, inputs, limits or Limits())
    if res.outcome == OK and (not isinstance(res.outputs, list) or len(res.outputs) != len(inputs)):
        got = "no result" if not isinstance(res.outputs, list) else f"{len(res.outputs)} results"
        res.outcome, res.outputs = RUNTIME_ERROR, None
        res.error = f"the program returned {got} for {len(inputs)} inputs (did it exit or forge its report?)"
    return res


def run_script(source: str, limits: Limits | None = None) -> SandboxResult:
    """Run ``source`` as ``__main__``; ``stdout`` is what it printed, ``returncode`` its exit status."""
    return _execute(source, "script", "", None, limits or Limits())


def isolation_report() -> dict:
    """Which isolation layers a sandboxed child gets on this machine (run a trivial program to see)."""
    res = run_script("pass", Limits(cpu_seconds=10, wall_seconds=30))
    return dict(res.meta.get("isolation", {}))
