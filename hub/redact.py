"""Secrets out of everything the hub writes: log lines (both formats, tracebacks and fields included), the lines
of function workers it forwards, CLI errors and output, `/status` and `/metrics`.

The process keeps one set of secret values, the union of every configuration it loaded (`remember`): each
`SecretStr` of the validated models, the password of every URL (`redis://:pw@host`, the checkpoint store), the
value of each environment variable that an `authorization_env` names, the values of sensitively named `headers`,
and the S3 endpoint's secret once it is made. Every occurrence of one of them, in any form a log line may carry it
(as written, URL-quoted, JSON- or repr-escaped), is replaced by `***`. A secret is masked wherever it appears, so
a secret that is also an ordinary word (`test`) masks that word too: the price of never printing it.

The check is on the hot path (every log line): a plain substring test per secret comes first, and the compiled
pattern only runs on a line that holds one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, SecretStr

MASK = "***"

# names whose value is a secret in a configuration that did not validate (no SecretStr to go by yet)
_SECRET_NAME = re.compile(r"password|secret|token|access_key", re.I)
# request headers whose value is a credential
_SECRET_HEADER = re.compile(r"auth|key|token|secret|pass|cookie|credential", re.I)


class Redactor:
    """Replaces every occurrence of a set of secret values by `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._needles: tuple[str, ...] = ()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these values from now on too (empty ones are ignored)."""
        new = {s for s in secrets if s} - self._secrets
        if not new:
            return
        self._secrets |= new
        forms = {form for secret in self._secrets for form in _forms(secret)}
        # longest first: a secret that contains another is masked whole
        self._needles = tuple(sorted(forms, key=len, reverse=True))
        self._pattern = re.compile("|".join(_alternative(form) for form in self._needles))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def found_in(self, text: str) -> bool:
        """True when `text` holds one of the secrets."""
        return any(needle in text for needle in self._needles)

    def text(self, text: str) -> str:
        """`text` with every secret masked (the same object when it holds none)."""
        if self._pattern is None or not self.found_in(text):
            return text
        return self._pattern.sub(MASK, text)

    def data(self, value: Any) -> Any:
        """A copy of JSON-like data with every secret masked in its strings (keys included); other objects are
        shown as their masked text."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.data(k) if isinstance(k, str) else k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(item) for item in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.text(str(value))


SHORT = 4
"""A secret shorter than this (`e`, `pw`) is masked where it stands as a token of its own (`redis://:pw@host`,
`password pw`), not inside every word that holds its letters: masking each `e` of a line would make every message
unreadable and tell a reader the secret besides."""


def _alternative(form: str) -> str:
    if len(form) >= SHORT:
        return re.escape(form)
    return rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])"


def _forms(secret: str) -> set[str]:
    """The ways a value may be written into a line: as is, URL-quoted, and escaped by json.dumps or repr()."""
    return {secret, quote(secret, safe=""), json.dumps(secret)[1:-1], repr(secret)[1:-1]} - {""}


_active = Redactor()


def remember(secrets: Iterable[str]) -> None:
    """Mask these values in everything this process writes from now on."""
    _active.add(secrets)


def forget() -> None:
    """Forget every remembered secret (a test, or a process that will load another configuration from scratch)."""
    global _active
    _active = Redactor()


def text(value: str) -> str:
    """`value` with every remembered secret masked."""
    return _active.text(value)


def data(value: Any) -> Any:
    """JSON-like data with every remembered secret masked."""
    return _active.data(value) if _active else value


def active() -> Redactor:
    """The process's redactor, which log output and error messages go through."""
    return _active


def secrets_of(config: BaseModel, environ: Mapping[str, str] | None = None) -> set[str]:
    """Every secret value of a validated configuration: SecretStr fields of any model, URL passwords, sensitive
    header values, and the values of the environment variables (`environ`, default os.environ) that an
    `authorization_env` or a `secret_env` names."""
    return _collect(config, os.environ if environ is None else environ, by_name=False)


def secrets_in(document: Any, environ: Mapping[str, str] | None = None) -> set[str]:
    """The same from a parsed configuration that may not validate: sensitively named settings (`password`,
    `secret_access_key`, `sasl_password`, `session_token`...) stand in for SecretStr."""
    return _collect(document, os.environ if environ is None else environ, by_name=True)


def _collect(root: Any, environ: Mapping[str, str], *, by_name: bool) -> set[str]:
    found: set[str] = set()

    def walk(value: Any, name: str) -> None:
        if isinstance(value, SecretStr):
            found.add(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for field in type(value).model_fields:
                walk(getattr(value, field), field)
        elif isinstance(value, dict):
            for key, item in value.items():
                if name == "headers" and isinstance(item, str) and _SECRET_HEADER.search(str(key)):
                    found.add(item)
                walk(item, str(key))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, name)
        elif isinstance(value, str):
            if name in ("authorization_env", "secret_env"):
                found.add(environ.get(value, ""))
            elif by_name and _SECRET_NAME.search(name):
                found.add(value)
            found.update(url_passwords(value))
        elif by_name and value is not None and _SECRET_NAME.search(name) and not isinstance(value, bool):
            found.add(str(value))  # a number where a password goes is still the password

    walk(root, "")
    found.discard("")
    return found


def url_passwords(value: str) -> set[str]:
    """The password of a URL such as `redis://:pw@host:6379/0`, as written and decoded; empty for other text."""
    if "://" not in value or "@" not in value:
        return set()
    try:
        password = urlsplit(value.strip()).password
    except ValueError:
        return set()
    return {password, unquote(password)} if password else set()
