"""The `postgres` connector in the hub as a real process, against the machine's PostgreSQL: a SIGKILL mid-stream,
restarts, a failing function (bisect, the destination), partial batch responses with filters, tumbling windows.
Each test has a database of its own."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.parser.models.dynamodb import DynamoDBStreamLambdaOnFailureDestinationModel

from tests.helpers import ROOT, HubProcess, read_jsonl, run_cli, shape, wait_for
from tests.integration.test_postgres import ORDERS, sql


def hub_config(
    tmp: Path,
    url: str,
    mapping: dict[str, Any] | None = None,
    handler: str = "functions.testing.row_changes",
    **source: Any,
) -> dict[str, Any]:
    return {
        "checkpoints": f"sqlite:///{tmp / 'state.db'}",
        "shutdown_grace": "5s",
        "functions": {"f": {"handler": handler, "timeout": "30s"}},
        "mappings": [
            {
                "name": "orders",
                "function": "f",
                "retry_delay": "10ms",
                "source": {"type": "postgres", "url": url, "tables": ["orders"], "status_interval": "500ms", **source},
                **(mapping or {}),
            }
        ],
    }


def start(hub: HubProcess) -> HubProcess:
    return hub.start(ready="streaming slot")


def rows(out: Path) -> list[Any]:
    """(eventName, id, note, sequence number) of every record every invocation saw, in invocation order."""
    return [tuple(row) for call in read_jsonl(out) for row in call["batch"]]


def run_sql(url: str, *statements: str) -> None:
    asyncio.run(sql(url, *statements))


def checkpointed(store_url: str) -> int:
    """The highest checkpoint in the shared store at `store_url` (0: none yet)."""

    async def read() -> int:
        import asyncpg

        base, schema = store_url.split("?schema=")
        conn = await asyncpg.connect(base, timeout=10)
        try:
            if not await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".checkpoints'):
                return 0
            values = await conn.fetch(f'SELECT value FROM "{schema}".checkpoints')
            return max((int(v["value"]) for v in values if v["value"].isdigit()), default=0)
        finally:
            await conn.close(timeout=10)

    return asyncio.run(read())


def test_hub_events_prints_the_sample() -> None:
    result = run_cli("events", "postgres")
    assert result.returncode == 0, result.stderr
    event = json.loads(result.stdout)
    assert event["Records"][0]["eventName"] == "MODIFY" and event["Records"][0]["eventSource"] == "aws:dynamodb"
    assert "postgres" in run_cli("events").stdout


def test_sigkill_mid_stream_loses_nothing_and_restarts_resume(tmp_path: Path, postgres_database: str) -> None:
    run_sql(postgres_database, ORDERS)
    out = tmp_path / "out.jsonl"
    total, batch = 400, 10
    config = hub_config(tmp_path, postgres_database, {"batch_size": batch}, lanes_per_table=2)
    writer: threading.Thread | None = None
    with HubProcess(tmp_path, config, env={"RECORDER_OUT": str(out), "SLOW_SECONDS": "0.02"}) as hub:
        start(hub)

        def write() -> None:  # one row per transaction, as an application writes them
            run_sql(postgres_database, *(f"INSERT INTO orders (id, note) VALUES ({i}, 'n')" for i in range(total)))

        writer = threading.Thread(target=write)
        writer.start()
        wait_for(lambda: len(rows(out)) >= 60, 30, "some changes before the kill")
        hub.kill()
        seen_before = {row[1] for row in rows(out)}
        assert len(seen_before) < total  # killed mid-stream
        writer.join(60)
        start(hub)
        wait_for(lambda: {row[1] for row in rows(out)} == set(range(total)), 60, "every change after the restart")
        assert hub.stop() == 0
        duplicates = len(rows(out)) - total
        assert duplicates <= 2 * batch  # at most one batch in flight per lane at the kill
        # a graceful stop confirmed everything: changes made while the hub is down arrive, nothing comes twice
        run_sql(postgres_database, "UPDATE orders SET note = 'later' WHERE id < 5", "DELETE FROM orders WHERE id = 7")
        start(hub)
        wait_for(lambda: len(rows(out)) == total + duplicates + 6, 30, "the changes made while the hub was down")
        assert hub.stop() == 0
    after = rows(out)[total + duplicates :]
    assert sorted((name, key) for name, key, _, _ in after) == [("MODIFY", i) for i in range(5)] + [("REMOVE", 7)]
    sequences = [int(seq) for _, _, _, seq in rows(out)[: total + duplicates]]
    assert len(set(sequences)) == total


def test_a_poison_row_is_bisected_out_to_the_destination_and_the_lane_moves_on(
    tmp_path: Path,
    postgres_database: str,
) -> None:
    run_sql(postgres_database, ORDERS)
    out, failures = tmp_path / "out.jsonl", tmp_path / "failures.jsonl"
    mapping = {
        "batch_size": 16,
        "maximum_batching_window": "1s",
        "bisect_batch_on_function_error": True,
        "maximum_retry_attempts": 2,
        "destination_config": {"on_failure": {"type": "file", "path": str(failures)}},
    }
    with HubProcess(tmp_path, hub_config(tmp_path, postgres_database, mapping), {"RECORDER_OUT": str(out)}) as hub:
        start(hub)
        notes = ", ".join(f"({i}, '{'poison' if i == 9 else 'ok'}')" for i in range(16))
        run_sql(postgres_database, f"INSERT INTO orders (id, note) VALUES {notes}")
        wait_for(lambda: read_jsonl(failures), 30, "the failure record")
        run_sql(postgres_database, "INSERT INTO orders (id, note) VALUES (100, 'after')")
        wait_for(lambda: any(row[1] == 100 for row in rows(out)), 30, "the lane to move on")
        assert hub.stop() == 0
    (failure,) = read_jsonl(failures)
    DynamoDBStreamLambdaOnFailureDestinationModel.model_validate(failure)
    info = failure["DDBStreamBatchInfo"]
    poison = next(row for row in rows(out) if row[1] == 9)
    assert info["batchSize"] == 1 and info["startSequenceNumber"] == info["endSequenceNumber"] == poison[3]
    assert info["shardId"] == "public.orders" and info["streamArn"].endswith("public.orders/stream/eventhub_orders")
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    good = [row[1] for call in read_jsonl(out) if all(r[2] != "poison" for r in call["batch"]) for row in call["batch"]]
    assert good == [i for i in range(16) if i != 9] + [100]  # each once, in order


def test_filters_and_partial_batch_responses_work_as_for_dynamodb(tmp_path: Path, postgres_database: str) -> None:
    run_sql(postgres_database, ORDERS)
    out, failures = tmp_path / "out.jsonl", tmp_path / "failures.jsonl"
    mapping = {
        "batch_size": 10,
        "maximum_batching_window": "1s",
        "function_response_types": ["ReportBatchItemFailures"],
        "maximum_retry_attempts": 1,
        "filter_criteria": [
            {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"note": {"S": [{"anything-but": "skip"}]}}}}
        ],
        "destination_config": {"on_failure": {"type": "file", "path": str(failures)}},
    }
    with HubProcess(tmp_path, hub_config(tmp_path, postgres_database, mapping), {"RECORDER_OUT": str(out)}) as hub:
        start(hub)
        notes = {0: "ok", 1: "skip", 2: "ok", 3: "fail", 4: "ok", 5: "ok"}
        values = ", ".join(f"({i}, '{note}')" for i, note in notes.items())
        run_sql(postgres_database, f"INSERT INTO orders (id, note) VALUES {values}", "UPDATE orders SET total = 1")
        wait_for(lambda: read_jsonl(failures), 30, "the failure record")
        assert hub.stop() == 0
        assert "filtered_out=7" in hub.log()  # the row marked skip, and the six updates
    calls = [[row[1] for row in call["batch"]] for call in read_jsonl(out)]
    assert calls == [[0, 2, 3, 4, 5], [3, 4, 5]]  # the retry starts at the reported failure
    (failure,) = read_jsonl(failures)
    assert failure["DDBStreamBatchInfo"]["batchSize"] == 3


def test_tumbling_windows_carry_state_and_end_with_a_final_invoke(tmp_path: Path, postgres_database: str) -> None:
    run_sql(postgres_database, ORDERS)
    sample = json.loads((ROOT / "tests/conformance/events/dynamodb-time-window-event.json").read_text())
    out = tmp_path / "out.jsonl"
    mapping = {"tumbling_window": "2s"}
    with HubProcess(tmp_path, hub_config(tmp_path, postgres_database, mapping), {"RECORDER_OUT": str(out)}) as hub:
        start(hub)
        run_sql(postgres_database, "INSERT INTO orders (id, note) VALUES (1, 'a'), (2, 'b')")
        wait_for(lambda: any(c["event"]["isFinalInvokeForWindow"] for c in read_jsonl(out)), 20, "the final invoke")
        assert hub.stop() == 0
    first = read_jsonl(out)[0]["event"]
    final = next(c["event"] for c in read_jsonl(out) if c["event"]["isFinalInvokeForWindow"])
    assert first.pop("state") == {} and isinstance(sample.pop("state"), dict)
    assert shape({k: v for k, v in first.items() if k != "Records"}) == shape(
        {k: v for k, v in sample.items() if k != "Records"}
    )
    assert first["shardId"] == "public.orders" and first["eventSourceARN"].endswith("/stream/eventhub_orders")
    assert final["state"] == {"rows": 2} and final["Records"] == []


def test_two_hubs_on_a_shared_store_stream_the_slot_one_at_a_time(
    tmp_path: Path, postgres_database: str, postgres_url: str
) -> None:
    """The slot's lease: one hub streams, the other waits; when the streaming hub dies, the other takes over."""
    run_sql(postgres_database, ORDERS)
    outs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    hubs = []
    for i, out in enumerate(outs):
        folder = tmp_path / f"hub-{i}"
        folder.mkdir()
        config = hub_config(folder, postgres_database)
        config["checkpoints"] = postgres_url
        config["cluster"] = {"failover_time": "2s"}
        hubs.append(HubProcess(folder, config, {"RECORDER_OUT": str(out)}).start())
    try:
        wait_for(lambda: sum("streaming slot" in hub.log() for hub in hubs) == 1, 30, "one hub streaming the slot")
        first = next(i for i, hub in enumerate(hubs) if "streaming slot" in hub.log())
        run_sql(postgres_database, *(f"INSERT INTO orders (id) VALUES ({i})" for i in range(20)))
        wait_for(lambda: {row[1] for row in rows(outs[first])} == set(range(20)), 30, "the first 20 rows")
        newest = max(int(row[3]) for row in rows(outs[first]))
        wait_for(lambda: checkpointed(postgres_url) >= newest, 30, "the first hub's checkpoint of row 19")
        assert rows(outs[1 - first]) == []  # the other hub read nothing
        assert "source failed" not in hubs[1 - first].log()  # it waits for the lease, not on the busy slot
        hubs[first].kill()
        run_sql(postgres_database, *(f"INSERT INTO orders (id) VALUES ({i})" for i in range(20, 40)))
        other = hubs[1 - first]
        wait_for(lambda: {row[1] for row in rows(outs[1 - first])} >= set(range(20, 40)), 60, "the takeover")
        assert other.stop() == 0
    finally:
        for hub in hubs:
            if hub.proc is not None and hub.proc.poll() is None:
                hub.kill()
    seen = [row[1] for out in outs for row in rows(out)]
    assert sorted(seen) == list(range(40))  # the taker starts after the dead hub's checkpoint: nothing twice
