"""The admin endpoint of a running hub: /status, /metrics, /healthz, with no secret in any of them."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

from tests.helpers import HubProcess, read_jsonl, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_status_metrics_and_health(tmp_path: Path) -> None:
    port, dead = free_port(), free_port()
    out = tmp_path / "calls.jsonl"
    config = {
        "checkpoints": "memory://",
        "admin": {"listen": f"127.0.0.1:{port}"},
        "functions": {"f": {"handler": "functions.recorder.record"}},
        "mappings": [
            {"name": "inbox", "function": "f", "source": {"type": "files", "path": str(tmp_path / "in")}},
            {
                "name": "broken",
                "function": "f",
                "source": {"type": "redis", "url": f"redis://:admin-s3cret@127.0.0.1:{dead}/0", "stream": "s"},
            },
        ],
    }
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start(ready="admin endpoint")
        hub.wait_log("watching")
        (tmp_path / "in" / "a.txt").write_text("x")
        wait_for(lambda: read_jsonl(out), what="the invocation")
        base = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: json.loads(get(f"{base}/status")[1])["mappings"][1]["state"] == "reconnecting",
            what="the broken mapping to show as reconnecting",
        )
        code, body = get(f"{base}/status")
        status = json.loads(body)
        inbox, broken = status["mappings"]
        assert code == 200
        assert inbox["state"] == "running" and inbox["lanes"] == [str(tmp_path / "in")]
        assert inbox["counters"]["invoked"] == 1 and inbox["counters"]["failed_invoke"] == 0
        assert broken["last_error"] and broken["lanes"] == []
        assert status["functions"] == [
            {"name": "f", "runtime": "python", "timeout_s": 3.0, "memory_mb": 128, "concurrency": None}
        ]
        code, text = get(f"{base}/metrics")
        assert code == 200
        assert 'aws_lambda_invoked_event_count_total{mapping="inbox"} 1.0' in text
        assert 'hub_mapping_up{mapping="broken"} 0.0' in text
        code, body = get(f"{base}/healthz")
        assert code == 503 and json.loads(body)["not_running"] == ["broken"]
        for page in ("status", "metrics", "healthz"):
            assert "admin-s3cret" not in get(f"{base}/{page}")[1]
        assert hub.stop() == 0
