"""The `s3_endpoint` setting: which folders the hub serves as buckets, and the errors a bad setting gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import ConfigError, load_config


def write(tmp: Path, text: str) -> Path:
    path = tmp / "hub.yaml"
    path.write_text(text)
    return path


FUNCTIONS = "functions:\n  fn: {handler: functions.recorder.record}\n"


def test_every_files_folder_is_a_bucket_by_default(tmp_path: Path) -> None:
    text = FUNCTIONS + (
        "mappings:\n"
        f"  - {{name: a, function: fn, source: {{type: files, path: {tmp_path}/inbox}}}}\n"
        f"  - {{name: b, function: fn, source: {{type: files, path: {tmp_path}/other, bucket: photos}}}}\n"
        f"  - {{name: c, function: fn, enabled: false, source: {{type: files, path: {tmp_path}/off}}}}\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.s3_endpoint.listen == "127.0.0.1:0"
    assert config.s3_buckets() == {"inbox": f"{tmp_path}/inbox", "photos": f"{tmp_path}/other"}


def test_no_folder_no_endpoint_and_enabled_false_turns_it_off(tmp_path: Path) -> None:
    schedule = FUNCTIONS + "mappings:\n  - {function: fn, source: {type: schedule, expression: rate(1 minute)}}\n"
    assert load_config(write(tmp_path, schedule)).s3_buckets() == {}
    text = FUNCTIONS + (
        f"s3_endpoint: {{enabled: false, buckets: {{out: {tmp_path}/out}}}}\n"
        f"mappings:\n  - {{function: fn, source: {{type: files, path: {tmp_path}/inbox}}}}\n"
    )
    assert load_config(write(tmp_path, text)).s3_buckets() == {}


def test_extra_buckets_are_served_beside_the_watched_folders(tmp_path: Path) -> None:
    text = FUNCTIONS + f"s3_endpoint: {{buckets: {{thumbnails: {tmp_path}/thumbs}}}}\n"
    assert load_config(write(tmp_path, text)).s3_buckets() == {"thumbnails": f"{tmp_path}/thumbs"}


def test_one_bucket_name_for_two_folders_is_an_error_at_its_line(tmp_path: Path) -> None:
    text = FUNCTIONS + (
        "mappings:\n"
        f"  - {{name: a, function: fn, source: {{type: files, path: {tmp_path}/x/inbox}}}}\n"
        f"  - {{name: b, function: fn, source: {{type: files, path: {tmp_path}/y/inbox}}}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert "hub.yaml:5" in str(caught.value) and "bucket 'inbox'" in str(caught.value)


@pytest.mark.parametrize(
    ("setting", "needle"),
    [("listen: nowhere", "listen"), ("buckets: {'a/b': /tmp/x}", "not a bucket name"), ("port: 9", "unknown")],
)
def test_bad_settings_are_config_errors(tmp_path: Path, setting: str, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, FUNCTIONS + f"s3_endpoint: {{{setting}}}\n"))
    assert "hub.yaml:3" in str(caught.value) and needle in str(caught.value)


def test_the_secret_never_appears_in_errors(tmp_path: Path) -> None:
    text = FUNCTIONS + "s3_endpoint: {secret_access_key: hunter2-secret, listen: bad}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert "hunter2-secret" not in str(caught.value)
