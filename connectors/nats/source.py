"""The `nats` source: one unordered lane, a JetStream durable pull consumer (see the package docstring)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import Any

from connectors.nats.config import NatsConfig, durable_name
from connectors.nats.events import HEADER_OVERHEAD, RECORD_OVERHEAD, Delivery, delivery, nats_record
from hub.logs import fields
from hub.records import Outcome, Record, data_view
from hub.source import LaneEnded, SourceContext

SILENCE = 5.0
"""How long past a pull request's expiry the server may stay silent (no message, no `408 Request Timeout`) before
the connection counts as gone."""
ACK = b"+ACK"
TERM = b"+TERM"
IN_PROGRESS = b"+WPI"
STREAM_NOT_FOUND = 10059


class NatsSource:
    """One unordered lane: the durable pull consumer.

    Pull requests ask for up to `prefetch` messages ahead; JetStream delivers them to this process's inbox, where
    they wait (held: reported in progress every third of the ack wait) until a read takes them. Messages read and
    not settled stay held across a reconnect, and are acked or nak'd on whatever connection is open then.
    """

    ordered = False

    def __init__(self, config: NatsConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self.stream = config.stream
        self.consumer = config.consumer or durable_name(context.mapping)
        self.key = f"{self.stream}/{self.consumer}"
        self.where = config.public_server()
        self.arn = f"{self.where}/{self.stream}/{self.consumer}"
        self.ack_wait = config.ack_wait
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer}"
        self._nc: Any = None
        self._inbox = ""
        self._buffer: deque[tuple[Any, Delivery]] = deque()
        """Messages delivered to the inbox and not read yet, with what their ack subject says."""
        self._held: dict[Hashable, str] = {}
        """Stream sequence -> newest ack subject of every message delivered and not settled (buffered or in a batch);
        kept across reopens, as batches may settle while the source reconnects."""
        self._requests: deque[list[float]] = deque()
        """Live pull requests, oldest first: [expires at (monotonic), messages still due]."""
        self._arrived = asyncio.Event()
        self._limit = 1
        self._heard = 0.0
        self._refused = ""
        self._error = ""
        self._lost: BaseException | None = None
        self._closed = asyncio.Event()
        self._ended = asyncio.Event()
        self._heartbeat: asyncio.Task[None] | None = None

    def _log(self, level: int, message: str, *args: Any) -> None:
        self.context.log.log(level, message, *args, extra=fields(mapping=self.context.mapping, consumer=self.key))

    # ---- Source ----------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, bind the durable pull consumer (created if missing), and start pulling into the buffer."""
        from connectors.nats.client import LenientClient

        self._closed.clear()
        self._ended.clear()
        self._lost, self._refused, self._error = None, "", ""
        self._buffer.clear()
        self._requests.clear()
        timeout = self.config.connect_timeout
        ssl_context = self.config.ssl_context()
        tls = {"tls": ssl_context} if ssl_context is not None else {}
        # asyncio.timeout rather than wait_for throughout: Python 3.11's wait_for can swallow a cancellation
        async with asyncio.timeout(timeout * (len(self.config.urls) + 1)):
            options: dict[str, Any] = {
                "servers": self.config.urls,
                "name": f"eventhub {self.context.mapping}",
                "connect_timeout": timeout,
                "allow_reconnect": False,  # trouble ends the source; the mapping reopens it with backoff
                "max_reconnect_attempts": 0,
                "ping_interval": max(2, int(self.config.pull_wait)),
                "max_outstanding_pings": 2,
                "error_cb": self._on_error,
                "disconnected_cb": self._on_disconnected,
                "closed_cb": self._on_disconnected,
                **tls,
                **self.config.login(),
            }
            nc = LenientClient()  # what nats.connect makes, delivering a subject that is not UTF-8
            await nc.connect(**options)
        self._nc = nc
        try:
            info = await self._consumer_info(nc)
            self._check(info.config)
            self.ack_wait = float(info.config.ack_wait or self.config.ack_wait)
            self._inbox = nc.new_inbox()
            await nc.subscribe(self._inbox, cb=self._receiver(nc))
            async with asyncio.timeout(timeout):
                await nc.flush()  # the inbox exists on the server before the first pull
        except BaseException:
            await self.close()
            raise
        self._heard = time.monotonic()
        self._heartbeat = asyncio.ensure_future(self._keep_in_progress(nc))
        self._log(
            20,
            "reading %s on %s (ack wait %gs, %d waiting, %d unacked)",
            self.key,
            self.where,
            self.ack_wait,
            info.num_pending,
            info.num_ack_pending,
        )

    async def _consumer_info(self, nc: Any) -> Any:
        """The durable consumer, created from the configuration if it is missing (and `create_consumer` is on)."""
        from nats.js.errors import APIError, NotFoundError

        js = nc.jetstream(timeout=self.config.connect_timeout)
        try:
            return await js.consumer_info(self.stream, self.consumer)
        except NotFoundError as exc:
            if exc.err_code == STREAM_NOT_FOUND:
                raise LookupError(f"there is no stream {self.stream} on {self.where}") from None
            if not self.config.create_consumer:
                raise LookupError(
                    f"there is no consumer {self.consumer} on stream {self.stream} (create_consumer is false)"
                ) from None
        try:
            info = await js.add_consumer(self.stream, config=self._consumer_config())
        except APIError:
            try:  # another hub created it at the same moment: use theirs, if it is what we would have made
                return await js.consumer_info(self.stream, self.consumer)
            except NotFoundError:
                raise
        self._log(20, "created the durable consumer %s on stream %s", self.consumer, self.stream)
        return info

    def _consumer_config(self) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        subjects = self.config.subjects
        return ConsumerConfig(
            name=self.consumer,
            durable_name=self.consumer,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL if self.config.starting_position == "TRIM_HORIZON" else DeliverPolicy.NEW,
            ack_wait=self.config.ack_wait,
            max_deliver=self.config.max_deliver or -1,
            max_ack_pending=self.config.max_ack_pending,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
            filter_subjects=subjects if len(subjects) > 1 else None,
        )

    def _check(self, config: Any) -> None:
        """Refuse a consumer the hub cannot read safely: a push consumer, one without explicit acks, one that reads
        other subjects than configured, or one that drops messages after a max_deliver the configuration (checked
        against the mapping's max_receive_count and destination) does not know."""
        name = f"the consumer {self.consumer} of stream {self.stream}"
        if config.deliver_subject:
            raise ValueError(f"{name} is a push consumer; the hub reads through a pull consumer")
        if str(getattr(config.ack_policy, "value", config.ack_policy)) != "explicit":
            raise ValueError(f"{name} does not ack explicitly (ack policy {config.ack_policy})")
        subjects = list(config.filter_subjects or ([config.filter_subject] if config.filter_subject else []))
        if sorted(subjects) != sorted(self.config.subjects):
            raise ValueError(
                f"{name} reads subjects {subjects or 'all'}, the configuration says {self.config.subjects or 'all'}: "
                "change filter_subject, or delete the consumer (it loses its position)"
            )
        limit = config.max_deliver if config.max_deliver and config.max_deliver > 0 else None
        if limit != self.config.max_deliver:
            raise ValueError(
                f"{name} stops delivering a message after {limit or 'unlimited'} deliveries, the configuration says "
                f"max_deliver {self.config.max_deliver or 'unlimited'}: make them agree (nats consumer edit), so that "
                "no message is dropped without reaching the destination"
            )

    async def lanes(self) -> AsyncIterator[NatsSource]:
        """Its one unordered lane (itself), until the connection ends; raises ConnectionError when the server dropped
        it, so that the mapping reconnects."""
        yield self
        await self._ended.wait()
        if self._lost is not None and not self._closed.is_set():
            raise ConnectionError(f"{self.where}: {self._lost}")

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        """The event: `{"Records": [...]}`, one per message."""
        return {"Records": [r.payload for r in records]}

    def filter_view(self, record: Record) -> dict[str, Any]:
        """The record's metadata, with `data` decoded from base64 and parsed as JSON when it is JSON."""
        payload = record.payload
        metadata = {k: v for k, v in payload.items() if k != "data"}
        return data_view(metadata, "data", base64.b64decode(payload["data"]))

    async def close(self) -> None:
        """Unread messages are nak'd (delivered again at once); messages in batches stay held for their settle."""
        self._closed.set()
        self._ended.set()
        self._arrived.set()
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        nc, self._nc = self._nc, None
        unread = [self._held.pop(meta.stream_seq, msg.reply) for msg, meta in self._buffer]
        self._buffer.clear()
        self._requests.clear()
        if nc is None:
            return
        with contextlib.suppress(Exception):  # a connection already gone is as good as closed
            async with asyncio.timeout(self.config.connect_timeout):
                if not nc.is_closed:
                    for reply in unread:
                        await nc.publish(reply, b"-NAK")
                    await nc.flush()  # acks and naks reach the server
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.config.connect_timeout):
                await nc.close()

    # ---- connection events -----------------------------------------------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        self._error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    async def _on_disconnected(self) -> None:
        if self._closed.is_set() or self._lost is not None:
            return
        self._lost = ConnectionError(f"the connection closed ({self._error or 'by the server'})")
        self._ended.set()
        self._arrived.set()

    def _receiver(self, nc: Any) -> Any:
        async def receive(msg: Any) -> None:
            if self._nc is nc:  # not a late message of a connection this source has closed
                self._on_message(msg)

        return receive

    def _on_message(self, msg: Any) -> None:
        """A message or a status of a pull request, on the inbox."""
        self._heard = time.monotonic()
        meta = delivery(msg.reply) if msg.reply else None
        if meta is not None:
            self._one_delivered()
            if meta.stream_seq in self._held:  # delivered again while held here (its ack wait ran out): once here
                self._held[meta.stream_seq] = msg.reply
                return
            self._held[meta.stream_seq] = msg.reply
            self._buffer.append((msg, meta))
            self._arrived.set()
            return
        headers = msg.headers or {}
        status = headers.get("Status", "")
        if status in ("404", "408"):  # a request ran out (expired, or found nothing)
            if self._requests:
                self._requests.popleft()
        elif status and status != "100":  # 100: an idle heartbeat
            description = " ".join(str(v) for k, v in headers.items() if k != "Status")
            if status == "409" and ("Deleted" in description or "push" in description):
                self._lost = ConnectionError(f"{self.key}: {description}")
                self._ended.set()
            else:  # 409 Exceeded MaxWaiting, Leadership Change, 400 Bad Request...: the next read reports it
                self._requests.clear()
                self._refused = f"{status} {description}".strip()
        self._arrived.set()

    def _one_delivered(self) -> None:
        if self._requests:
            head = self._requests[0]
            head[1] -= 1
            if head[1] <= 0:
                self._requests.popleft()

    # ---- Lane ------------------------------------------------------------------------------------------------

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """Up to `limit` records; asks for more with a pull request when what is buffered and asked for runs low."""
        self._limit = max(self._limit, limit)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed.is_set() or self._nc is None:
                raise LaneEnded(self.key)
            if self._lost is not None:
                raise ConnectionError(f"{self.where}: {self._lost}")
            if self._refused:
                refused, self._refused = self._refused, ""
                raise RuntimeError(f"{self.where} refused a pull request on {self.key}: {refused}")
            if not self._buffer:
                await self._ask()
            if self._buffer:
                return self._records(limit)
            now = time.monotonic()
            wait = self._until_next_ask(now)
            if deadline is not None:
                if now >= deadline:
                    return []
                wait = min(wait, deadline - now)
            self._arrived.clear()
            # not wait_for: in Python 3.11 it swallows a cancellation that comes as the event is set, and this loop
            # would then wait for records for ever while the hub stops
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wait)):
                    await self._arrived.wait()

    @property
    def prefetch(self) -> int:
        """How many messages a pull asks for: `prefetch`, else a batch per batch the mapping may have in flight."""
        return self.config.prefetch or self._limit * max(1, self.context.max_in_flight)

    def _until_next_ask(self, now: float) -> float:
        """Seconds until a live request stops counting (see `_ask`), when the next one may be due."""
        early = self.config.pull_wait / 4
        counted = [expires - early - now for expires, _ in self._requests if expires - now > early]
        return min(counted, default=early)

    async def _ask(self) -> None:
        """Send a pull request when what is buffered and still due from live requests is less than half of
        `prefetch`. Requests that expire within a quarter of `pull_wait` do not count, so the next one is on the
        server before the last one runs out."""
        now = time.monotonic()
        wait = self.config.pull_wait
        while self._requests and self._requests[0][0] + SILENCE < now:
            if self._heard < self._requests[0][0]:
                raise ConnectionError(
                    f"{self.where} did not answer a pull request on {self.key} within {wait + SILENCE:g}s"
                )
            self._requests.popleft()  # its 408 was lost
        due = sum(int(left) for expires, left in self._requests if expires - now > wait / 4)
        want = self.prefetch - len(self._buffer) - due
        if want <= 0 or (due and want < self.prefetch // 2):
            return
        request = json.dumps({"batch": want, "expires": int(wait * 1e9)}).encode()
        self._requests.append([now + wait, float(want)])
        await self._nc.publish(self._next, request, reply=self._inbox)

    def _records(self, limit: int) -> list[Record]:
        buffer, key, arn, region = self._buffer, self.key, self.arn, self.context.region
        out: list[Record] = []
        while buffer and len(out) < limit:
            msg, meta = buffer.popleft()
            headers = msg.headers
            payload = nats_record(msg.subject, msg.data, headers, meta, arn=arn, region=region)
            size = RECORD_OVERHEAD + len(payload["data"]) + len(msg.subject)
            if headers:
                size += sum(len(k) + len(v) + HEADER_OVERHEAD for k, v in headers.items())
            seq = meta.stream_seq
            out.append(Record(key, seq, payload, meta.timestamp_ns / 1e9, size, payload["messageId"], meta.delivered))
        return out

    async def settle(self, outcome: Outcome) -> None:
        """Ack what succeeded or was filtered; term what was given up (the destination has it); nak what failed with
        the mapping's backoff for its attempt, so JetStream delivers it again after that delay."""
        held, nc = self._held, self._nc
        acks = [reply for r in outcome.succeeded + outcome.filtered if (reply := held.pop(r.position, None))]
        terms = [reply for r in outcome.given_up if (reply := held.pop(r.position, None))]
        naks = [(reply, r.attempt) for r in outcome.failed if (reply := held.pop(r.position, None))]
        if not acks and not terms and not naks:
            return
        if nc is None or nc.is_closed:
            raise ConnectionError(f"not connected to {self.where}: the messages are delivered again after ack_wait")
        publish = nc.publish
        for reply in acks:
            await publish(reply, ACK)
        for reply in terms:
            await publish(reply, TERM)
        for reply, attempt in naks:
            delay = int(self.context.retry_after(attempt) * 1e9)
            await publish(reply, b'-NAK {"delay": %d}' % delay)

    async def _keep_in_progress(self, nc: Any) -> None:
        """Tell JetStream every third of the ack wait that the messages held here are still being worked on."""
        every = max(0.2, self.ack_wait / 3)
        while True:
            await asyncio.sleep(every)
            try:
                for reply in list(self._held.values()):
                    await nc.publish(reply, IN_PROGRESS)
            except Exception as exc:  # the connection is gone: _on_disconnected ends the source
                self._log(10, "cannot report messages in progress: %s", exc)
                return
