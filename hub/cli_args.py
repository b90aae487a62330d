"""What the `hub` command's options take: JSON given inline, in a file or on standard input, and how a
command fails (a message on stderr, exit status 2, never a traceback)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from hub import redact

EXIT_CONFIG = 2
"""The exit status of a configuration or argument error."""


def fail(message: str, code: int = EXIT_CONFIG) -> NoReturn:
    """Print `message` (secrets masked) to stderr and exit with `code` (2: a configuration error)."""
    click.echo(redact.text(message), err=True)
    sys.exit(code)


def read_text(value: str, what: str) -> str:
    """The JSON text an option gives: `-` reads standard input; text that starts as a JSON object, array or
    string (`{`, `[`, `"`) is itself, and is never taken as a file name, however long; anything else is the
    file it names when there is one, else itself (`42`, `null`). Any problem exits 2, never with a traceback."""
    if value == "-":
        return sys.stdin.read()
    if value.lstrip().startswith(("{", "[", '"')):
        return value
    text = _read_file(value, what)
    if text is not None:
        return text
    try:
        json.loads(value)  # a bare JSON value: 42, true, null
    except ValueError:
        shown = value if len(value) <= 80 else f"{value[:77]}..."
        fail(f"error: {what}: no file {shown!r}, and it is not inline JSON either")
    return value


def read_json(value: str, what: str) -> Any:
    """The JSON value of an option (see read_text). JSON is read as JSON (json5 would decode an escaped
    surrogate pair such as `\\ud83d\\ude80` into two lone surrogates, not the one character); only text that
    is not JSON is tried as JSON5 (comments, trailing commas)."""
    import json5

    text = read_text(value, what)
    try:
        return json.loads(text)
    except ValueError:
        pass
    except RecursionError:
        fail(f"error: {what} is nested too deeply to read")
    try:
        return json5.loads(text)
    except ValueError as exc:
        fail(f"error: {what} is not valid JSON: {exc}")
    except RecursionError:
        fail(f"error: {what} is nested too deeply to read")


def _read_file(name: str, what: str) -> str | None:
    """The text of file `name`, or None when there is no such file or the text cannot name one (too long)."""
    path = Path(name)
    try:
        if path.is_dir():
            fail(f"error: {what}: {name!r} is a folder, not a JSON file")
        if not path.is_file():
            return None
    except OSError:  # ENAMETOOLONG and the like: no file can have this name
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        fail(f"error: {what}: cannot read {name!r}: {reason}")
