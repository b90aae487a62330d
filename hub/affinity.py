"""`cpu_affinity`: each hub process on a CPU of its own (Linux).

One hub process runs Python on one CPU at a time (the GIL), but its threads are spread by the system over every
CPU: a sync handler handed to a worker thread wakes up on another CPU, and every hand-off between the event loop
and the worker crosses CPUs. Pinned to one CPU, the process keeps its hand-offs there (measured with Redis and
batches of 100: a fifth more entries a second). The price: the process never uses a second CPU, not even for
handlers that release the GIL (hashing, compression, numpy), and the system cannot move it off a CPU that gets
busy. So it is off by default; with several pollers each process gets its own CPU.

Slots: the hub's own process is slot 0, its pollers 1, 2, ... in the order they are listed; slot k runs on the
k-th CPU of the setting (modulo their number): the CPUs the hub may use when the setting is `true`, else the
list given. What the hub starts for its functions (the execution environments of the default runtime) is put
back on every CPU the hub could use; what an in-process handler starts itself inherits the handler's CPU.
"""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger("hub.affinity")

Setting = bool | list[int]

_original: set[int] | None = None
"""The CPUs this process could use before it pinned itself."""
ORIGINAL_ENV = "HUB_UNPINNED_CPUS"
"""Where a pinned hub leaves those CPUs for its pollers (which it pins itself), so that they too give every one
of them back to the workers they start."""


def supported() -> bool:
    """True where a process can be pinned to CPUs (Linux)."""
    return hasattr(os, "sched_setaffinity")


def cpus(setting: Setting) -> list[int]:
    """The CPUs the slots go round, in order; [] when off (or where the system has no affinity)."""
    if setting is False or not supported():
        return []
    if setting is True:
        return sorted(_original if _original is not None else os.sched_getaffinity(0))
    return list(setting)


def cpu_for(setting: Setting, slot: int) -> int | None:
    """The CPU of process `slot` (0: the hub) under `setting`, taken in turn from the CPUs it names; None when off."""
    chosen = cpus(setting)
    return chosen[slot % len(chosen)] if chosen else None


def pin_self(setting: Setting) -> int | None:
    """Pin this process (slot 0) to its CPU; returns it, or None when the setting is off. Call it before any
    thread starts: threads take the affinity of the thread that starts them."""
    global _original
    if setting is not False and not supported():
        log.warning("cpu_affinity is set, but this system cannot pin a process to a CPU: ignored")
        return None
    cpu = cpu_for(setting, 0)
    if cpu is None:
        return None
    if _original is None:
        _original = os.sched_getaffinity(0)
        os.environ[ORIGINAL_ENV] = ",".join(map(str, sorted(_original)))
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        log.warning("cpu_affinity: cannot run on CPU %d (%s): not pinned", cpu, exc)
        return None
    return cpu


def pin_child(pid: int, setting: Setting, slot: int) -> int | None:
    """Pin a poller process, just started, to the CPU of its slot; returns it, or None when the setting is off."""
    cpu = cpu_for(setting, slot)
    if cpu is not None:
        try:
            os.sched_setaffinity(pid, {cpu})
        except ProcessLookupError:  # it already exited: its supervisor will say so
            return None
        except OSError as exc:
            log.warning("cpu_affinity: cannot run poller pid %d on CPU %d (%s): not pinned", pid, cpu, exc)
            return None
    return cpu


def release_child(pid: int) -> None:
    """Give a process this one started (pinned by inheritance) every CPU this process could use before it pinned
    itself (or its hub, for a poller). Nothing when cpu_affinity is off."""
    original = _original
    if original is None and (inherited := os.environ.get(ORIGINAL_ENV)):
        original = {int(cpu) for cpu in inherited.split(",")}
    if original is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.sched_setaffinity(pid, original)


def current_cpu() -> int:
    """The CPU the calling thread runs on now, or -1 where the system does not say (Linux: /proc)."""
    try:
        with open("/proc/thread-self/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return -1


class Nearby:
    """Keeps the worker threads of sync handlers on the CPU where the event loop's thread runs, while their calls
    are short (Linux; in-process runtime).

    A call handed to a thread asleep on another CPU costs a cross-CPU wake-up each way, about a tenth of a
    millisecond on a busy machine: for a handler that returns in microseconds, most of what the invocation costs
    (Redis with batches of 100: a fifth of the throughput). On the loop's CPU the hand-off stays in one cache and
    one run queue. The loop's thread is not pinned (the system still moves it where it likes); the workers follow
    it, looking where it is at most every FOLLOW_EVERY seconds. Once calls take longer than SHORT_CALL on average,
    the hand-off no longer matters and a handler that releases the GIL (compression, hashing, numpy) may want
    other CPUs: the workers get back every CPU the process may use.
    """

    SHORT_CALL = 0.002
    FOLLOW_EVERY = 0.05

    def __init__(self) -> None:
        self.enabled = supported() and current_cpu() >= 0
        self.everywhere: set[int] = os.sched_getaffinity(0) if self.enabled else set()
        self.home = -1
        """The loop thread's CPU, as last looked up (-1: not yet, or not followed)."""
        self.mean_call = 0.0
        """Seconds a call takes, averaged over the recent ones (exponentially)."""
        self._looked = -1.0

    def look(self, now: float) -> None:
        """From the loop's thread: note its CPU, unless that was done less than FOLLOW_EVERY ago."""
        if self.enabled and now - self._looked >= self.FOLLOW_EVERY:
            self._looked = now
            self.home = current_cpu()

    def wanted(self) -> int:
        """From a worker thread, before a call: the CPU to run on, or -1 for every CPU."""
        return self.home if self.mean_call < self.SHORT_CALL else -1

    def move(self, cpu: int) -> None:
        """From a worker thread: run this thread on `cpu` (-1: on every CPU the process may use)."""
        with contextlib.suppress(OSError):  # a CPU taken away meanwhile: stay where the system put us
            os.sched_setaffinity(0, {cpu} if cpu >= 0 else self.everywhere)

    def took(self, seconds: float) -> None:
        """Record how long a call took (a moving mean)."""
        self.mean_call += (seconds - self.mean_call) * 0.25
