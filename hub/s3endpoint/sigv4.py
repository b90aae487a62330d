"""AWS Signature Version 4, as S3 checks it: the Authorization header, or a presigned URL's query.

`verify()` recomputes the signature of a request from its method, raw path, query, the headers it signed and
its payload hash, with the one secret the endpoint knows, and raises `S3Error` (S3's codes) when it does not
match. The region and date of the credential scope are taken from the request: a client configured for any
region is accepted. The payload itself is checked by the caller against `x-amz-content-sha256` while it is
read (`payload_hash()`), since a body may be larger than memory.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

from hub.s3endpoint.store import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
MAX_SKEW = 15 * 60  # seconds, as S3 allows (RequestTimeTooSkewed)
_AUTH = re.compile(r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)")
_SPACES = re.compile(r"\s+")


def _denied(code: str, message: str) -> S3Error:
    return S3Error(403, code, message)


def verify(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    credentials: Mapping[str, str],
    now: datetime | None = None,
) -> str | None:
    """Check the request's signature with the secret of its access key id (`credentials`: {access key id:
    secret}); returns the payload hash it signed (hex SHA-256), or None when the payload is unsigned. `headers`
    must look names up case-insensitively (aiohttp's CIMultiDict)."""
    query = parse_qsl(raw_query, keep_blank_values=True)
    params = dict(query)
    if "X-Amz-Signature" in params:
        credential = params.get("X-Amz-Credential", "")
        signed_headers = params.get("X-Amz-SignedHeaders", "")
        signature = params["X-Amz-Signature"]
        amz_date = params.get("X-Amz-Date", "")
        payload = UNSIGNED
        query = [(k, v) for k, v in query if k != "X-Amz-Signature"]
        if params.get("X-Amz-Algorithm") != ALGORITHM:
            raise S3Error(400, "AuthorizationQueryParametersError", f"X-Amz-Algorithm must be {ALGORITHM}.")
    else:
        match = _AUTH.fullmatch(headers.get("Authorization", "").strip())
        if match is None:
            raise _denied("AccessDenied", "Access Denied: sign requests with Signature Version 4.")
        credential, signed_headers, signature = match.groups()
        amz_date = headers.get("x-amz-date", "")
        payload = headers.get("x-amz-content-sha256", "")
        if not payload:
            raise S3Error(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
    akid, _, scope = credential.partition("/")
    secret = credentials.get(akid)
    if secret is None:
        raise _denied("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    scope_parts = scope.split("/")
    if len(scope_parts) != 4 or scope_parts[2:] != ["s3", "aws4_request"]:
        raise S3Error(400, "AuthorizationHeaderMalformed", "The credential scope is malformed.")
    try:
        when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise _denied("AccessDenied", "The request has no valid x-amz-date.") from None
    now = now or datetime.now(UTC)
    if "X-Amz-Signature" in params:
        expires = int(params.get("X-Amz-Expires", "0") or 0)
        if (now - when).total_seconds() > expires:
            raise _denied("AccessDenied", "Request has expired")
    elif abs((now - when).total_seconds()) > MAX_SKEW:
        raise _denied(
            "RequestTimeTooSkewed", "The difference between the request time and the current time is too large."
        )
    names = signed_headers.split(";")
    canonical_headers = "".join(f"{name}:{_SPACES.sub(' ', headers.get(name, '').strip())}\n" for name in names)
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query, key=lambda kv: kv)
    )
    canonical = "\n".join([method, raw_path, canonical_query, canonical_headers, signed_headers, payload])
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in scope_parts:
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise _denied(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )
    return payload if re.fullmatch(r"[0-9a-f]{64}", payload) else None


def check_payload(signed: str | None, actual: str) -> None:
    """Raise S3's XAmzContentSHA256Mismatch when a signed payload hash is not the body's."""
    if signed is not None and not hmac.compare_digest(signed, actual):
        raise S3Error(
            400,
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
