"""Every bad configuration under tests/bad_configs, through the real `hub validate`.

Each file starts with comment lines: `# expect: LINE:COL: field: message` (one per error the hub must report;
the message may be cut short), `# env: NAME=value` (variables the file substitutes) and `# secret: VALUE` (text
that must appear in no output). `empty.yaml` cannot hold comments (a comment is content enough to read it as
"only comments"), so its expectation is kept here. For each file: exit status 2, each expected error as
`error: FILE:LINE:COL: field: message`, the file's verdict, no traceback and no secret. Brokers named by the files
are `${PROBE_ADDR}`, a listening socket of this test that no bad configuration may connect to.

The files run in a few `hub validate` processes of many files each (the real command, as a user runs it), and
each one again alone, in-process through click's runner, for its own exit status.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.config import load_config
from tests.helpers import ROOT

CORPUS = ROOT / "tests" / "bad_configs"
WITHOUT_HEADER = {"empty.yaml": ["1:1: the configuration is empty"]}
PER_PROCESS = 30


@dataclass
class Case:
    path: Path
    expects: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The path as given to the command, and so as every error names it."""
        return str(self.path.relative_to(ROOT))


def _read(path: Path) -> Case:
    case = Case(path, list(WITHOUT_HEADER.get(path.name, [])))
    for raw in path.read_bytes().splitlines():
        if not raw.startswith(b"#"):
            break
        line = raw.decode("utf-8")
        key, _, value = line.removeprefix("#").strip().partition(": ")
        if key == "expect":
            case.expects.append(value)
        elif key == "env":
            name, _, text = value.partition("=")
            case.env[name] = text
        elif key == "secret":
            case.secrets.append(value)
    return case


CASES = [_read(path) for path in sorted(CORPUS.glob("*.yaml"))]


def test_the_corpus_is_large_and_every_file_expects_something() -> None:
    assert len(CASES) >= 60
    for case in CASES:
        assert case.expects, f"{case.name}: no `# expect:` line"
        for expect in case.expects:
            line, column, rest = expect.split(":", 2)
            assert line.isdigit() and column.isdigit() and rest.startswith(" "), f"{case.name}: {expect!r}"


@pytest.fixture(scope="module")
def probe() -> Iterator[socket.socket]:
    """A listening socket standing for every broker the files name: nothing may connect to it."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        yield server


def _untouched(probe: socket.socket) -> None:
    try:
        connection, _ = probe.accept()
    except BlockingIOError:
        return
    connection.close()
    raise AssertionError("a bad configuration connected to a broker")


def _address(probe: socket.socket) -> str:
    return f"127.0.0.1:{probe.getsockname()[1]}"


def _environment(probe: socket.socket) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CORPUS_", "NO_SUCH_"))}
    env["PROBE_ADDR"] = _address(probe)
    for case in CASES:
        env.update(case.env)
    return env


@pytest.fixture(scope="module")
def validated(probe: socket.socket) -> dict[str, tuple[int, str]]:
    """{file: (exit status of its process, what was printed about it)}, from `hub validate` processes each
    given many files."""
    env = {**_environment(probe), "PYTHONPATH": str(ROOT)}
    out: dict[str, tuple[int, str]] = {}
    for start in range(0, len(CASES), PER_PROCESS):
        names = [case.name for case in CASES[start : start + PER_PROCESS]]
        result = subprocess.run(
            [sys.executable, "-m", "hub", "validate", *names],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "Traceback" not in result.stderr + result.stdout, result.stderr
        block: list[str] = []
        for line in result.stderr.splitlines():
            block.append(line)
            for name in names:
                if line == f"{name}: configuration not valid":
                    out[name] = (result.returncode, "\n".join(block))
                    block = []
        assert not block, f"lines about no file: {block}"
    return out


@pytest.mark.parametrize("case", CASES, ids=[case.path.name for case in CASES])
def test_a_bad_configuration_exits_2_naming_file_line_and_field(
    case: Case, validated: dict[str, tuple[int, str]], probe: socket.socket
) -> None:
    assert case.name in validated, f"{case.name}: no verdict from hub validate"
    status, printed = validated[case.name]
    assert status == 2
    errors = [line for line in printed.splitlines() if line.startswith("error: ")]
    assert errors and all(line.startswith(f"error: {case.name}:") for line in errors), printed
    for expect in case.expects:
        assert any(line.startswith(f"error: {case.name}:{expect}") for line in errors), f"{expect!r}\n{printed}"
    for secret in case.secrets:
        assert secret not in printed

    # the same file alone, in-process: its own exit status, and no exception but the exit
    alone = CliRunner().invoke(main, ["validate", case.name], env=_environment(probe))
    assert alone.exit_code == 2, alone.output
    assert isinstance(alone.exception, SystemExit)
    assert "Traceback" not in alone.output
    assert all(secret not in alone.output for secret in case.secrets)
    _untouched(probe)


def test_the_secret_of_the_corpus_is_the_password_exactly(tmp_path: Path, probe: socket.socket) -> None:
    """sub_secret_stays_text.yaml's password (`@S3CR3T-[x #2`) would once have been parsed again as YAML: a crash
    that printed it. Now it is the password, exactly as given, and the file's only problem is the missing
    topic: given one, it loads."""
    (case,) = [case for case in CASES if case.path.name == "sub_secret_stays_text.yaml"]
    fixed = tmp_path / "hub.yaml"
    fixed.write_text(
        case.path.read_text().replace("starting_position: LATEST", "topic: t\n      starting_position: LATEST")
    )
    config = load_config(fixed, env={**case.env, "PROBE_ADDR": _address(probe)})
    (secret,) = case.secrets
    assert config.mappings[0].source.sasl_password.get_secret_value() == secret
