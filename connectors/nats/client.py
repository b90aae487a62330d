"""The one place the nats connector reaches into nats-py: a subject that is not UTF-8.

nats-server takes any bytes but white space in a subject, from any client; nats-py decodes each delivered message's
subject and reply subject with a strict `bytes.decode()` in `Client._build_message`. A subject that is not UTF-8
raises there, inside the client's reading task: the connection is dropped, and JetStream delivers the same message
again on the next one, for ever, holding up every message behind it. `LenientClient` overrides that one method: when
nats-py's own decoding fails, it hands nats-py the subjects with the bytes that are not UTF-8 written as `\\xNN`
(backslashreplace), and the message is delivered, its subject showing exactly which bytes it had. `check()` makes sure
at import that nats-py still has the method, with the parameters it is called with (tests/unit/test_nats_client.py
runs it against the installed nats-py).
"""

from __future__ import annotations

import inspect
from typing import Any

from nats.aio.client import Client

PARAMETERS = ["self", "sid", "subject", "reply", "data", "headers"]


class LibraryChanged(RuntimeError):
    """nats-py no longer builds messages the way LenientClient relies on."""


def check() -> None:
    """Raise LibraryChanged unless nats-py's Client has `_build_message(sid, subject, reply, data, headers)`."""
    method = getattr(Client, "_build_message", None)
    if not callable(method) or list(inspect.signature(method).parameters) != PARAMETERS:
        raise LibraryChanged(
            "nats-py's Client._build_message(sid, subject, reply, data, headers) is gone or changed: the nats "
            "connector cannot deliver a message whose subject is not UTF-8 (connectors/nats/client.py)"
        )


check()


class LenientClient(Client):
    """nats-py's Client, delivering a message whose subject is not UTF-8 instead of dropping the connection."""

    def _build_message(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> Any:
        try:
            return super()._build_message(sid, subject, reply, data, headers)
        except UnicodeDecodeError:
            return super()._build_message(sid, _readable(subject), _readable(reply), data, headers)


def _readable(name: bytes) -> bytes:
    """UTF-8 bytes of `name`, with each byte that is not part of UTF-8 written as `\\xNN`."""
    return bytes(name).decode("utf-8", "backslashreplace").encode("utf-8")
