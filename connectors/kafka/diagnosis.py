"""Why a Kafka client could not bootstrap: aiokafka says only "Unable to bootstrap", so `raise_for_configuration`
connects again, a server at a time, to tell a refused SASL login or a TLS problem of configuration from a broker
that is away."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from typing import Any

from connectors.kafka.config import KafkaAuthenticationError, KafkaConnection, KafkaTlsError

DIAGNOSIS_TIMEOUT = 10.0
"""Longest time `raise_for_configuration` spends connecting again, over all bootstrap servers."""


async def raise_for_configuration(config: KafkaConnection, options: dict[str, Any]) -> None:
    """Raise KafkaAuthenticationError if a bootstrap server refuses the SASL login of `options`, KafkaTlsError if
    TLS with it fails for a reason of configuration; else return.

    For a client that could not bootstrap: aiokafka's bootstrap logs each server's answer but raises only "Unable to
    bootstrap from [...]", so this connects once more, a server at a time, to learn why (one more refused login per
    failed start). TLS failures it names: the broker's certificate fails verification (not signed by the CA of
    ssl_cafile, or of the system without it; not for the host; expired), the handshake fails or the broker hangs up
    right after it (a listener without TLS, a client certificate missing or refused), and a PLAINTEXT or
    SASL_PLAINTEXT client talking to a TLS listener. Unreachable servers are not diagnosed: it returns and the
    caller re-raises its own error. The message names the user and the mechanism, never the password.
    """
    from aiokafka.conn import create_conn
    from aiokafka.errors import (
        AuthenticationFailedError,
        IllegalSaslStateError,
        KafkaError,
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
    )

    refused = (
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
        IllegalSaslStateError,
        AuthenticationFailedError,
    )
    connection = {name: value for name, value in options.items() if name != "bootstrap_servers"}
    transport = "TLS" if config.security_protocol == "SASL_SSL" else "plain TCP"
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DIAGNOSIS_TIMEOUT):
            for server in config.servers:
                host, _, port = server.rpartition(":")
                try:
                    conn = await create_conn(host, int(port), **connection)
                except refused as exc:
                    raise KafkaAuthenticationError(
                        f"SASL authentication failed for user {config.sasl_username!r} with mechanism "
                        f"{config.sasl_mechanism} at {server} ({exc}); check the credentials (sasl_username, "
                        f"sasl_password), sasl_mechanism (the broker must hold the user's credentials for it) and "
                        f"security_protocol ({config.security_protocol}: a SASL listener over {transport})"
                    ) from exc
                except ssl.SSLCertVerificationError as exc:
                    raise KafkaTlsError(_unverified(config, server, exc)) from exc
                except (ConnectionRefusedError, socket.gaierror, TimeoutError):  # unreachable: the caller's error
                    continue
                except (OSError, KafkaError) as exc:  # it connected, then something failed: was it TLS?
                    if config.security_protocol.endswith("SSL"):
                        problem = await _tls_problem(config, server, options["ssl_context"])
                    else:
                        problem = await _speaks_tls(config, server)
                    if problem is not None:
                        raise KafkaTlsError(problem) from exc
                    continue
                conn.close()  # it connects and logs in now: whatever failed the bootstrap was not that
                return


def _unverified(config: KafkaConnection, server: str, exc: ssl.SSLCertVerificationError) -> str:
    if exc.verify_code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
        fix = (
            "connect by a name the brokers' certificates hold (bootstrap_servers and the brokers' advertised listeners)"
        )
    elif config.ssl_cafile is None:
        fix = "ssl_cafile is not set, so only CAs the system trusts are accepted: set it to the PEM file of the CA "
        fix += "that signed the brokers' certificates"
    else:
        fix = f"is ssl_cafile ({config.ssl_cafile}) the CA that signed the brokers' certificates?"
    return f"TLS certificate verification failed at {server} ({exc.verify_message or exc}); {fix}"


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


_API_VERSIONS = struct.pack(">ihhih", 14, 18, 0, 1, 4) + b"diag"
"""An ApiVersions v0 request, which every Kafka listener answers before any authentication."""


async def _tls_problem(config: KafkaConnection, server: str, context: ssl.SSLContext) -> str | None:
    """What keeps a TLS connection to `server` from an answer to ApiVersions; None if it gets one or never connects.

    A broker that demands a client certificate refuses one that is missing or not trusted during the handshake with
    TLS 1.2, but after it with TLS 1.3 (the client has finished its side): both are looked for."""
    host, _, port = server.rpartition(":")
    if config.ssl_certfile is None:
        certificate = "if it demands a client certificate (mutual TLS), set ssl_certfile and ssl_keyfile"
    else:
        certificate = f"does it accept the client certificate of ssl_certfile ({config.ssl_certfile}), signed by a "
        certificate += "CA it trusts and still valid?"
    try:
        reader, writer = await asyncio.open_connection(host, int(port), ssl=context)
    except (ConnectionRefusedError, socket.gaierror):
        return None
    except OSError as exc:
        return (
            f"TLS handshake failed at {server} ({_described(exc)}); is it a TLS listener (security_protocol "
            f"{config.security_protocol})? And {certificate}"
        )
    try:
        writer.write(_API_VERSIONS)
        await writer.drain()
        answer, why = await reader.read(4), ""
    except OSError as exc:  # a TLS alert from the broker, or a reset
        answer, why = b"", f" ({_described(exc)})"
    finally:
        writer.close()
    if answer:
        return None
    return f"{server} closed the connection right after the TLS handshake, without answering{why}; {certificate}"


async def _speaks_tls(config: KafkaConnection, server: str) -> str | None:
    """A message if `server`, reached without TLS, completes a TLS handshake (certificate unchecked); else None."""
    host, _, port = server.rpartition(":")
    probe = ssl.create_default_context()
    probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE
    try:
        _, writer = await asyncio.open_connection(host, int(port), ssl=probe)
    except OSError:
        return None
    writer.close()
    with_tls = "SASL_SSL" if config.security_protocol == "SASL_PLAINTEXT" else "SSL"
    return (
        f"{server} is a TLS listener but security_protocol is {config.security_protocol}: use {with_tls}, with "
        "ssl_cafile unless a CA the system trusts signed its certificate"
    )
