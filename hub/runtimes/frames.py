"""The hub's end of an execution environment's response pipe (`runtime: python`, hub/runtimes/process.py).

A response frame is a 4-byte big-endian length, then its body: a status byte (hub.worker's READY, OK, ...) and the
JSON of the result or of Lambda's error object. `Responses` cuts the pipe's bytes into bodies as they arrive and
hands each to the environment, which gives it to the invocation it answers (the oldest one unanswered), without a
stream reader's buffer and coroutines in between.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Callable
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
    """The hub's end of an environment's response pipe: each frame's body, as it arrives, goes to `deliver`, in
    order; then None, once, when the pipe ends (the process died or was killed)."""

    def __init__(self, deliver: Callable[[bytes | None], None]) -> None:
        self._deliver = deliver
        self.ended = False
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        """Take bytes of the pipe: each whole frame is delivered."""
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

    def eof_received(self) -> bool:
        """The worker closed its end: it has died (or is dying)."""
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """The pipe is closed."""
        self._end()

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            self._deliver(None)
