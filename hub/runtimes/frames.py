"""The hub's end of an execution environment's response pipe (`runtime: python`, hub/runtimes/process.py).

A response frame is a 4-byte big-endian length, then its body: a status byte (hub.worker's READY, OK, ...) and the
JSON of the result or of Lambda's error object. `Responses` cuts the pipe's bytes into bodies as they arrive and
hands each to the one invocation waiting for it, without a stream reader's buffer and coroutines in between.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import msgspec

_HEADER = struct.Struct(">I")
_decode = msgspec.json.Decoder().decode


def result_json(data: bytes) -> Any:
    """A result the worker serialised with Python's json, in C: msgspec gives the same values for all it accepts;
    what only Python's json reads (NaN, Infinity, a lone surrogate) is read by it."""
    try:
        return _decode(data)
    except msgspec.DecodeError:
        return json.loads(data)


class Responses(asyncio.Protocol):
    """The hub's end of an environment's response pipe: each frame, as it arrives, resolves the call waiting for it
    (one at a time); None once the pipe ends (the process died)."""

    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes | None] | None = None
        self.ended = False
        self._buffer = bytearray()

    def expect(self) -> asyncio.Future[bytes | None]:
        """The future of the next response's body."""
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        if self.ended:
            waiter.set_result(None)
        return waiter

    def data_received(self, data: bytes) -> None:
        """Take bytes of the pipe: whole frames go to the waiting call."""
        buffer = self._buffer
        if not buffer and len(data) >= _HEADER.size and _HEADER.unpack_from(data)[0] == len(data) - _HEADER.size:
            self._deliver(data[_HEADER.size :])  # the usual case: one read, one whole frame
            return
        buffer += data
        while len(buffer) >= _HEADER.size:
            end = _HEADER.size + _HEADER.unpack_from(buffer)[0]
            if len(buffer) < end:
                return
            body = bytes(buffer[_HEADER.size : end])
            del buffer[:end]
            self._deliver(body)

    def _deliver(self, body: bytes | None) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(body)

    def eof_received(self) -> bool:
        """The worker closed its end: it has died (or is dying)."""
        self.ended = True
        self._deliver(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """The pipe is closed."""
        self.ended = True
        self._deliver(None)
