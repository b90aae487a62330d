"""The `files` connector, end to end: the hub runs as a real process over a real folder. The scenarios every
connector passes (restart, SIGKILL...) are in tests/connectors/."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, HubProcess, read_jsonl, shape, wait_for

S3_SAMPLE = json.loads((ROOT / "tests/conformance/events/s3-event.json").read_text())


def files_config(tmp: Path, handler: str = "record", **mapping: Any) -> dict[str, Any]:
    source = {"type": "files", "path": str(tmp / "inbox"), "settle_time": "200ms"}
    source.update(mapping.pop("source", {}))
    return {
        "checkpoints": f"sqlite:///{tmp / 'state.db'}",
        "shutdown_grace": "5s",
        "functions": {"fn": {"handler": f"functions.recorder.{handler}", "timeout": "10s"}},
        "mappings": [{"name": "inbox", "function": "fn", "source": source, **mapping}],
    }


def events_of(out: Path) -> list[dict[str, Any]]:
    return [entry["event"] for entry in read_jsonl(out)]


def keys_seen(out: Path) -> list[str]:
    return [r["s3"]["object"]["key"] for e in events_of(out) for r in e["Records"]]


def drop(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "calls.jsonl"


def test_dropped_file_reaches_the_function_in_s3_shape(tmp_path: Path, out: Path) -> None:
    with HubProcess(tmp_path, files_config(tmp_path), {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        hub.wait_log("watching")
        content = b"a happy face\n" * 100
        drop(tmp_path / "inbox" / "Happy Face.jpg", content)
        wait_for(lambda: events_of(out), what="the invocation")
        (event,) = events_of(out)
        assert shape(event) == shape(S3_SAMPLE)
        (record,) = event["Records"]
        assert record["eventName"] == "ObjectCreated:Put"
        assert record["eventSource"] == "aws:s3"
        assert record["s3"]["bucket"]["name"] == "inbox"
        assert record["s3"]["bucket"]["arn"] == "arn:aws:s3:::inbox"
        assert record["s3"]["object"]["key"] == "Happy+Face.jpg"
        assert record["s3"]["object"]["size"] == len(content)
        assert record["s3"]["object"]["eTag"] == hashlib.md5(content).hexdigest()
        assert record["s3"]["configurationId"] == "inbox"
        assert hub.stop() == 0


def test_nested_keys_prefix_suffix_and_rename_into_place(tmp_path: Path, out: Path) -> None:
    config = files_config(tmp_path, source={"prefix": "photos/", "suffix": ".jpg"})
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        hub.wait_log("watching")
        inbox = tmp_path / "inbox"
        drop(inbox / "photos" / "2026" / "a b.jpg", b"one")
        drop(inbox / "notes.txt", b"ignored: suffix")
        drop(inbox / "other" / "c.jpg", b"ignored: prefix")
        # an upload written under a temporary name, then renamed into place
        drop(inbox / "photos" / "upload.jpg.part", b"partial")
        (inbox / "photos" / "upload.jpg.part").rename(inbox / "photos" / "upload.jpg")
        wait_for(lambda: len(keys_seen(out)) >= 2, what="two invocations")
        drop(inbox / "photos" / "last.jpg", b"marker")
        wait_for(lambda: "photos/last.jpg" in keys_seen(out), what="the marker file")
        assert sorted(keys_seen(out)) == ["photos/2026/a+b.jpg", "photos/last.jpg", "photos/upload.jpg"]
        assert hub.stop() == 0


def test_restart_handles_new_files_once_and_old_files_never(tmp_path: Path, out: Path) -> None:
    config = files_config(tmp_path)
    inbox = tmp_path / "inbox"
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        hub.wait_log("watching")
        drop(inbox / "first.txt", b"1")
        wait_for(lambda: keys_seen(out) == ["first.txt"], what="first.txt")
        assert hub.stop() == 0
    # while the hub is down: one new file, one file written again (a new object), one unchanged
    drop(inbox / "while-down.txt", b"2")
    stat = (inbox / "first.txt").stat()
    drop(inbox / "first.txt", b"1 changed")
    os.utime(inbox / "first.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        wait_for(lambda: len(keys_seen(out)) >= 3, what="the files that arrived while the hub was down")
        drop(inbox / "marker.txt", b"m")
        wait_for(lambda: "marker.txt" in keys_seen(out), what="marker.txt")
        assert sorted(keys_seen(out)) == ["first.txt", "first.txt", "marker.txt", "while-down.txt"]
        assert hub.stop() == 0


def test_symlink_leading_outside_is_refused(tmp_path: Path, out: Path) -> None:
    secret = tmp_path / "outside" / "secret.txt"
    drop(secret, b"do not read")
    with HubProcess(tmp_path, files_config(tmp_path), {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        hub.wait_log("watching")
        (tmp_path / "inbox" / "link.txt").symlink_to(secret)
        hub.wait_log("refusing")
        drop(tmp_path / "inbox" / "ok.txt", b"fine")
        wait_for(lambda: "ok.txt" in keys_seen(out), what="ok.txt")
        assert keys_seen(out) == ["ok.txt"]
        assert hub.stop() == 0


def test_removed_events(tmp_path: Path, out: Path) -> None:
    config = files_config(tmp_path, source={"events": ["created", "removed"]})
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        hub.wait_log("watching")
        drop(tmp_path / "inbox" / "gone.txt", b"x")
        wait_for(lambda: keys_seen(out) == ["gone.txt"], what="the created event")
        (tmp_path / "inbox" / "gone.txt").unlink()
        wait_for(lambda: len(events_of(out)) == 2, what="the removed event")
        removed = events_of(out)[1]["Records"][0]
        assert removed["eventName"] == "ObjectRemoved:Delete"
        assert removed["s3"]["object"]["key"] == "gone.txt"
        assert "size" not in removed["s3"]["object"]
        assert hub.stop() == 0


def test_failing_function_is_retried_then_lands_in_the_file_destination(tmp_path: Path, out: Path) -> None:
    failures = tmp_path / "failures.jsonl"
    config = files_config(
        tmp_path,
        handler="fail_on_bad",
        maximum_retry_attempts=2,
        retry_delay="50ms",
        destination_config={"on_failure": {"type": "file", "path": str(failures)}},
    )
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        hub.wait_log("watching")
        drop(tmp_path / "inbox" / "bad.txt", b"poison")
        drop(tmp_path / "inbox" / "good.txt", b"fine")
        wait_for(lambda: read_jsonl(failures), what="the failure record")
        (failure,) = read_jsonl(failures)
        assert keys_seen(out).count("bad.txt") == 3  # the first attempt and two retries
        assert keys_seen(out).count("good.txt") == 1
        assert failure["version"] == "1.0"
        assert failure["requestContext"]["condition"] == "RetriesExhausted"
        assert failure["requestContext"]["approximateInvokeCount"] == 3
        assert failure["requestContext"]["functionArn"].endswith(":function:fn:$LATEST")
        assert failure["responseContext"] == {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        }
        assert failure["requestPayload"]["Records"][0]["s3"]["object"]["key"] == "bad.txt"
        assert failure["responsePayload"]["errorType"] == "ValueError"
        assert failure["responsePayload"]["errorMessage"] == "cannot process bad.txt"
        assert hub.stop() == 0
    # given up is settled: a restart does not run bad.txt again
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        drop(tmp_path / "inbox" / "marker.txt", b"m")
        wait_for(lambda: "marker.txt" in keys_seen(out), what="marker.txt")
        assert keys_seen(out).count("bad.txt") == 3
        assert hub.stop() == 0


def test_filtered_files_are_settled_counted_and_never_invoked(tmp_path: Path, out: Path) -> None:
    config = files_config(tmp_path, filter_criteria=[{"s3": {"object": {"key": [{"prefix": "keep"}]}}}])
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        hub.wait_log("watching")
        drop(tmp_path / "inbox" / "skip-me.txt", b"no")
        drop(tmp_path / "inbox" / "keep-me.txt", b"yes")
        wait_for(lambda: keys_seen(out) == ["keep-me.txt"], what="the matching file")
        assert hub.stop() == 0
        assert "filtered_out=1" in hub.log()
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        hub.wait_log("known_files=2")  # both were settled: neither is handled again
        drop(tmp_path / "inbox" / "keep-marker.txt", b"m")
        wait_for(lambda: "keep-marker.txt" in keys_seen(out), what="the marker")
        assert keys_seen(out) == ["keep-me.txt", "keep-marker.txt"]
        assert hub.stop() == 0
        assert "filtered_out=0" in hub.log()


def test_file_renamed_within_the_folder_fires_without_waiting_settle_time(tmp_path: Path, out: Path) -> None:
    """A rename is a complete file: it fires at once, even with a settle_time far longer than the wait."""
    config = files_config(tmp_path, source={"suffix": ".jpg", "settle_time": "30s", "rescan_interval": 0})
    config["functions"]["fn"]["environment"] = {"RECORDER_OUT": str(out)}
    inbox = tmp_path / "inbox"
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        hub.wait_log("watching")
        drop(inbox / "upload.jpg.tmp", b"the whole upload")  # filtered out by the suffix
        (inbox / "upload.jpg.tmp").rename(inbox / "upload.jpg")
        wait_for(lambda: keys_seen(out), timeout=10, what="the renamed file, well before settle_time")
        (event,) = events_of(out)
        assert event["Records"][0]["s3"]["object"]["key"] == "upload.jpg"
        assert event["Records"][0]["s3"]["object"]["size"] == len(b"the whole upload")
        assert hub.stop() == 0
        assert keys_seen(out) == ["upload.jpg"]


def test_file_moved_in_from_another_folder_fires_without_waiting_settle_time(tmp_path: Path, out: Path) -> None:
    config = files_config(tmp_path, source={"settle_time": "30s", "rescan_interval": 0})
    config["functions"]["fn"]["environment"] = {"RECORDER_OUT": str(out)}
    staging = tmp_path / "staging"
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        hub.wait_log("watching")
        drop(staging / "report.csv", b"a,b\n1,2\n")
        (staging / "report.csv").rename(tmp_path / "inbox" / "report.csv")
        drop(staging / "photos" / "p.jpg", b"jpeg")  # a whole folder moved in: its files are complete too
        (staging / "photos").rename(tmp_path / "inbox" / "photos")
        wait_for(lambda: len(keys_seen(out)) >= 2, timeout=10, what="the moved-in files, well before settle_time")
        assert sorted(keys_seen(out)) == ["photos/p.jpg", "report.csv"]
        # moved out: a removal, which fires nothing here (events: [created])
        (tmp_path / "inbox" / "report.csv").rename(staging / "report.csv")
        drop(staging / "marker.csv", b"m")
        (staging / "marker.csv").rename(tmp_path / "inbox" / "marker.csv")
        wait_for(lambda: "marker.csv" in keys_seen(out), timeout=10, what="the marker")
        assert hub.stop() == 0
        assert sorted(keys_seen(out)) == ["marker.csv", "photos/p.jpg", "report.csv"]


def test_a_file_name_that_is_not_utf8_is_delivered_with_its_bytes_and_handled_once(tmp_path: Path, out: Path) -> None:
    """`caf\\xe9.txt` (Latin-1) is a name Linux takes: its key is its bytes, %-encoded, and the store keeps it, so a
    restart does not deliver it again (it used to fail its record's build, and the file was never delivered)."""
    config = files_config(tmp_path)
    inbox = tmp_path / "inbox"
    inbox.mkdir(parents=True)
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        hub.wait_log("watching")
        with open(os.path.join(os.fsencode(inbox), b"caf\xe9.txt"), "wb") as f:
            f.write(b"latin-1")
        wait_for(lambda: keys_seen(out) == ["caf%E9.txt"], what="caf\\xe9.txt")
        assert hub.stop() == 0
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        drop(inbox / "marker.txt", b"m")
        wait_for(lambda: "marker.txt" in keys_seen(out), what="marker.txt")
        assert keys_seen(out) == ["caf%E9.txt", "marker.txt"]
        assert hub.stop() == 0
