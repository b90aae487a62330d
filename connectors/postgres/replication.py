"""The streaming replication connection, on the hub's event loop: psycopg2's logical replication cursor in its
asynchronous mode, driven by the loop's readiness callbacks (no thread, no blocking call).

psycopg2 (libpq underneath) speaks the protocol: authentication of every kind libpq knows, TLS, CopyBoth. This
module adds what an asyncio program needs around it: waiting for the socket without blocking the loop, a standby
status update every `status_interval` that asks the server for an answer (so a connection that went silent is
noticed within `receive_timeout`), and the confirmed position, which only ever moves forward.

The status updates are the hub's own, written with libpq's PQputCopyData on psycopg2's connection (the same libpq
psycopg2 runs on, found through its extension module), never with psycopg2's `send_feedback`: psycopg2 moves the
flush position it reports up to the server's WAL end on a keepalive once the position it was given reaches the
start of the last message received. The start of a message is the LSN of its WAL record, and the records of a
transaction may lie before the end of the previous one (or right at it), so that rule would confirm changes this
hub has read but not settled, and a crash would lose them. Since the hub never calls `send_feedback`, psycopg2 only
answers a keepalive that asks for it (the server asks after `wal_sender_timeout / 2` without a status update), with
a flush position of 0 (which the server ignores) or, before any change came, the server's own WAL end.
"""

from __future__ import annotations

import asyncio
import ctypes
import struct
import time
from typing import Any

CONFIRM_EVERY = 0.2
"""Seconds between two status updates sent because the confirmed LSN moved (besides the periodic one): the slot
follows settles within this, without one message per settle."""
PSYCOPG2_STATUS_INTERVAL = 1e7
"""psycopg2's own periodic status update, made never to come: the hub sends its own."""
POSTGRES_EPOCH = 946684800
_STATUS = struct.Struct("!cQQQqB")


def _libpq() -> tuple[Any, Any]:
    """libpq's PQputCopyData and PQflush, from the library psycopg2's extension module is linked with."""
    import psycopg2._psycopg as extension

    library = ctypes.CDLL(extension.__file__)  # dlsym searches the module's own dependencies: its libpq
    put, flush = library.PQputCopyData, library.PQflush
    put.argtypes, put.restype = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int], ctypes.c_int
    flush.argtypes, flush.restype = [ctypes.c_void_p], ctypes.c_int
    return put, flush


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
        self._unflushed = False
        self._put: Any = None
        self._flush: Any = None

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
            status_interval=PSYCOPG2_STATUS_INTERVAL,
        )
        await asyncio.wait_for(self._poll(), self.connect_timeout)
        self._put, self._flush = _libpq()
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
        if now - self._sent >= self.status_interval or moved or self._unflushed:
            self._status(reply=True)
            self._sent = now

    def _status(self, *, reply: bool) -> None:
        """A standby status update: written, received and flushed up to the confirmed LSN. Raises ConnectionError
        when libpq cannot take it; one it could not send whole yet is pushed on by the next call."""
        pgconn = ctypes.c_void_p(self._conn.pgconn_ptr)
        if not self._unflushed:
            lsn = self.confirmed
            micros = int((time.time() - POSTGRES_EPOCH) * 1_000_000)
            message = _STATUS.pack(b"r", lsn, lsn, lsn, micros, 1 if reply else 0)
            if self._put(pgconn, message, len(message)) != 1:
                raise ConnectionError(f"sending a status update failed: {self._conn.info.error_message}")
            self._reported = lsn
        state = self._flush(pgconn)
        if state < 0:
            raise ConnectionError(f"sending a status update failed: {self._conn.info.error_message}")
        self._unflushed = state == 1

    def confirm(self, lsn: int) -> None:
        """Everything before `lsn` is settled: the slot may move there (sent with the next status update)."""
        if lsn > self.confirmed:
            self.confirmed = lsn

    def heard(self) -> None:
        """Something came (a message read without waiting)."""
        self._heard = time.monotonic()

    def close(self, *, final: bool = True) -> None:
        """Send the confirmed LSN one last time (a graceful stop loses no settle) and close the connection."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if final and self._cursor is not None and self.confirmed > self._reported:
                self._conn = conn
                self._unflushed = False
                self._status(reply=False)
                for _ in range(20):  # a full socket buffer: a moment for it to drain, at most 0.2 s
                    if not self._unflushed:
                        break
                    time.sleep(0.01)
                    self._status(reply=False)
        except Exception:  # the connection is already gone: the slot keeps what was sent before
            pass
        finally:
            self._conn = None
            conn.close()
