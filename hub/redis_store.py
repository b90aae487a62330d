"""The Redis checkpoint store: checkpoints, leases and members in one Redis database, for several hubs.

Layout (every key under `prefix`, `hub:` by default):

- `hub:checkpoints:<scope>`  a hash key -> value per scope (the layout of every earlier version: existing data
                             keeps working);
- `hub:leases`               a hash lease name -> JSON `{"group", "owner" (null when free), "token", "expires"}`,
                             `expires` in milliseconds of the server's clock (0: free);
- `hub:members`              a sorted set member -> expiry (milliseconds, server clock), and `hub:members:info` a
                             hash member -> JSON `{"groups", "info"}`.

Every lease and member time is read from the server with `redis.call('TIME')` inside a Lua script, never from
this process's clock; a script runs atomically, so a fenced write (check the lease, then write) cannot interleave
with a takeover. redis-py is imported only when this store is used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from hub.store import Fence, LeaseLost, LeaseRow, LeaseStore, MemberRow

_NOW = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local function holds(raw, owner, token, now)
  if not raw then return nil end
  local row = cjson.decode(raw)
  if row.owner == owner and row.token == tonumber(token) and row.expires > now then return row end
  return nil
end
local function each(args, first, last, step, fn)
  -- unpack() has a stack limit: hand redis.call at most 1000 arguments at a time
  local i = first
  while i <= last do
    local j = math.min(last, i + step - 1)
    fn(unpack(args, i, j))
    i = j + 1
  end
end
"""

_FENCED_PUT = (
    _NOW
    + """
-- KEYS: leases, checkpoint hash. ARGV: lease, owner, token, number of upserts, key value pairs..., deleted keys...
if not holds(redis.call('HGET', KEYS[1], ARGV[1]), ARGV[2], ARGV[3], now_ms()) then return 0 end
local n = tonumber(ARGV[4])
local last_upsert = 4 + 2 * n
each(ARGV, 5, last_upsert, 1000, function(...) redis.call('HSET', KEYS[2], ...) end)
each(ARGV, last_upsert + 1, #ARGV, 1000, function(...) redis.call('HDEL', KEYS[2], ...) end)
return 1
"""
)

_ACQUIRE = (
    _NOW
    + """
-- KEYS: leases. ARGV: name, member, ttl (ms). Returns the new token, or nil.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
local row = cjson.decode(raw)
local now = now_ms()
if row.owner ~= cjson.null and row.expires > now then return false end
row.owner = ARGV[2]
row.token = row.token + 1
row.expires = math.floor(now + tonumber(ARGV[3]))  -- whole ms: exact in cjson's 14 digits
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(row))
return row.token
"""
)

_RENEW = (
    _NOW
    + """
-- KEYS: leases. ARGV: member, ttl (ms), name token pairs... Returns the names renewed.
local now = now_ms()
local kept = {}
for i = 3, #ARGV, 2 do
  local row = holds(redis.call('HGET', KEYS[1], ARGV[i]), ARGV[1], ARGV[i + 1], now)
  if row then
    row.expires = math.floor(now + tonumber(ARGV[2]))
    redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(row))
    kept[#kept + 1] = ARGV[i]
  end
end
return kept
"""
)

_RELEASE = """
-- KEYS: leases. ARGV: name, owner, token, 'release' or 'forget'. Only while the owner and token still match.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local row = cjson.decode(raw)
if row.owner ~= ARGV[2] or row.token ~= tonumber(ARGV[3]) then return 0 end
if ARGV[4] == 'forget' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  row.owner = cjson.null
  row.expires = 0
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(row))
end
return 1
"""

_LEASES = """
-- KEYS: leases. Returns the server's TIME and every lease.
return {redis.call('TIME'), redis.call('HGETALL', KEYS[1])}
"""

_HEARTBEAT = (
    _NOW
    + """
-- KEYS: members (sorted set), members' info (hash). ARGV: member, ttl (ms), info JSON.
-- Returns the server's TIME, then the live members with their expiry, then their info.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
each(gone, 1, #gone, 1000, function(...) redis.call('ZREM', KEYS[1], ...); redis.call('HDEL', KEYS[2], ...) end)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local live = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('(%.17g', now), '+inf', 'WITHSCORES')
local names = {}
for i = 1, #live, 2 do names[#names + 1] = live[i] end
if #names == 0 then return {time, live, {}} end
return {time, live, redis.call('HMGET', KEYS[2], unpack(names))}
"""
)


def _remaining(expires_ms: float, now_ms: float) -> float:
    return max(-1e9, (expires_ms - now_ms) / 1000.0)


class RedisStore(LeaseStore):
    """Checkpoints, leases and members in Redis (layout: the module docstring).

    `prefix` keeps several sets of hub state apart in one database (tests); the default is the layout hubs have
    always used. Every network wait has a timeout (10 s), so an outage raises rather than hangs."""

    def __init__(self, url: str, *, prefix: str = "hub:") -> None:
        import redis.asyncio

        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=8,
            timeout=30,
            decode_responses=True,
            socket_timeout=10,
            socket_connect_timeout=10,
        )
        self._client = redis.asyncio.Redis(connection_pool=pool)
        self.checkpoints = prefix + "checkpoints:"
        self.leases_key = prefix + "leases"
        self.members_key = prefix + "members"
        self.members_info = prefix + "members:info"
        script = self._client.register_script
        self._fenced_put = script(_FENCED_PUT)
        self._acquire = script(_ACQUIRE)
        self._renew = script(_RENEW)
        self._release = script(_RELEASE)
        self._leases = script(_LEASES)
        self._heartbeat = script(_HEARTBEAT)
        self._closed = False

    async def get(self, scope: str, key: str) -> str | None:
        """The value of `key` in `scope` (one hash per scope), or None."""
        value = await self._client.hget(self.checkpoints + scope, key)
        return None if value is None else str(value)

    async def get_all(self, scope: str) -> dict[str, str]:
        """Every field and value of the scope's hash."""
        raw = await self._client.hgetall(self.checkpoints + scope)
        return {str(k): str(v) for k, v in raw.items()}

    async def put_absent(self, scope: str, items: Mapping[str, str]) -> dict[str, str]:
        """The first writer wins: HSETNX for each item in one transaction, then the scope as it is now."""
        name = self.checkpoints + scope
        async with self._client.pipeline(transaction=True) as pipe:
            for key, value in items.items():
                pipe.hsetnx(name, key, value)
            pipe.hgetall(name)
            *_, raw = await pipe.execute()
        return {str(k): str(v) for k, v in raw.items()}

    async def put_many(self, scope: str, items: Mapping[str, str | None], fence: Fence | None = None) -> None:
        """Write and delete the items in one MULTI/EXEC; with a fence, in a Lua script that first checks the lease in
        the server's clock and raises LeaseLost when it no longer holds."""
        name = self.checkpoints + scope
        upserts: dict[Any, Any] = {k: v for k, v in items.items() if v is not None}
        deletes = [k for k, v in items.items() if v is None]
        if fence is not None:
            pairs = [x for kv in upserts.items() for x in kv]
            args = [fence.lease, fence.owner, fence.token, len(upserts), *pairs, *deletes]
            if not await self._fenced_put(keys=[self.leases_key, name], args=args):
                raise LeaseLost(fence.lease)
            return
        async with self._client.pipeline(transaction=True) as pipe:
            if upserts:
                pipe.hset(name, mapping=upserts)
            if deletes:
                pipe.hdel(name, *deletes)
            await pipe.execute()

    async def heartbeat(
        self, member: str, groups: Sequence[str], ttl: float, info: Mapping[str, Any]
    ) -> list[MemberRow]:
        """Keep `member` alive until the server's now + ttl (a sorted set by expiry); every live member, sorted by
        id."""
        record = json.dumps({"groups": list(groups), "info": dict(info)})
        (seconds, micros), live, infos = await self._heartbeat(
            keys=[self.members_key, self.members_info], args=[member, _ms(ttl), record]
        )
        now = int(seconds) * 1000 + int(micros) / 1000
        rows = []
        for i, raw in enumerate(infos):
            name, expires = live[2 * i], float(live[2 * i + 1])
            known = json.loads(raw) if raw is not None else {"groups": [], "info": {}}
            rows.append(MemberRow(name, tuple(known["groups"]), _remaining(expires, now), known["info"]))
        return sorted(rows, key=lambda row: row.member)

    async def leave(self, member: str) -> None:
        """Remove `member` and its info in one transaction."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zrem(self.members_key, member)
            pipe.hdel(self.members_info, member)
            await pipe.execute()

    async def register(self, leases: Mapping[str, str]) -> None:
        """Add a free lease row for every name not known yet (HSETNX: existing rows stay as they are)."""
        if not leases:
            return
        async with self._client.pipeline(transaction=True) as pipe:
            for name, group in leases.items():
                pipe.hsetnx(
                    self.leases_key, name, json.dumps({"group": group, "owner": None, "token": 0, "expires": 0})
                )
            await pipe.execute()

    async def leases(self) -> list[LeaseRow]:
        """Every lease row, sorted by name, with the seconds it has left on the server's clock."""
        (seconds, micros), flat = await self._leases(keys=[self.leases_key])
        now = int(seconds) * 1000 + int(micros) / 1000
        rows = []
        for name, raw in zip(flat[::2], flat[1::2], strict=True):
            row = json.loads(raw)
            rows.append(LeaseRow(name, row["group"], row["owner"], int(row["token"]), _remaining(row["expires"], now)))
        return sorted(rows, key=lambda row: row.name)

    async def acquire(self, name: str, member: str, ttl: float) -> int | None:
        """Take a free or expired lease for `member` (a Lua script, atomic): its new token, or None."""
        token = await self._acquire(keys=[self.leases_key], args=[name, member, _ms(ttl)])
        return None if token is None else int(token)

    async def renew(self, member: str, held: Mapping[str, int], ttl: float) -> set[str]:
        """Extend the leases `member` still holds with those tokens (a Lua script); the names renewed."""
        if not held:
            return set()
        pairs = [x for name, token in held.items() for x in (name, token)]
        kept = await self._renew(keys=[self.leases_key], args=[member, _ms(ttl), *pairs])
        return {str(name) for name in kept}

    async def release(self, fence: Fence) -> None:
        """Free the lease if the fence still holds."""
        await self._release(keys=[self.leases_key], args=[fence.lease, fence.owner, fence.token, "release"])

    async def forget(self, fence: Fence) -> None:
        """Delete the lease row if the fence still holds."""
        await self._release(keys=[self.leases_key], args=[fence.lease, fence.owner, fence.token, "forget"])

    async def close(self) -> None:
        """Close the client's connections. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()


def _ms(seconds: float) -> str:
    return repr(seconds * 1000.0)
