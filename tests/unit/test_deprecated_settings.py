"""Deprecated settings (hub/cli.py DEPRECATED): still accepted, to no effect, and whoever sets one is told where
and what to do. `cpu_affinity` pinned the hub's processes to CPUs until measurements showed it did not make the
default configuration faster (bench/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.config import load_config


@pytest.mark.parametrize("value", ["true", "false", "[0]"])
def test_validate_accepts_cpu_affinity_and_warns_with_file_and_line(tmp_path: Path, value: str) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(f"functions: {{}}\ncpu_affinity: {value}\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: valid" in result.stdout
    assert result.stderr.splitlines() == [
        f"warning: {path}:2:15: cpu_affinity: deprecated and ignored: the hub no longer pins its processes to CPUs "
        "(measured, it did not make the default configuration faster); delete the setting"
    ]


def test_a_configuration_without_it_gets_no_warning(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text("functions: {}\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert load_config(path, env={}).cpu_affinity is False
