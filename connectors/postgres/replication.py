"""The streaming replication connection, on the hub's event loop: psycopg2's logical replication cursor in its
asynchronous mode, driven by the loop's readiness callbacks (no thread, no blocking call).

psycopg2 (libpq underneath) speaks the protocol: authentication of every kind libpq knows, TLS, CopyBoth, and
the answers to the server's keepalives, which it sends from inside `read_message`. This module adds what an asyncio
program needs around it: waiting for the socket without blocking the loop, a standby status update every
`status_interval` that asks the server for an answer (so a connection that went silent is noticed within
`receive_timeout`), and the confirmed position, which only ever moves forward.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

CONFIRM_EVERY = 0.2
"""Seconds between two status updates sent because the confirmed LSN moved (besides the periodic one): the slot
follows settles within this, without one message per settle."""


class ReplicationStream:
    """One replication connection streaming one slot. `read()` returns the next pgoutput message (bytes) or None
    after `wait` seconds; `confirm(lsn)` moves the slot's confirmed flush position."""

    def __init__(
        self,
        url: str,
        password: str | None,
        slot: str,
        publication: str,
        *,
        status_interval: float,
        receive_timeout: float,
        connect_timeout: float,
    ) -> None:
        self.url = url
        self.password = password
        self.slot = slot
        self.publication = publication
        self.status_interval = status_interval
        self.receive_timeout = receive_timeout
        self.connect_timeout = connect_timeout
        self.confirmed = 0
        """The LSN the slot is confirmed up to, as this connection last said (0: nothing said yet)."""
        self._conn: Any = None
        self._cursor: Any = None
        self._heard = time.monotonic()
        self._sent = 0.0
        self._reported = 0

    async def start(self) -> None:
        """Connect and start streaming the slot from its confirmed LSN. Raises on trouble (a slot another
        connection streams, a missing publication, refused credentials)."""
        import psycopg2
        import psycopg2.extras

        kwargs: dict[str, Any] = {"connect_timeout": max(1, round(self.connect_timeout))}
        if self.password is not None:
            kwargs["password"] = self.password
        self._conn = psycopg2.connect(
            self.url,
            connection_factory=psycopg2.extras.LogicalReplicationConnection,
            async_=True,
            application_name=f"eventhub {self.slot}",
            **kwargs,
        )
        await asyncio.wait_for(self._poll(), self.connect_timeout)
        self._cursor = self._conn.cursor()
        self._cursor.start_replication(
            slot_name=self.slot,
            decode=False,
            start_lsn=0,  # from the slot's confirmed_flush_lsn
            options={"proto_version": "1", "publication_names": self.publication},
            status_interval=max(1.0, self.status_interval),  # psycopg2's own updates (ours: `keep_alive`)
        )
        await asyncio.wait_for(self._poll(), self.connect_timeout)
        self._heard = time.monotonic()

    async def _poll(self) -> None:
        """Drive an asynchronous psycopg2 operation (connecting, a command) to its end on the loop."""
        import psycopg2.extensions as ext

        while True:
            state = self._conn.poll()
            if state == ext.POLL_OK:
                return
            if state == ext.POLL_READ:
                await self._ready(self._conn.fileno(), write=False)
            elif state == ext.POLL_WRITE:
                await self._ready(self._conn.fileno(), write=True)

    @staticmethod
    async def _ready(fd: int, *, write: bool, timeout: float | None = None) -> bool:
        """Wait until `fd` is readable (or writable); False after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        (loop.add_writer if write else loop.add_reader)(fd, wake)
        try:
            await asyncio.wait_for(ready, timeout)
        except TimeoutError:
            return False
        finally:
            (loop.remove_writer if write else loop.remove_reader)(fd)
        return True

    def read_now(self) -> tuple[int, bytes] | None:
        """The next message already received, as (its WAL start, its bytes), or None. Never waits; answers a
        keepalive that asks for it, and sends the periodic status update when it is due."""
        message = self._cursor.read_message()
        if message is None:
            return None
        return message.data_start, message.payload

    async def wait(self, timeout: float) -> None:
        """Wait for the socket to have something, at most `timeout` seconds; then say how far the slot is settled
        if that is due (which also asks the server to answer). Raises ConnectionError when nothing has come for
        `receive_timeout`."""
        if await self._ready(self._conn.fileno(), write=False, timeout=timeout):
            self._heard = time.monotonic()
        self.keep_alive()

    def keep_alive(self) -> None:
        """Send a status update asking for an answer once `status_interval` has passed since the last one, and one
        when the confirmed LSN moved (at most every CONFIRM_EVERY); raise once the server has been silent for
        `receive_timeout`. Also called while the hub is not reading (its buffer is full): the server keeps the
        connection as long as status updates come."""
        now = time.monotonic()
        if now - self._heard > self.receive_timeout:
            raise ConnectionError(f"nothing came from the server for {self.receive_timeout:g}s")
        moved = self.confirmed > self._reported and now - self._sent >= CONFIRM_EVERY
        if now - self._sent >= self.status_interval or moved:
            self._cursor.send_feedback(flush_lsn=self.confirmed, reply=True)
            self._sent = now
            self._reported = self.confirmed

    def confirm(self, lsn: int) -> None:
        """Everything before `lsn` is settled: the slot may move there (sent with the next status update)."""
        if lsn > self.confirmed:
            self.confirmed = lsn
            self._cursor.send_feedback(flush_lsn=lsn)  # recorded; psycopg2 sends it with the next update

    def heard(self) -> None:
        """Something came (a message read without waiting)."""
        self._heard = time.monotonic()

    def close(self, *, final: bool = True) -> None:
        """Send the confirmed LSN one last time (a graceful stop loses no settle) and close the connection."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if final and self._cursor is not None and self.confirmed:
                self._cursor.send_feedback(flush_lsn=self.confirmed, force=True)
        except Exception:  # the connection is already gone: the slot keeps what was sent before
            pass
        finally:
            conn.close()
