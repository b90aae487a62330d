"""What every test shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hub import redact


@pytest.fixture(autouse=True)
def _no_secrets_from_other_tests() -> Iterator[None]:
    """The hub masks every secret a configuration it loaded holds, for the life of the process: a test that runs a
    command in-process must not mask what the next test prints."""
    yield
    redact.forget()
