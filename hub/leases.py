"""Leases: how several hub processes share the work that no broker coordinates for them.

Kafka, SQS, RabbitMQ, Redis streams and NATS JetStream share a mapping's work between processes themselves.
Kinesis and DynamoDB shards, schedules, watched folders and polled buckets do not: here one hub holds a **lease** on
each unit of such work (a shard, a schedule, a folder), kept in the shared checkpoint store (PostgreSQL or Redis).

- Every hub is a **member**: it says so in the store every tick (`failover_time / 10`), naming the groups (the
  mappings) whose leases it may hold. A member that stops saying so is gone after `ttl`.
- A lease has an owner, an expiry **in the store's clock** and a fencing token that grows at every new owner.
  Every checkpoint written under a lease carries its `Fence`; the store refuses it once the lease moved on, so an
  owner paused past its lease (SIGSTOP, a long GC, a lost network) can move no checkpoint when it wakes.
- The owner also keeps a local bound: `deadline`, on this process's monotonic clock, counted from *before* the
  request that last renewed the lease, so it always falls before the store's expiry. A lane checks it before it
  hands records on: a woken owner fires no schedule and reads no shard once that bound has passed.
- `assign` spreads the leases evenly over the live members that serve their group, keeping each lease where it
  is while that stays even: when hubs join or leave, only the leases needed move. A lease this hub holds but
  that is now assigned elsewhere is *revoked*: its source stops reading, lets what is in flight settle, and gives
  it back (`give_back`); the new owner takes it on its next tick and starts from the checkpoint.
- A dead hub's leases expire after `ttl` (0.7 x failover_time) and its assignees take them over at their next
  tick: within `failover_time` of its last renewal.

With a store of one process (sqlite, memory), `LocalLeases` grants every lease at once and fences nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hub.assignment import assign
from hub.health import Health
from hub.logs import fields
from hub.store import CheckpointStore, Fence, LeaseRow, LeaseStore, MemberRow

log = logging.getLogger("hub.leases")

TTL_SHARE = 0.7
"""A lease lasts this share of failover_time after each renewal."""
TICK_SHARE = 0.1
"""A member renews its leases and looks at the others this often (share of failover_time)."""
LOCAL_SHARE = 0.9
"""The owner's own bound: this share of ttl after the renewal request was sent (clock rates differ a little)."""


@dataclass(eq=False)
class Lease:
    """A lease this process holds. `fence` goes with every checkpoint written under it (None: a local grant)."""

    name: str
    group: str
    fence: Fence | None
    deadline: float = float("inf")
    """Monotonic time after which this process must not act under the lease unless renewed."""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the lease is lost or revoked: its source stops reading."""
    lost: bool = False
    """True once it belongs to this process no more (expired, taken over): nothing in flight can settle."""
    clock: Callable[[], float] = time.monotonic

    @property
    def revoked(self) -> bool:
        """Still held, but assigned to another member: give it back once what is in flight has settled."""
        return self.ended.is_set() and not self.lost

    def valid(self) -> bool:
        """True while this process may act under the lease (read, fire, checkpoint)."""
        return not self.lost and self.clock() < self.deadline


class Leases(ABC):
    """The interface sources see (`SourceContext.leases`); `LocalLeases` and `Coordinator` implement it."""

    @abstractmethod
    def want(self, group: str, names: Iterable[str]) -> None:
        """Declare units of work of `group` (a mapping) that some hub must hold: registered in the store."""

    @abstractmethod
    def held(self, group: str) -> dict[str, Lease]:
        """The leases of `group` this process holds now (revoked ones included, lost ones not)."""

    @abstractmethod
    def serve(self, groups: Iterable[str]) -> None:
        """Take part in these groups' leases too (a mapping added at run time)."""

    @abstractmethod
    def changed(self, group: str) -> asyncio.Event:
        """Set whenever a lease of `group` is taken, lost or revoked; the waiter clears it."""

    @abstractmethod
    async def wait_for(self, group: str, name: str) -> Lease:
        """Wait until this process holds the lease `name` (declared with `want`), and return it."""

    @abstractmethod
    async def give_back(self, lease: Lease) -> None:
        """Hand a lease back (its source has stopped and settled what it read under it)."""

    @abstractmethod
    async def finish(self, lease: Lease) -> None:
        """The lease's work is over for good (a finished shard): forget it."""

    @abstractmethod
    def status(self) -> dict[str, Any]:
        """What `/status` shows: this member, the live members, and which member holds which lease."""


class LocalLeases(Leases):
    """One process has the whole store: every lease is granted at once, never revoked, never fenced."""

    def __init__(self) -> None:
        self._held: dict[str, dict[str, Lease]] = {}
        self._changed: dict[str, asyncio.Event] = {}

    def want(self, group: str, names: Iterable[str]) -> None:
        """Grant every new name of `group` at once."""
        held = self._held.setdefault(group, {})
        new = [name for name in names if name not in held]
        for name in new:
            held[name] = Lease(name, group, None)
        if new:
            self.changed(group).set()

    def held(self, group: str) -> dict[str, Lease]:
        """Every lease of `group` wanted so far (all are granted)."""
        return dict(self._held.get(group, {}))

    def serve(self, groups: Iterable[str]) -> None:
        """Nothing to do: every lease is granted at once."""
        pass  # every lease is granted at once

    def changed(self, group: str) -> asyncio.Event:
        """Set when a lease of `group` is granted."""
        return self._changed.setdefault(group, asyncio.Event())

    async def wait_for(self, group: str, name: str) -> Lease:
        """The lease `name`, granted at once."""
        self.want(group, [name])
        return self._held[group][name]

    async def give_back(self, lease: Lease) -> None:
        """Forget the lease; a later wait_for grants it again."""
        self._held.get(lease.group, {}).pop(lease.name, None)

    async def finish(self, lease: Lease) -> None:
        """Forget the lease (as give_back)."""
        await self.give_back(lease)

    def status(self) -> dict[str, Any]:
        """`{"mode": "local"}`: no cluster."""
        return {"mode": "local"}


def member_id() -> str:
    """`host:pid:random`: unique for each run of each process, readable in /status."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class Coordinator(Leases):
    """This process as a member of the cluster: it holds, renews, takes and gives back leases in a shared store.

    groups         the mappings whose leases this process may hold
    failover_time  a dead member's leases are taken over within this time (ttl = 0.7 x, a tick every 0.1 x)
    """

    def __init__(
        self,
        store: LeaseStore,
        groups: Iterable[str],
        failover_time: float = 10.0,
        *,
        member: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        health: Health | None = None,
    ) -> None:
        self.store = store
        self.groups = tuple(sorted(set(groups)))
        self.member = member or member_id()
        self.ttl = failover_time * TTL_SHARE
        self.tick = failover_time * TICK_SHARE
        self.clock = clock
        self.health = health or Health("leases")
        self.members: list[MemberRow] = []
        self.view: list[LeaseRow] = []
        self.assignment: dict[str, str] = {}
        self._held: dict[str, Lease] = {}
        self._wanted: dict[str, str] = {}
        self._unregistered: dict[str, str] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0

    # ---- what sources see -------------------------------------------------------------------------------------

    def want(self, group: str, names: Iterable[str]) -> None:
        """Declare names of `group`; they are registered in the store at the next tick."""
        new = {name: group for name in names if name not in self._wanted}
        if new:
            self._wanted.update(new)
            self._unregistered.update(new)
            self._wake.set()

    def held(self, group: str) -> dict[str, Lease]:
        """The leases of `group` this member holds now (revoked ones included, lost ones not)."""
        return {name: lease for name, lease in self._held.items() if lease.group == group}

    def serve(self, groups: Iterable[str]) -> None:
        """Take part in these groups' leases too, from the next tick."""
        added = set(groups) - set(self.groups)
        if added:
            self.groups = tuple(sorted({*self.groups, *added}))
            self._wake.set()

    def changed(self, group: str) -> asyncio.Event:
        """Set whenever a lease of `group` is taken, lost or revoked; the waiter clears it."""
        return self._changed.setdefault(group, asyncio.Event())

    async def wait_for(self, group: str, name: str) -> Lease:
        """Wait until this member holds `name` (a lease that ended does not count), and return it."""
        self.want(group, [name])
        event = self.changed(group)
        while (lease := self._held.get(name)) is None or lease.ended.is_set():
            event.clear()
            await event.wait()
        return lease

    async def give_back(self, lease: Lease) -> None:
        """Release the lease in the store (if its fence still holds) and end it here, so that its assignee takes it at
        its next tick. A store that does not answer leaves it to expire."""
        if self._held.get(lease.name) is lease:
            del self._held[lease.name]
            lease.lost = True
            lease.ended.set()
            if lease.fence is not None:
                try:
                    await self.store.release(lease.fence)
                except Exception as exc:  # it expires on its own
                    log.warning("giving back lease %s failed: %s", lease.name, exc, extra=fields(lease=lease.name))
            log.info("lease given back", extra=fields(lease=lease.name, member=self.member))
            self._wake.set()

    async def finish(self, lease: Lease) -> None:
        """Stop wanting the lease and delete its row from the store: its work is over for good (a finished shard)."""
        self._wanted.pop(lease.name, None)
        if self._held.get(lease.name) is lease:
            del self._held[lease.name]
            lease.lost = True
            lease.ended.set()
            if lease.fence is not None:
                try:
                    await self.store.forget(lease.fence)
                except Exception as exc:
                    log.warning("forgetting lease %s failed: %s", lease.name, exc, extra=fields(lease=lease.name))

    def status(self) -> dict[str, Any]:
        """What /status shows: this member, the live members and each wanted lease's owner (None: free)."""
        owners = {row.name: row.owner if row.held else None for row in self.view}
        return {
            "mode": "shared",
            "member": self.member,
            "members": [{"member": m.member, **m.info} for m in self.members],
            "leases": {name: owners.get(name) for name in sorted(self._wanted)},
            "held": sorted(self._held),
        }

    # ---- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the cluster, then tick in the background. A store that does not answer is not fatal: the hub runs
        (its leased work waiting), reports the cluster degraded (/healthz, /status) and keeps trying, as it does
        for a broker.

        The first tick only says this member is there: hubs started together see each other before any takes a
        lease, rather than the first taking everything and handing most of it over again a tick later."""
        try:
            await asyncio.wait_for(self._tick(take=False), max(self.tick, 5.0))
        except Exception as exc:
            self._failed(exc)
        self._task = asyncio.create_task(self._run(), name="leases")

    async def stop(self) -> None:
        """Give back every lease and leave the cluster at once, so that the others take over without waiting for
        expiries. Call it after the sources have stopped."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        for lease in list(self._held.values()):
            await self.give_back(lease)
        try:
            await self.store.leave(self.member)
        except Exception as exc:
            log.warning("leaving the cluster failed: %s", exc)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                await asyncio.wait_for(self._tick(), max(self.tick, 5.0))
            except Exception as exc:
                self._failed(exc)
                self._expire_overdue()
            else:
                if self._failures:
                    self.health.ok("lease store")
                self._failures = 0

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.health.fail("lease store", f"the checkpoint store does not answer the cluster's calls: {what}; retrying")

    def _expire_overdue(self) -> None:
        """The store is out of reach: leases whose local bound passed are lost (another member may have them)."""
        now = self.clock()
        for lease in list(self._held.values()):
            if now >= lease.deadline:
                self._lose(lease, "its renewal did not reach the store in time")

    def _lose(self, lease: Lease, why: str) -> None:
        if self._held.get(lease.name) is lease:
            del self._held[lease.name]
        lease.lost = True
        lease.ended.set()
        self.changed(lease.group).set()
        log.warning("lease lost: %s", why, extra=fields(lease=lease.name, member=self.member))

    async def _tick(self, *, take: bool = True) -> None:
        """Say we are alive, renew what we hold, look at every lease, take what is ours, revoke what is not."""
        store = self.store
        sent = self.clock()
        info = {"host": socket.gethostname(), "pid": os.getpid()}
        self.members = await store.heartbeat(self.member, self.groups, self.ttl, info)
        if self._unregistered:
            batch = dict(self._unregistered)
            await store.register(batch)
            for name in batch:
                self._unregistered.pop(name, None)
        if self._held:
            held = {name: lease.fence.token for name, lease in self._held.items() if lease.fence is not None}
            kept = await store.renew(self.member, held, self.ttl)
            for name, lease in list(self._held.items()):
                if name in kept and sent < lease.deadline:
                    lease.deadline = sent + self.ttl * LOCAL_SHARE
                else:
                    self._lose(lease, "another member took it over, or it expired")
        self._expire_overdue()
        self.view = await store.leases()
        self.assignment = assign(self.view, self.members)
        rows = {row.name: row for row in self.view}
        for name, owner in self.assignment.items():
            row = rows[name]
            if take and owner == self.member and name not in self._held and name in self._wanted and not row.held:
                before = self.clock()
                token = await store.acquire(name, self.member, self.ttl)
                if token is not None:
                    lease = Lease(name, row.group, Fence(name, self.member, token), before + self.ttl * LOCAL_SHARE)
                    lease.clock = self.clock
                    self._held[name] = lease
                    self.changed(row.group).set()
                    log.info("lease taken", extra=fields(lease=name, member=self.member, token=token))
        for name, lease in self._held.items():
            if self.assignment.get(name, self.member) != self.member and not lease.ended.is_set():
                lease.ended.set()  # revoked: the source gives it back once drained
                self.changed(lease.group).set()
                log.info(
                    "lease revoked: handing it over once in-flight records settle",
                    extra=fields(lease=name, member=self.member, to=self.assignment[name]),
                )


def leases_for(
    store: CheckpointStore, groups: Iterable[str], failover_time: float, health: Health | None = None
) -> Leases:
    """The coordination a store allows: a Coordinator over a shared store, else LocalLeases."""
    if isinstance(store, LeaseStore) and store.shared:
        return Coordinator(store, groups, failover_time, health=health)
    return LocalLeases()
