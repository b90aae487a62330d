"""Leases: the assignment (a pure function of the view) and the coordinator over an in-memory shared store whose
clock the tests move. The same coordinator against PostgreSQL and Redis, with real hub processes, is in
tests/integration/test_cluster.py."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from hub.checkpoints import Fence, LeaseLost, LeaseRow, MemberRow, MemoryStore
from hub.exclusive import FencedStore, LeasedLane
from hub.leases import Coordinator, Lease, LocalLeases, assign
from hub.records import Outcome, Record
from hub.source import LaneEnded


def rows(names: list[str], group: str = "g", owners: dict[str, str] | None = None) -> list[LeaseRow]:
    owners = owners or {}
    return [LeaseRow(n, group, owners.get(n), 1, 5.0 if n in owners else -1.0) for n in names]


def members(*ids: str, groups: tuple[str, ...] = ("g",)) -> list[MemberRow]:
    return [MemberRow(m, groups, 5.0) for m in ids]


def test_assign_spreads_evenly_and_is_deterministic() -> None:
    leases = rows([f"shard-{i}" for i in range(10)])
    out = assign(leases, members("a", "b", "c"))
    assert sorted(Counter(out.values()).values()) == [3, 3, 4]
    assert out == assign(list(reversed(leases)), list(reversed(members("a", "b", "c"))))


def test_assign_keeps_leases_where_they_are_when_that_stays_even() -> None:
    names = [f"s{i}" for i in range(6)]
    before = assign(rows(names), members("a", "b"))
    # c joins: each of a and b gives up one lease, and nothing moves between a and b
    after = assign(rows(names, owners=before), members("a", "b", "c"))
    moved = {n for n in names if before[n] != after[n]}
    assert len(moved) == 2 and all(after[n] == "c" for n in moved)
    assert sorted(Counter(after.values()).values()) == [2, 2, 2]
    # b leaves: only b's leases move
    gone = assign(rows(names, owners=after), members("a", "c"))
    assert {n for n in names if gone[n] != after[n]} == {n for n in names if after[n] == "b"}


def test_assign_gives_a_mapping_only_to_members_that_serve_it() -> None:
    leases = rows(["k/0", "k/1", "k/2", "k/3"], group="kinesis") + rows(["sched"], group="schedule")
    view = [
        MemberRow("hub-1", ("kinesis", "schedule"), 5.0),
        MemberRow("poller-2", ("kinesis",), 5.0),
    ]
    out = assign(leases, view)
    assert out["sched"] == "hub-1"
    assert Counter(out[n] for n in ["k/0", "k/1", "k/2", "k/3"]) == {"hub-1": 2, "poller-2": 2}
    assert "orphan" not in assign(rows(["orphan"], group="nobody"), view)


def test_assign_spreads_single_lease_groups_over_members() -> None:
    leases = [LeaseRow(f"schedule-{i:02}", f"schedule-{i:02}", None, 0, -1.0) for i in range(20)]
    groups = tuple(f"schedule-{i:02}" for i in range(20))
    out = assign(leases, [MemberRow(m, groups, 5.0) for m in ("a", "b", "c")])
    assert sorted(Counter(out.values()).values()) == [6, 7, 7]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def tick(*coordinators: Coordinator) -> None:
    """One round of every coordinator, each giving back what it was told to (as its sources do once drained)."""
    for coordinator in coordinators:
        await coordinator._tick()
    for coordinator in coordinators:
        for lease in list(coordinator._held.values()):
            if lease.revoked:
                await coordinator.give_back(lease)


async def join(*coordinators: Coordinator) -> None:
    for coordinator in coordinators:
        await coordinator._tick(take=False)


async def test_coordinators_share_leases_take_over_from_the_dead_and_fence_them() -> None:
    clock = Clock()
    store = MemoryStore(shared=True, clock=clock)
    hubs = [Coordinator(store, ["m"], failover_time=10.0, member=f"hub-{i}", clock=clock) for i in range(3)]
    names = [f"m/shard-{i}" for i in range(6)]
    for hub in hubs:
        hub.want("m", names)
    await join(*hubs)  # hubs started together see each other before any takes a lease
    await tick(*hubs)
    held = {hub.member: set(hub.held("m")) for hub in hubs}
    assert sorted(len(h) for h in held.values()) == [2, 2, 2]
    assert set().union(*held.values()) == set(names)

    # hub-0 dies: its leases expire in the store's clock (ttl 7 s), then the others take them over
    dead = hubs[0]
    lease = next(iter(dead.held("m").values()))
    assert lease.fence is not None
    for _ in range(9):  # the living tick every second
        clock.now += 1.0
        await tick(*hubs[1:])
    taken = set(hubs[1].held("m")) | set(hubs[2].held("m"))
    assert taken == set(names)
    assert sorted(len(hub.held("m")) for hub in hubs[1:]) == [3, 3]
    # the dead owner's fence is refused: the token moved on
    with pytest.raises(LeaseLost):
        await store.put("m", "shard", "42", lease.fence)
    assert await store.get("m", "shard") is None
    # and its own bound tells it so before it asks the store
    assert not lease.valid()

    # it comes back: it learns it lost everything, and rebalancing hands it two leases, one from each
    await dead._tick()
    assert dead.held("m") == {} and lease.lost and lease.ended.is_set()
    before = {hub.member: set(hub.held("m")) for hub in hubs[1:]}
    await tick(*hubs)
    await tick(*hubs)
    assert sorted(len(hub.held("m")) for hub in hubs) == [2, 2, 2]
    assert all(set(hub.held("m")) <= before[hub.member] for hub in hubs[1:])


async def test_a_paused_owner_checkpoints_nothing_after_its_lease_moved() -> None:
    clock = Clock()
    store = MemoryStore(shared=True, clock=clock)
    a = Coordinator(store, ["m"], member="a", clock=clock)
    b = Coordinator(store, ["m"], member="b", clock=clock)
    a.want("m", ["m/source"])
    await join(a)
    await tick(a)
    lease = a.held("m")["m/source"]
    fenced = FencedStore(store)
    fenced.fence = lease.fence
    await fenced.put("m/schedule", "last", "1")
    b.want("m", ["m/source"])
    for _ in range(9):  # a is paused (SIGSTOP) past its lease; b ticks every second
        clock.now += 1.0
        await tick(b)
    assert "m/source" in b.held("m")
    with pytest.raises(LeaseLost):
        await fenced.put("m/schedule", "last", "2")  # a wakes and tries to move the checkpoint
    assert await store.get("m/schedule", "last") == "1"


async def test_a_leased_lane_hands_on_nothing_once_its_lease_ended() -> None:
    class OneLane:
        """Hands out the same record at every read (a real lane never does): the test reads past the lease."""

        key, ordered = "lane", False

        def __init__(self) -> None:
            self.settled: list[Outcome] = []

        async def read(self, limit: int, timeout: float | None) -> list[Record]:
            return [Record("lane", 1, {"n": 1})]

        async def settle(self, outcome: Outcome) -> None:
            self.settled.append(outcome)

    clock = Clock()
    lease = Lease("x", "g", Fence("x", "a", 1), deadline=clock.now + 5.0, clock=clock)
    inner = OneLane()
    lane = LeasedLane(inner, lease)
    records = await lane.read(10, 0.1)
    assert len(records) == 1 and not lane.idle.is_set()
    await lane.settle(Outcome(succeeded=tuple(records)))
    assert lane.idle.is_set()
    clock.now += 6.0  # past the local bound: the lease may have moved
    with pytest.raises(LaneEnded):
        await lane.read(10, 0.1)


async def test_a_leased_lane_read_ends_when_its_lease_is_revoked() -> None:
    class Waits:
        """A read that waits an hour whatever happens (a real lane ends when its source closes)."""

        key, ordered = "lane", False

        async def read(self, limit: int, timeout: float | None) -> list[Record]:
            await asyncio.sleep(3600)  # a schedule waiting for its next fire
            return []

        async def settle(self, outcome: Outcome) -> None:
            pass

    lease = Lease("x", "g", Fence("x", "a", 1), deadline=float("inf"))
    lane = LeasedLane(Waits(), lease)
    reading = asyncio.ensure_future(lane.read(1, None))
    await asyncio.sleep(0)
    lease.ended.set()
    with pytest.raises(LaneEnded):
        await asyncio.wait_for(reading, 5.0)


async def test_local_leases_grant_everything_at_once() -> None:
    leases = LocalLeases()
    lease = await leases.wait_for("g", "g/source")
    assert lease.fence is None and lease.valid()
    leases.want("g", ["g/a", "g/b"])
    assert set(leases.held("g")) == {"g/source", "g/a", "g/b"}
