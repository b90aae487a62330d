"""JSON given on the command line (`hub test-pattern --pattern/--event`, `hub invoke --event`): inline, a file or
`-`, of any length, and never a traceback.

Every EventBridge case recorded on AWS (tests/conformance/event-patterns) goes through `hub test-pattern` with
the pattern and the event inline, as a user pastes them: in-process through click's runner (the command's own
argument reading, 156 cases in one process), and the longest of them through real `hub` processes too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import json5
import pytest
from click.testing import CliRunner

from hub.cli import main
from tests.helpers import ROOT, run_cli

CASES = ROOT / "tests" / "conformance" / "event-patterns"
SAMPLES = ROOT / "tests" / "conformance" / "events"
PAIR_EVENT = "complex_multi_key_event.json"
PAIR_PATTERN = "complex_multi_key_event_pattern.json"


def _cases() -> list[tuple[str, str, str, str]]:
    """(id, pattern text, event text, expected: "true", "false" or "invalid") for every recorded case."""
    out = []
    for path in sorted(CASES.iterdir()):
        if path.name == PAIR_PATTERN:
            continue
        if path.name == PAIR_EVENT:
            # the pattern repeats a key (AWS keeps the last one): its text goes as it is
            event = json5.loads(path.read_text(encoding="utf-8"))
            pattern_text = (CASES / PAIR_PATTERN).read_text(encoding="utf-8")
            out.append((path.name, pattern_text, json.dumps(event), "true"))
            continue
        content: Any = json5.loads(path.read_text(encoding="utf-8"))
        stem = path.name.rsplit(".", 1)[0]
        expected = "invalid" if stem.endswith("_EXC") else "false" if stem.endswith("_NEG") else "true"
        out.append((path.name, json.dumps(content["EventPattern"]), json.dumps(content["Event"]), expected))
    return out


ALL = _cases()


def _outcome(exit_code: int, stdout: str, stderr: str) -> str:
    assert "Traceback" not in stdout + stderr
    if exit_code == 2 and "error: invalid pattern:" in stderr:
        return "invalid"
    assert exit_code == 0, stderr
    return stdout.strip()


def test_every_recorded_case_passes_through_hub_test_pattern() -> None:
    assert len(ALL) == 156
    assert sum(len(pattern) > 255 or len(event) > 255 for _, pattern, event, _ in ALL) >= 10
    runner = CliRunner()
    wrong = []
    for name, pattern, event, expected in ALL:
        result = runner.invoke(main, ["test-pattern", "--pattern", pattern, "--event", event])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            wrong.append(f"{name}: {result.exception!r}")
            continue
        got = _outcome(result.exit_code, result.stdout, result.stderr)
        if got != expected:
            wrong.append(f"{name}: {got} instead of {expected}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", ["arrays.json5", "arrays_NEG.json5", "complex_many_rules.json5", PAIR_EVENT])
def test_long_cases_through_the_real_command(name: str) -> None:
    (case,) = [case for case in ALL if case[0] == name]
    _, pattern, event, expected = case
    result = run_cli("test-pattern", "--pattern", pattern, "--event", event)
    assert _outcome(result.returncode, result.stdout, result.stderr) == expected


def test_a_file_and_standard_input(tmp_path: Path) -> None:
    _, pattern, event, expected = next(case for case in ALL if case[0] == "arrays.json5")
    (tmp_path / "pattern.json").write_text(pattern)
    result = run_cli("test-pattern", "--pattern", str(tmp_path / "pattern.json"), "--event", "-", stdin=event)
    assert _outcome(result.returncode, result.stdout, result.stderr) == expected == "true"


@pytest.mark.parametrize(
    ("pattern", "event", "message"),
    [
        ("no-such-file.json", "{}", "--pattern: no file 'no-such-file.json', and it is not inline JSON either"),
        ("x" * 300, "{}", "--pattern: no file 'xxxxxxxx"),  # too long for a file name: still no traceback
        ('{"a": [1]}', "/", "--event: '/' is a folder, not a JSON file"),
        ('{"a": [1]}', '{"a": ' + "1" * 300, "--event is not valid JSON"),
        ('{"a": [1]', "{}", "error: invalid pattern: (root): invalid JSON"),
        ("-", "-", "only one of --pattern and --event can be read from standard input"),
    ],
)
def test_unusable_arguments_exit_2_saying_why(pattern: str, event: str, message: str) -> None:
    result = CliRunner().invoke(main, ["test-pattern", "--pattern", pattern, "--event", event], input="{}")
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert message in result.stderr


def test_invoke_takes_a_long_event_inline() -> None:
    event = (SAMPLES / "s3-event.json").read_text()
    assert len(event) > 255
    result = run_cli("invoke", "s3_report", "--event", event, "--config", "config/hub.yaml")
    assert result.returncode == 0, result.stderr
    body = json.loads(json.loads(result.stdout)["body"])
    assert body == [{"bucket": "sourcebucket", "key": "Happy Face.jpg", "size": 1024}]
