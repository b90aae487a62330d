"""connectors/nats/client.py reaches into nats-py: these fail when the installed nats-py changes under it."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from connectors.nats import client


def test_the_installed_nats_py_builds_messages_as_lenient_client_relies_on() -> None:
    client.check()
    assert issubclass(client.LenientClient, Client)


def test_a_changed_nats_py_is_refused_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Client, "_build_message", lambda self, sid, subject, reply, data: None)
    with pytest.raises(client.LibraryChanged, match="_build_message"):
        client.check()


def test_bytes_that_are_not_utf8_are_shown_as_escapes_and_the_rest_is_kept() -> None:
    assert client._readable(b"orders.caf\xe9") == b"orders.caf\\xe9"
    assert client._readable("orders.café".encode()) == "orders.café".encode()
