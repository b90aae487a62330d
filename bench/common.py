"""Helpers shared by the benchmarks in this folder (not a benchmark itself).

The benchmarks run as scripts (`python bench/x.py`), so this folder is first on sys.path and they `import common`.

- statistics: `percentile`, `summary_ms`, `ratio`;
- progress lines on stderr: `progress`;
- processes: `spawn` / `Child` (output to a log file, SIGTERM if the benchmark dies, SIGTERM then kill to stop),
  `stop_process`, `child_env`, `exit_on_sigterm`;
- waiting: `free_port`, `wait_until`, `wait_port`;
- files: `work_dir` (the temporary folder), `read_jsonl` (the recorder's JSON lines), `log_problems`;
- moto: `start_moto` and the test credentials of the AWS benchmarks.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
STOP_TIMEOUT = 20.0
READY_TIMEOUT = 30.0

AWS_REGION = "us-east-1"
AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": AWS_REGION}
"""The environment of a process that talks to moto."""
AWS_TEST_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
"""boto3 / aioboto3 client keyword arguments."""
AWS_TEST_CONNECTION = {"access_key_id": "testing", "secret_access_key": "testing"}
"""The keys of a hub mapping's `connection`."""


def progress(message: str) -> None:
    """A progress line on stderr, prefixed with the benchmark's name (the script's, e.g. `files_bench`)."""
    print(f"[{Path(sys.argv[0]).stem} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- statistics ------------------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summary_ms(
    seconds: Iterable[float], quantiles: Iterable[int] = (50, 95, 99), *, digits: int = 3, none_if_empty: bool = False
) -> dict[str, Any]:
    """`n`, `min_ms`, `p<q>_ms` for each quantile, `max_ms`, `mean_ms` of durations given in seconds.

    Without values: `{"n": 0}`, plus `p<q>_ms` and `max_ms` set to None with `none_if_empty`.
    """
    quantiles = tuple(quantiles)
    values = sorted(s * 1000.0 for s in seconds)
    if not values:
        empty: dict[str, Any] = {"n": 0}
        if none_if_empty:
            empty.update({f"p{q}_ms": None for q in quantiles})
            empty["max_ms"] = None
        return empty
    return {
        "n": len(values),
        "min_ms": round(values[0], digits),
        **{f"p{q}_ms": round(percentile(values, q), digits) for q in quantiles},
        "max_ms": round(values[-1], digits),
        "mean_ms": round(sum(values) / len(values), digits),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b rounded to 2 digits; None when either is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


# ---- processes -------------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if this benchmark dies, so nothing is ever left running."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment with the repository first on PYTHONPATH, unbuffered output, and `extra`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def spawn(
    argv: list[str], cwd: Path | None, env: dict[str, str] | None, log_path: Path | None
) -> subprocess.Popen[bytes]:
    """Start a subprocess with stdout+stderr in `log_path` (discarded when None) and SIGTERM if we die."""
    with open(log_path, "ab") if log_path is not None else contextlib.nullcontext(subprocess.DEVNULL) as log:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C on the terminal reaches only us; we stop the child ourselves
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )


def stop_process(proc: subprocess.Popen[bytes], name: str, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM, then SIGKILL if it has not exited within `timeout`; True if it had to be killed.

    The exit code is then `proc.returncode`.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        progress(f"{name} did not stop within {timeout}s after SIGTERM; killing it")
        proc.kill()
        proc.wait(10)
        return True
    return False


class Child:
    """A subprocess whose stdout+stderr go to a log file; stopped with SIGTERM, killed after a timeout."""

    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str] | None, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.proc = spawn(argv, cwd, env, log_path)
        self.exit_code: int | None = None
        self.killed = False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, text: str, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the log holds `text`; RuntimeError (with the log's end) if it exits or times out first."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc.returncode}) before logging {text!r}:\n{self.log()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not log {text!r} within {timeout}s:\n{self.log()[-3000:]}")
            time.sleep(0.02)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        self.killed = stop_process(self.proc, self.name, timeout) or self.killed
        self.exit_code = self.proc.returncode
        return self.exit_code


def run_raw_consumer(name: str, argv: list[str], work: Path, out: Path, timeout: float) -> tuple[float, int]:
    """Run a raw consumer (this benchmark's own file with `--raw-consumer ...`, writing `{"seconds": ...}` to `out`)
    to its end: (the seconds it timed itself, its exit code). RuntimeError, with its log's end, if it wrote nothing."""
    child = Child(name, argv, work, None, work / f"{out.stem}.log")
    try:
        child.proc.wait(timeout)
        if not out.exists():
            raise RuntimeError(f"the {name} consumer did not finish:\n{child.log()[-3000:]}")
        seconds = float(json.loads(out.read_text())["seconds"])
    finally:
        exit_code = child.stop()
    return seconds, exit_code


def _terminate(signum: int, _frame: Any) -> None:
    """SIGTERM: unwind like Ctrl-C, so the children are stopped and the temporary folder removed."""
    raise SystemExit(128 + signum)


def exit_on_sigterm() -> None:
    """Make SIGTERM unwind this process (finally blocks run) instead of killing it outright."""
    signal.signal(signal.SIGTERM, _terminate)


# ---- waiting ---------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `condition()` until it is true; RuntimeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    """Wait until 127.0.0.1:`port` accepts connections; RuntimeError if `proc` exits or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.01)


# ---- files -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def work_dir(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A fresh temporary folder, removed at the end (kept, and its path printed, with `keep`)."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    progress(f"working in {base}")
    try:
        yield base
    finally:
        if keep:
            progress(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def read_jsonl(path: Path) -> list[Any]:
    """The JSON lines of a file (functions.recorder's output); lines that do not parse (yet) are skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def log_problems(text: str, ignore: Iterable[str] = ()) -> list[str]:
    """The distinct WARNING / ERROR / Traceback lines of a log (but those holding an `ignore` text), counted."""
    ignore = tuple(ignore)
    lines = [
        line
        for line in text.splitlines()
        if (" WARNING " in line or " ERROR " in line or "Traceback" in line) and not any(i in line for i in ignore)
    ]
    distinct: dict[str, int] = {}
    for line in lines:
        key = line.split(": ", 1)[-1][:200]
        distinct[key] = distinct.get(key, 0) + 1
    return [f"{n}x {msg}" for msg, n in list(distinct.items())[:10]]


# ---- moto ------------------------------------------------------------------------------------------------------


def moto_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1):
            return True
    except OSError:
        return False


def start_moto(work: Path, env: dict[str, str]) -> tuple[Child, str]:
    """A moto_server on a free loopback port (log: work/moto.log), once it answers; returns it and its URL."""
    port = free_port()
    server = Path(PYTHON).with_name("moto_server")
    argv = [str(server)] if server.exists() else [PYTHON, "-m", "moto.server"]
    child = Child("moto_server", [*argv, "-H", "127.0.0.1", "-p", str(port)], work, env, work / "moto.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: child.proc.poll() is not None or moto_answers(url), READY_TIMEOUT, "moto_server")
        if child.proc.poll() is not None:
            raise RuntimeError(f"moto_server exited ({child.proc.returncode}):\n{child.log()[-3000:]}")
    except BaseException:
        child.stop()
        raise
    return child, url


def tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time so far of a process and its live descendants (Linux /proc), None elsewhere.

    A hub with provisioned pollers runs one process per poller: its CPU is that of the whole tree."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    if pid not in cpu:
        return None
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(cpu[p] for p in tree)
