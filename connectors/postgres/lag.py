"""The slot's lag: bytes of WAL the server holds past the slot's confirmed LSN, read every `lag_interval` for
/status, /metrics and the log."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from connectors.postgres.admin import Admin
from hub.logs import fields


class SlotLag:
    """Reads one slot's lag and keeps the last reading."""

    def __init__(self, admin: Admin, slot: str, mapping: str, log: logging.Logger) -> None:
        self.admin = admin
        self.slot = slot
        self.mapping = mapping
        self.log = log
        self.bytes: int | None = None
        """As last read (None: not read yet)."""
        self._last: dict[str, Any] = {}

    async def read(self) -> dict[str, Any]:
        """The slot's lag now: `{"slot_lag_bytes": N, "slot_active": bool}` (empty when the slot is gone), read from
        `pg_replication_slots` (`pg_current_wal_lsn() - confirmed_flush_lsn`)."""
        found = await self.admin.lag(self.slot)
        if found is None:
            self._last = {}
            return {}
        self.bytes = found[0]
        self._last = {"slot_lag_bytes": found[0], "slot_active": found[1]}
        return dict(self._last)

    def last(self) -> dict[str, Any]:
        """The lag as last read, without a query: what a status page shows. Empty before the first read."""
        return dict(self._last)

    async def watch(self, interval: float, buffered: Callable[[], int]) -> None:
        """Read the lag every `interval` seconds and log it (with `buffered()`, the changes held); a failed read is
        logged, not fatal: the stream does not depend on it."""
        while True:
            started = time.monotonic()
            try:
                lag = await self.read()
            except Exception as exc:
                self.log.warning(
                    "reading the slot's lag failed: %s", exc, extra=fields(mapping=self.mapping, slot=self.slot)
                )
            else:
                self.log.info(
                    "slot lag %s bytes",
                    lag.get("slot_lag_bytes", "?"),
                    extra=fields(mapping=self.mapping, slot=self.slot, buffered=buffered(), **lag),
                )
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
