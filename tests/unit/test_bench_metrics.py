"""The benchmarks that time the hub from its /metrics read metric names the hub still exposes (a renamed metric
left a benchmark waiting for a count that never came)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"""["'](aws_lambda_[a-z_]+|hub_[a-z_]+_total)["']""")


def test_every_metric_a_benchmark_reads_is_one_the_hub_exposes() -> None:
    hub_source = "\n".join(path.read_text() for path in sorted((ROOT / "hub").rglob("*.py")))
    read = {
        (path.name, name) for path in sorted((ROOT / "bench").glob("*.py")) for name in NAME.findall(path.read_text())
    }
    assert read, "no benchmark reads /metrics any more: this test looks for nothing"
    missing = [(bench, name) for bench, name in read if f'"{name.removesuffix("_total")}"' not in hub_source]
    assert missing == []
