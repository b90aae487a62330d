"""What an in-process handler prints reaches the hub's log as a worker's lines do (hub/runtimes/output.py): tagged
with the function and the request id, a line at a time, with the configuration's secrets masked; what the hub writes
itself is untouched."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.helpers import HubProcess, wait_for


@pytest.mark.parametrize("runtime", ["in-process", "python"])
def test_a_handlers_prints_are_logged_lines_tagged_and_masked(tmp_path: Path, runtime: str) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    inbox = tmp_path / "in"
    inbox.mkdir()
    config = {
        "checkpoints": "memory://",
        "shutdown_grace": "2s",
        "s3_endpoint": {"secret_access_key": secret},  # a function without `aws:` gets these credentials
        "functions": {"leaky": {"handler": "functions.secrets_testing.leaks", "runtime": runtime}},
        "mappings": [
            {
                "name": "m",
                "function": "leaky",
                "maximum_retry_attempts": 0,
                "source": {"type": "files", "path": str(inbox)},
            }
        ],
    }
    with HubProcess(tmp_path, config) as hub:
        hub.start("--log-format", "json")
        (inbox / "a.txt").write_text("x")
        wait_for(lambda: "leaking now" in hub.log(), 30, "the handler's print")
        assert hub.stop() == 0
        log = hub.log()
    assert secret not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    (printed,) = [line for line in lines if "leaking now" in line["message"]]
    assert printed["message"] == "leaking now: secret is *** token is "
    assert printed["logger"] == "hub.function" and printed["function"] == "leaky"
    assert len(printed["request_id"]) == 36  # the invocation's, as Lambda's log lines carry it
