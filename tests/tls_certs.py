"""Throw-away certificates for TLS tests: a CA, a server certificate for the loopback address and a client
certificate, all signed by that CA, written as PEM files in a folder the test owns.

    files = make_tls_files(tmp_path)           # files.ca, files.server_cert, files.client_cert, ...
    server = files.server_context()            # for a listener (tests.sasl_gate.SaslGate(ssl=...))
    other = make_tls_files(tmp_path / "other") # another CA: its files.ca does not verify the first server
    locked = encrypted_key(files.client_key, "pw", tmp_path / "locked.key")  # the client key, with a password

Keys are EC P-256 (made in milliseconds), certificates are valid from a minute ago for a day, the server certificate
names `localhost` and 127.0.0.1 (and ::1), the client certificate's subject is CN=`client_name`. Nothing here is
fit for anything but a test: the private keys are written unencrypted.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one throw-away CA and the certificates it signed."""

    ca: Path
    """The CA certificate: what a client trusts (the connector's ssl_cafile)."""
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_name: str
    """The client certificate's subject CN."""

    def server_context(self, *, client_certificates: bool = False) -> ssl.SSLContext:
        """A server-side context with the server certificate; `client_certificates`: demand a client certificate
        signed by this CA (mutual TLS), as a Kafka listener with ssl.client.auth=required."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert, self.server_key)
        if client_certificates:
            context.load_verify_locations(cafile=self.ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def encrypted_key(key: Path, password: str, to: Path) -> Path:
    """Write the unencrypted PEM private key `key` to `to`, encrypted with `password`; returns `to`."""
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    encryption = serialization.BestAvailableEncryption(password.encode())
    to.write_bytes(loaded.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return to


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    names: tuple[str, ...] = (),
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    """A certificate for `key`, signed by `issuer` (name and key), or self-signed when there is none."""
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    if names:
        alternatives: list[x509.GeneralName] = []
        for name in names:
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternatives.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_tls_files(
    folder: Path,
    *,
    server_names: tuple[str, ...] = SERVER_NAMES,
    client_name: str = "hub-client",
) -> TlsFiles:
    """Make a new CA in `folder` (created if missing), a server certificate for `server_names` and a client
    certificate for `client_name`, both signed by it; returns where the PEM files are."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue(f"eventhub test CA {folder.name}", ca_key, None, ca=True)
    signer = (ca_cert.subject, ca_key)
    files = TlsFiles(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
        client_name=client_name,
    )
    pem = serialization.Encoding.PEM
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(server_names[0], server_key, signer, names=server_names, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    files.server_cert.write_bytes(server.public_bytes(pem))
    _write_key(server_key, files.server_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue(client_name, client_key, signer, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    files.client_cert.write_bytes(client.public_bytes(pem))
    _write_key(client_key, files.client_key)
    return files
