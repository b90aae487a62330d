"""A test fixture component, not a Kafka broker: our own implementation of the broker side of Kafka's SASL handshake,
put in front of a real tansu broker, because no Kafka broker that authenticates clients can be installed here
(Apache Kafka cannot be downloaded, and the tansu build the test extras ship keeps no SCRAM credentials and offers no
PLAIN). It is what tests/fixtures_kafka.SaslBroker uses to make tansu demand SASL.

    gate = SaslGate(upstream_port=tansu_port, users={"alice": "s3cret"})   # listens on 127.0.0.1:gate.port
    ...
    gate.close()

What it does, as an Apache Kafka SASL_PLAINTEXT listener (or, with `ssl`, SASL_SSL) does: before authentication a
connection may send only ApiVersions (answered by the broker behind), SaslHandshake and SaslAuthenticate; any other
request closes it (Kafka's IllegalSaslState). Mechanisms: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 (the RFC 5802
server side as Kafka runs it: an unknown user gets a made-up salt and fails at the proof). A refused login gets
Kafka's answer, a SaslAuthenticate response with error 58 (SASL_AUTHENTICATION_FAILED) and Kafka's message, and the
connection is closed. An authenticated connection is then piped byte for byte to the broker, which must advertise
the gate's address (tansu's --advertised-listener-url) so that clients come back through the gate for every broker
connection, not only the bootstrap one.

With `sasl=False` it is a listener without SASL (Kafka's PLAINTEXT, or with `ssl`, SSL): every connection is piped
at once. An `ssl` context that demands client certificates makes it a mutual-TLS listener (ssl.client.auth=required);
the subject CN of each client certificate seen is listed in `peers`.

What it does not do: SaslHandshake v0 (raw SASL tokens without SaslAuthenticate, clients older than Kafka 1.0);
GSSAPI, OAUTHBEARER, delegation tokens and SCRAM extensions; SCRAM channel binding; re-authentication (it answers
session lifetime 0, "never expires"); authorization (an authenticated user may do anything, and the broker never
learns who it is); mutual-TLS principals (a client certificate is verified, never mapped to a user). Users are
kept as plain passwords, SCRAM credentials are derived at each login with 4096 iterations. Runs its own event loop in
a thread, like tests.helpers.TcpProxy, so it serves in-process code and subprocess hubs alike.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import socket
import ssl as _ssl
import struct
import threading
from typing import Any

SASL_HANDSHAKE, SASL_AUTHENTICATE, API_VERSIONS = 17, 36, 18
NONE, UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED = 0, 33, 34, 58
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
FRAME_LIMIT = 100 * 1024 * 1024
FAILED_AUTHENTICATION_DELAY = 0.1


class AuthFailed(Exception):
    """A refused login; the message is what the client is told (Kafka's wording)."""


# ---- wire helpers ---------------------------------------------------------------------------------------------


def _uvarint(data: bytes, at: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _put_uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _skip_tags(data: bytes, at: int) -> int:
    count, at = _uvarint(data, at)
    for _ in range(count):
        _tag, at = _uvarint(data, at)
        size, at = _uvarint(data, at)
        at += size
    return at


def _header(frame: bytes) -> tuple[int, int, int, int]:
    """api_key, api_version, correlation_id and where the body starts (request header v1; v2 if flexible)."""
    api_key, api_version, correlation_id, client_len = struct.unpack_from(">hhih", frame, 0)
    at = 10 + max(client_len, 0)
    if api_key == SASL_AUTHENTICATE and api_version >= 2:
        at = _skip_tags(frame, at)
    return api_key, api_version, correlation_id, at


def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _compact_string(value: str | None) -> bytes:
    if value is None:
        return b"\x00"
    raw = value.encode()
    return _put_uvarint(len(raw) + 1) + raw


async def _read_frame(reader: asyncio.StreamReader) -> bytes | None:
    try:
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        if not 0 <= size <= FRAME_LIMIT:
            return None
        return await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def _frame(correlation_id: int, body: bytes, flexible: bool = False) -> bytes:
    header = struct.pack(">i", correlation_id) + (b"\x00" if flexible else b"")
    return struct.pack(">i", len(header) + len(body)) + header + body


# ---- mechanisms ------------------------------------------------------------------------------------------------


class Plain:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.done = False
        self.user = ""

    def step(self, token: bytes) -> bytes:
        try:
            _authzid, user, password = token.decode().split("\x00")
        except ValueError:
            raise AuthFailed("Authentication failed: Invalid SASL/PLAIN response") from None
        expected = self.users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            raise AuthFailed("Authentication failed: Invalid username or password")
        self.done = True
        self.user = user
        return b""


class Scram:
    """The server side of RFC 5802 SCRAM (no channel binding), with credentials made from the users' passwords."""

    ITERATIONS = 4096

    def __init__(self, mechanism: str, users: dict[str, str]) -> None:
        self.mechanism = mechanism
        self.hash = _HASHES[mechanism]
        self.users = users
        self.done = False
        self.user = ""
        self._stage = 0
        self._failed = False

    def _h(self, data: bytes) -> bytes:
        return hashlib.new(self.hash, data).digest()

    def _hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, self.hash).digest()

    def _fail(self) -> AuthFailed:
        return AuthFailed(
            f"Authentication failed during authentication due to invalid credentials with SASL mechanism "
            f"{self.mechanism}"
        )

    def step(self, token: bytes) -> bytes:
        text = token.decode("utf-8", "replace")
        if self._stage == 0:
            return self._first(text)
        if self._stage == 1:
            return self._final(text)
        raise AuthFailed("Authentication failed: unexpected SCRAM message")

    def _first(self, client_first: str) -> bytes:
        parts = client_first.split(",", 2)
        if len(parts) != 3 or parts[0] not in ("n", "y"):
            raise AuthFailed("Authentication failed: invalid SCRAM client-first message (channel binding?)")
        self._gs2 = f"{parts[0]},{parts[1]},"
        self._bare = parts[2]
        fields = dict(item.split("=", 1) for item in self._bare.split(",") if "=" in item)
        user = fields.get("n", "").replace("=2C", ",").replace("=3D", "=")
        client_nonce = fields.get("r")
        if not user or not client_nonce:
            raise AuthFailed("Authentication failed: invalid SCRAM client-first message")
        self.user = user
        password = self.users.get(user)
        self._salt = os.urandom(16)
        if password is None:  # as Kafka: carry on with made-up credentials and fail at the proof
            self._failed = True
            salted = os.urandom(64)
        else:
            salted = hashlib.pbkdf2_hmac(self.hash, password.encode(), self._salt, self.ITERATIONS)
        self._stored_key = self._h(self._hmac(salted, b"Client Key"))
        self._server_key = self._hmac(salted, b"Server Key")
        self._nonce = client_nonce + secrets.token_hex(16)
        self._server_first = f"r={self._nonce},s={base64.b64encode(self._salt).decode()},i={self.ITERATIONS}"
        self._stage = 1
        return self._server_first.encode()

    def _final(self, client_final: str) -> bytes:
        cut = client_final.rfind(",p=")
        if cut < 0:
            raise self._fail()
        without_proof = client_final[:cut]
        fields = dict(item.split("=", 1) for item in without_proof.split(",") if "=" in item)
        if fields.get("r") != self._nonce or fields.get("c") != base64.b64encode(self._gs2.encode()).decode():
            raise self._fail()
        try:
            proof = base64.b64decode(client_final[cut + 3 :], validate=True)
        except ValueError:
            raise self._fail() from None
        auth_message = f"{self._bare},{self._server_first},{without_proof}".encode()
        signature = self._hmac(self._stored_key, auth_message)
        if len(proof) != len(signature):
            raise self._fail()
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if self._failed or not hmac.compare_digest(self._h(client_key), self._stored_key):
            raise self._fail()
        self._stage = 2
        self.done = True
        return f"v={base64.b64encode(self._hmac(self._server_key, auth_message)).decode()}".encode()


# ---- the gate --------------------------------------------------------------------------------------------------


class SaslGate:
    """Listens on 127.0.0.1:`port`; authenticates each connection, then pipes it to 127.0.0.1:`upstream_port`."""

    def __init__(
        self,
        upstream_port: int,
        users: dict[str, str],
        *,
        mechanisms: tuple[str, ...] = MECHANISMS,
        port: int = 0,
        ssl: _ssl.SSLContext | None = None,
        sasl: bool = True,
        upstream_host: str = "127.0.0.1",
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.users = dict(users)
        self.mechanisms = mechanisms
        self.ssl = ssl
        self.sasl = sasl
        self.failures: list[tuple[str, str]] = []
        """(mechanism, message) of each refused authentication, for assertions."""
        self.successes: list[tuple[str, str]] = []
        """(mechanism, user) of each accepted authentication."""
        self.peers: list[str] = []
        """The subject CN of each client certificate a TLS connection presented."""
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port = self._sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._writers: set[Any] = set()
        self._loop = asyncio.new_event_loop()
        self._server: Any = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="sasl-gate")
        self._thread.start()
        self._call(self._listen())

    def set_user(self, user: str, password: str) -> None:
        """Create or change a user (takes effect for the next authentication)."""
        self.users[user] = password

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, sock=self._sock, ssl=self.ssl)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        opened: list[asyncio.StreamWriter] = []
        try:
            self._note_peer(writer)
            upstream = await self._authenticate(reader, writer, opened) if self.sasl else await self._upstream(opened)
            if upstream is not None:
                await self._pipe(reader, writer, *upstream)
        except (OSError, struct.error, IndexError, ValueError, asyncio.CancelledError):
            pass  # a client or broker that went away, or a malformed request: Kafka closes the connection too
        finally:
            for w in (writer, *opened):
                self._writers.discard(w)
                w.close()

    def _note_peer(self, writer: asyncio.StreamWriter) -> None:
        certificate = writer.get_extra_info("peercert")
        for rdn in (certificate or {}).get("subject", ()):
            self.peers.extend(value for key, value in rdn if key == "commonName")

    async def _upstream(self, opened: list[asyncio.StreamWriter]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        up = await asyncio.open_connection(*self.upstream)
        self._writers.add(up[1])
        opened.append(up[1])
        return up

    async def _authenticate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, opened: list[asyncio.StreamWriter]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Serve the pre-authentication requests; the upstream connection once authenticated, else None (the
        caller closes what was opened, listed in `opened`)."""
        upstream = None
        mechanism: Plain | Scram | None = None
        mechanism_name = ""
        while True:
            frame = await _read_frame(reader)
            if frame is None:
                return None
            api_key, api_version, correlation_id, at = _header(frame)
            if api_key == API_VERSIONS and mechanism is None:
                upstream = upstream or await self._upstream(opened)
                upstream[1].write(struct.pack(">i", len(frame)) + frame)
                await upstream[1].drain()
                answer = await _read_frame(upstream[0])
                if answer is None:
                    return None
                writer.write(struct.pack(">i", len(answer)) + answer)
                await writer.drain()
            elif api_key == SASL_HANDSHAKE and mechanism is None:
                (size,) = struct.unpack_from(">h", frame, at)
                mechanism_name = frame[at + 2 : at + 2 + size].decode()
                known = mechanism_name in self.mechanisms
                body = struct.pack(">h", NONE if known else UNSUPPORTED_SASL_MECHANISM)
                body += struct.pack(">i", len(self.mechanisms)) + b"".join(_string(m) for m in self.mechanisms)
                writer.write(_frame(correlation_id, body))
                await writer.drain()
                if not known:
                    return None
                if api_version < 1:
                    return None  # raw-token SASL (handshake v0) is not served
                mechanism = Plain(self.users) if mechanism_name == "PLAIN" else Scram(mechanism_name, self.users)
            elif api_key == SASL_AUTHENTICATE and mechanism is not None:
                flexible = api_version >= 2
                if flexible:
                    size, at = _uvarint(frame, at)
                    token = frame[at : at + size - 1]
                else:
                    (size,) = struct.unpack_from(">i", frame, at)
                    token = frame[at + 4 : at + 4 + size]
                try:
                    reply, error, message = mechanism.step(token), NONE, None
                except AuthFailed as exc:
                    reply, error, message = b"", SASL_AUTHENTICATION_FAILED, str(exc)
                    self.failures.append((mechanism_name, message))
                if flexible:
                    body = struct.pack(">h", error) + _compact_string(message) + _put_uvarint(len(reply) + 1) + reply
                    body += struct.pack(">q", 0) + b"\x00"
                else:
                    body = struct.pack(">h", error) + _string(message) + struct.pack(">i", len(reply)) + reply
                    if api_version >= 1:
                        body += struct.pack(">q", 0)  # session_lifetime_ms: no re-authentication
                writer.write(_frame(correlation_id, body, flexible))
                await writer.drain()
                if error:
                    # Kafka closes after connection.failed.authentication.delay.ms (100 ms by default)
                    await asyncio.sleep(FAILED_AUTHENTICATION_DELAY)
                    return None
                if mechanism.done:
                    self.successes.append((mechanism_name, mechanism.user))
                    return upstream or await self._upstream(opened)
            else:
                # Kafka: any other request before authentication is an illegal SASL state; the connection closes.
                return None

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def close(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._call(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
