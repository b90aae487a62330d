"""The console in a real headless Chromium, against a real hub process: the page lists the mappings, its switch
disables one (with the admin token it asks for), and a replay from the page re-invokes a dead-lettered record and
removes it from the failure destination."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from tests.fixtures_redis import free_port
from tests.helpers import HubProcess, read_jsonl, wait_for

TOKEN = "console-admin-t0ken"
PASSWORD = "console-redis-pw"


def status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
        return dict(json.load(answer))


def state_of(port: int, name: str) -> str:
    answer = status(port)
    for entry in answer["mappings"] + answer["stopped_mappings"]:
        if entry["name"] == name:
            return str(entry["State"])
    raise AssertionError(f"no mapping {name}")


def hub_config(tmp_path: Path, port: int, **admin: Any) -> dict[str, Any]:
    return {
        "checkpoints": "memory://",
        "shutdown_grace": "5s",
        "admin": {"listen": f"127.0.0.1:{port}", **admin},
        "functions": {
            "picky": {
                "handler": "functions.recorder.until_marker",
                "environment": {"MARKER_FILE": str(tmp_path / "ready")},
            },
            "rec": {"handler": "functions.recorder.record"},
        },
        "mappings": [
            {
                "name": "uploads",
                "function": "picky",
                "source": {"type": "files", "path": str(tmp_path / "in")},
                "maximum_retry_attempts": 0,
                "destination_config": {"on_failure": {"type": "file", "path": str(tmp_path / "failures.jsonl")}},
            },
            {"name": "ticks", "function": "rec", "source": {"type": "schedule", "expression": "rate(1 hour)"}},
            {
                "name": "orders",
                "function": "rec",
                "enabled": False,
                "source": {"type": "redis", "url": f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0", "stream": "o"},
            },
        ],
    }


def test_the_page_lists_the_mappings_and_its_switch_disables_one(tmp_path: Path, page: Any) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with HubProcess(tmp_path, hub_config(tmp_path, port, token=TOKEN)) as hub:
        hub.start(ready="admin endpoint")
        page.goto(base + "/")
        rows = page.locator("#mappings tbody tr")
        rows.first.wait_for()
        assert rows.count() == 3
        assert sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.mapping)")) == ["orders", "ticks", "uploads"]
        assert page.locator('tr[data-mapping="orders"] [data-state]').inner_text() == "Disabled"
        assert page.locator('tr[data-mapping="ticks"] [data-state]').inner_text() == "Enabled"
        assert page.locator('input.switch[data-mapping="orders"]').is_checked() is False

        # the hub has a token: the switch asks for it, and the change goes through with it
        page.locator('input.switch[data-mapping="ticks"]').click()
        page.locator("#token-dialog").wait_for(state="visible")
        page.fill("#token-input", TOKEN)
        page.click("#token-ok")
        page.wait_for_selector('tr[data-mapping="ticks"] [data-state="Disabled"]', timeout=20000)
        assert state_of(port, "ticks") == "Disabled"
        assert page.evaluate("sessionStorage.getItem('eventhub.adminToken')") == TOKEN
        assert page.evaluate("localStorage.length") == 0  # the token stays in this tab only

        # and on again, without asking twice
        page.locator('input.switch[data-mapping="ticks"]').click()
        page.wait_for_selector('tr[data-mapping="ticks"] [data-state="Enabled"]', timeout=20000)
        assert state_of(port, "ticks") == "Enabled"

        # nothing the page shows holds a secret of the configuration
        page.locator('tr[data-mapping="orders"] button').click()
        page.locator("#detail-title").wait_for()
        html = page.content()
        assert PASSWORD not in html and TOKEN not in html
        assert hub.stop() == 0
    assert TOKEN not in hub.log()


def test_a_replay_from_the_page_reinvokes_a_dead_lettered_record_and_removes_it(tmp_path: Path, page: Any) -> None:
    port = free_port()
    out, failures = tmp_path / "calls.jsonl", tmp_path / "failures.jsonl"
    with HubProcess(tmp_path, hub_config(tmp_path, port), {"RECORDER_OUT": str(out)}) as hub:
        hub.start(ready="admin endpoint")
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / "report.csv").write_text("a,b\n1,2\n")
        wait_for(lambda: read_jsonl(failures), 30, "the failure record in the file destination")
        (record,) = read_jsonl(failures)
        assert record["requestContext"]["condition"] == "RetriesExhausted"
        assert not out.exists()  # it failed: nothing recorded yet
        (tmp_path / "ready").write_text("")  # what the function waited for is there now

        page.goto(f"http://127.0.0.1:{port}/")
        page.locator('tr[data-mapping="uploads"] button').click()
        row = page.locator("#failures tr[data-failure-id]")
        row.first.wait_for(timeout=20000)
        assert row.count() == 1
        assert "report.csv" in row.inner_text() and "not ready" in row.inner_text()
        row.locator("input.pick").check()
        page.click("#replay")
        page.wait_for_selector('#replay-text[data-state="finished"]', timeout=30000)
        assert "1 succeeded, 0 failed" in page.inner_text("#replay-text")
        page.wait_for_selector("#replay-results li[data-result=success]")
        wait_for(lambda: page.locator("#failures tr[data-failure-id]").count() == 0, 10, "the record gone")

        (call,) = read_jsonl(out)
        assert call["event"]["Records"][0]["s3"]["object"]["key"] == "report.csv"
        assert read_jsonl(failures) == []  # removed from the destination once replayed
        assert hub.stop() == 0
    assert "replay finished" in hub.log()
