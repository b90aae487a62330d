"""The checkpoint store contract: what every store (hub/checkpoints.py, hub/postgres_store.py, hub/redis_store.py)
implements, and the fences, leases and members that shared stores keep.

A store is a set of string key/value pairs under a scope (a mapping's name, then a lane). A write returns
only once it is durable, so a source may settle (and so never deliver again) what it has written.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class LeaseLost(Exception):
    """A fenced write was refused: the lease has another owner, a newer token, or has expired."""


@dataclass(frozen=True, slots=True)
class Fence:
    """What a write carries to prove its writer still holds a lease: the lease, its owner and its token."""

    lease: str
    owner: str
    token: int


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A lease as the store sees it now. `owner` is None for a lease nobody holds (never taken, or released);
    `remaining` is the seconds left before it expires, in the store's clock (<= 0: expired, free to take)."""

    name: str
    group: str
    owner: str | None
    token: int
    remaining: float

    @property
    def held(self) -> bool:
        """True while an owner holds it and it has not expired."""
        return self.owner is not None and self.remaining > 0


@dataclass(frozen=True, slots=True)
class MemberRow:
    """A live hub process: its id, the groups (mapping names) whose leases it may hold, and what `/status` shows
    of it (`info`: host, pid; never a setting)."""

    member: str
    groups: tuple[str, ...]
    remaining: float
    info: dict[str, Any] = field(default_factory=dict)


class CheckpointStore(ABC):
    """Where positions and other small state live: string values under a scope and a key, written durably and
    atomically. Subclasses implement get, get_all and put_many; shared ones are LeaseStores."""

    shared = False
    """True for a store several hub processes coordinate through (leases and members below); False for a store
    of one process, whose leases hub/leases.py grants at once without asking it."""

    @abstractmethod
    async def get(self, scope: str, key: str) -> str | None:
        """The value of `key` in `scope`, or None when there is none."""

    @abstractmethod
    async def get_all(self, scope: str) -> dict[str, str]:
        """Every key and value of `scope` ({} for an unknown scope)."""

    @abstractmethod
    async def put_many(self, scope: str, items: Mapping[str, str | None], fence: Fence | None = None) -> None:
        """Write (or, for a None value, delete) every item, atomically, durably.

        With a `fence`, only while that lease has that owner and token and has not expired in the store's clock;
        otherwise nothing is written and LeaseLost is raised. A store that is not `shared` ignores the fence."""

    async def put(self, scope: str, key: str, value: str, fence: Fence | None = None) -> None:
        """Write one value (see put_many)."""
        await self.put_many(scope, {key: value}, fence)

    async def delete(self, scope: str, key: str, fence: Fence | None = None) -> None:
        """Delete one key (see put_many)."""
        await self.put_many(scope, {key: None}, fence)

    async def put_absent(self, scope: str, items: Mapping[str, str]) -> dict[str, str]:
        """Write each item whose key has no value yet (the first writer wins), and return the scope as it is now.
        Shared stores do it atomically, so that two hubs starting at once agree."""
        present = await self.get_all(scope)
        missing = {k: v for k, v in items.items() if k not in present}
        if missing:
            await self.put_many(scope, missing)
        return {**present, **missing}

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the store's connections; writes in progress finish first. The default has nothing to release."""


class LeaseStore(CheckpointStore):
    """A store that also keeps leases and members, for several hub processes (hub/leases.py drives it)."""

    shared = True

    @abstractmethod
    async def heartbeat(
        self, member: str, groups: Sequence[str], ttl: float, info: Mapping[str, Any]
    ) -> list[MemberRow]:
        """Say `member` is alive for `ttl` more seconds (store clock), serving `groups`; return every live member,
        this one included, sorted by id."""

    @abstractmethod
    async def leave(self, member: str) -> None:
        """Forget the member at once (a graceful stop), so that the others rebalance without waiting for it."""

    @abstractmethod
    async def register(self, leases: Mapping[str, str]) -> None:
        """Make sure a lease row exists for every name (name -> group); existing rows are left as they are."""

    @abstractmethod
    async def leases(self) -> list[LeaseRow]:
        """Every lease, sorted by name."""

    @abstractmethod
    async def acquire(self, name: str, member: str, ttl: float) -> int | None:
        """Take the lease if nobody holds it (free, or expired in the store's clock): owner = member, token + 1,
        expiry = now + ttl. Returns the new token, or None if another member holds it or it does not exist."""

    @abstractmethod
    async def renew(self, member: str, held: Mapping[str, int], ttl: float) -> set[str]:
        """Extend every lease of `held` (name -> token) that still has this owner and token and has not expired to
        now + ttl. Returns the names renewed; the others are lost (an expired lease is lost even if nobody took it
        since: its owner may already have been told to stop)."""

    @abstractmethod
    async def release(self, fence: Fence) -> None:
        """Give the lease back (owner None, expired), if the fence still holds; else do nothing."""

    @abstractmethod
    async def forget(self, fence: Fence) -> None:
        """Delete the lease row (its work is over: a finished shard), if the fence still holds; else do nothing."""


def redacted(url: str) -> str:
    """The store's URL fit for a log line: any password replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
