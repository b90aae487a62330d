"""PUBACKs: when they are sent (AckWindow), and the one place that reaches paho-mqtt through aiomqtt (manual_acks).

aiomqtt 2.x does not expose manual acknowledgement: paho-mqtt 2.x, under it, sends the PUBACK of a QoS 1 message as
soon as its on_message callback returns, unless `manual_ack_set(True)` was called, and then only on `ack(mid, qos)`.
`manual_acks` takes the paho client aiomqtt wraps (its `_client` attribute) and checks, before anything is
received, that it is paho's Client with those two methods, so that an aiomqtt or paho release that changes them
fails the open (and tests/unit/test_mqtt.py, and the redelivery test of tests/integration/test_mqtt.py) loudly,
instead of silently acking every message on arrival.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SendAck = Callable[[int, int], None]
"""Send the PUBACK of (packet id, qos)."""


class LibraryChanged(RuntimeError):
    """aiomqtt or paho-mqtt no longer has what manual acknowledgement needs."""


def manual_acks(client: Any) -> SendAck:
    """Turn on manual acknowledgement on an aiomqtt Client that is not connected yet, and return its ack call.

    Raises LibraryChanged if aiomqtt no longer wraps a paho-mqtt Client with `manual_ack_set` and `ack`.
    """
    import paho.mqtt.client as paho

    inner = getattr(client, "_client", None)
    if not isinstance(inner, paho.Client) or not callable(getattr(inner, "manual_ack_set", None)):
        raise LibraryChanged(
            "aiomqtt.Client no longer wraps a paho-mqtt Client with manual_ack_set(): the mqtt connector cannot "
            "hold PUBACKs until a message settles (connectors/mqtt/acks.py)"
        )
    ack = getattr(inner, "ack", None)
    if not callable(ack):
        raise LibraryChanged("paho-mqtt's Client has no ack(mid, qos) (connectors/mqtt/acks.py)")
    inner.manual_ack_set(True)

    def send(mid: int, qos: int) -> None:
        code = ack(mid, qos)
        if code != paho.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"PUBACK of message {mid} not sent: {paho.error_string(code)}")

    return send


class AckWindow:
    """The messages of one connection that have no PUBACK yet, in the order they arrived.

    `received` registers a message and gives its sequence number (its position); `settle` marks it done and sends
    what may be sent: with `ordered`, the PUBACKs of the oldest messages up to the first one not settled (the MQTT
    specification's order, [MQTT-4.6.0-2]); without, its own PUBACK at once. QoS 0 messages take part in the order
    but have no PUBACK. A sequence number not (or no longer) in the window is ignored.
    """

    __slots__ = ("_next", "_send", "_settled", "_waiting", "ordered")

    def __init__(self, send: SendAck, ordered: bool) -> None:
        self._send = send
        self.ordered = ordered
        self._next = 0
        self._waiting: dict[int, tuple[int, int]] = {}
        """seq -> (packet id, qos), oldest first (dicts keep insertion order)."""
        self._settled: set[int] = set()

    def received(self, mid: int, qos: int) -> int:
        """Register a message received with packet id `mid` at `qos`; its sequence number (its place in arrival
        order)."""
        seq = self._next
        self._next += 1
        self._waiting[seq] = (mid, qos)
        return seq

    def settle(self, seq: int) -> None:
        """Mark `seq` settled and send every PUBACK that is now due. Raises ConnectionError if one cannot be sent
        (the connection is gone: the broker sends the message again on the next one)."""
        waiting = self._waiting
        if seq not in waiting:
            return
        if not self.ordered:
            self._ack(waiting.pop(seq))
            return
        self._settled.add(seq)
        while waiting:
            head = next(iter(waiting))
            if head not in self._settled:
                return
            self._settled.discard(head)
            self._ack(waiting.pop(head))

    def _ack(self, message: tuple[int, int]) -> None:
        mid, qos = message
        if qos > 0:
            self._send(mid, qos)

    def __len__(self) -> int:
        """Messages with no PUBACK sent yet."""
        return len(self._waiting)
