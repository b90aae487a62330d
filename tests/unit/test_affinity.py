"""`cpu_affinity`: which CPU each process slot gets, and the configuration's checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hub import affinity
from hub.config import ConfigError, load_config


def test_slots_go_round_the_cpus_in_the_order_given() -> None:
    assert [affinity.cpu_for([3, 1], slot) for slot in range(5)] == [3, 1, 3, 1, 3]
    assert affinity.cpu_for(False, 0) is None
    assert affinity.cpu_for(True, 0) == min(os.sched_getaffinity(0))
    every = sorted(os.sched_getaffinity(0))
    assert [affinity.cpu_for(True, slot) for slot in range(len(every))] == every


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("[]", "cpu_affinity: name at least one CPU"),
        ("[-1]", "cpu_affinity: use true, false or a list of CPU numbers such as [0, 1], not [-1]"),
        ("sometimes", "cpu_affinity: use true, false or a list of CPU numbers such as [0, 1], not 'sometimes'"),
    ],
)
def test_a_bad_setting_names_file_line_and_field(tmp_path: Path, value: str, needle: str) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(f"functions: {{}}\ncpu_affinity: {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    (error,) = caught.value.errors
    assert error.startswith(f"{path}:2:"), error
    assert needle in error


def test_off_by_default(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text("functions: {}\n")
    assert load_config(path, env={}).cpu_affinity is False
