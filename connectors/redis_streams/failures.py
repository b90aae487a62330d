"""The `redis` failure destination read back, for the console and replays (hub.readback).

The destination's stream (connectors/redis_streams/destination.py) holds one entry per document: `body` (AWS's
failure record with the whole event as `payload`, or a dead letter's event), `mapping`, `lane` and, for a dead
letter, `attributes`. A listing reads the stream with XRANGE (nothing is consumed: no consumer group) and keeps
the entries of this mapping (a stream may be shared); a letter's id is the entry's id, and a replayed entry is
removed with XDEL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from connectors.redis_streams.destination import RedisDestinationConfig
from hub.readback import Letter, parsed

PAGE = 200
MOST_SCANNED = 10_000
"""Entries a listing reads at most to count this mapping's (past that, the total is unknown)."""


def _when(entry_id: str) -> str | None:
    millis = entry_id.partition("-")[0]
    if not millis.isdigit():
        return None
    return datetime.fromtimestamp(int(millis) / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _letter(entry_id: str, fields: dict[str, str]) -> Letter:
    body = parsed(fields.get("body"))
    stamp = body.get("timestamp") if isinstance(body, dict) else None
    when = stamp if isinstance(stamp, str) else _when(entry_id)
    attributes = fields.get("attributes")
    return Letter(entry_id, body, json.loads(attributes) if attributes else None, when)


class RedisInbox:
    """The entries of one mapping in the destination's stream."""

    kind = "redis"

    def __init__(self, config: RedisDestinationConfig, mapping: str) -> None:
        self.config = config
        self.mapping = mapping
        self._client: Any = None

    def _connected(self) -> Any:
        if self._client is None:
            import redis.asyncio

            options: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 10, "decode_responses": True}
            if self.config.password is not None:
                options["password"] = self.config.password.get_secret_value()
            self._client = redis.asyncio.Redis.from_url(self.config.url, **options)
        return self._client

    def _ours(self, fields: dict[str, str]) -> bool:
        return fields.get("mapping") in (None, "", self.mapping)

    async def list(self, limit: int) -> tuple[list[Letter], int | None]:
        """Up to `limit` of this mapping's entries, oldest first, and how many it has (None past MOST_SCANNED)."""
        client = self._connected()
        letters: list[Letter] = []
        counted = scanned = 0
        start = "-"
        while scanned < MOST_SCANNED:
            page = await client.xrange(self.config.stream, min=start, max="+", count=PAGE)
            for entry_id, fields in page:
                if self._ours(fields):
                    counted += 1
                    if len(letters) < limit:
                        letters.append(_letter(entry_id, fields))
            scanned += len(page)
            if len(page) < PAGE:
                return letters, counted
            start = "(" + page[-1][0]
        return letters, None

    async def take(self, ids: Sequence[str], hold: float) -> dict[str, Letter]:
        """The entries of these ids that are still in the stream."""
        client = self._connected()
        found = {}
        for entry_id in ids:
            page = await client.xrange(self.config.stream, min=entry_id, max=entry_id, count=1)
            if page and self._ours(page[0][1]):
                found[entry_id] = _letter(*page[0])
        return found

    async def remove(self, letter: Letter) -> None:
        """XDEL the entry."""
        await self._connected().xdel(self.config.stream, letter.id)

    async def release(self, letter: Letter) -> None:
        """Nothing to give back: reading holds nothing."""

    async def close(self) -> None:
        """Close the client."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def inbox(config: RedisDestinationConfig, region: str, store: Any, mapping: str) -> RedisInbox:
    """The inbox of a `redis` destination (its DestinationSpec's `inbox`)."""
    return RedisInbox(config, mapping)
