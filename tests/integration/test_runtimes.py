"""Function runtimes with real processes and real local servers: a function that crashes, hangs or eats memory
is a failed invocation with the reason, never a dead hub."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hub.config import FunctionConfig
from hub.functions import Function
from hub.invocations import Activity
from tests.helpers import HubProcess, read_jsonl, wait_for


def function_of(handler: str, runtime: str = "process", **settings: Any) -> Function:
    """A function of functions/testing.py (2 s timeout unless set)."""
    config = FunctionConfig(runtime=runtime, handler=f"functions.testing.{handler}", **{"timeout": 2, **settings})
    return Function("fn", config, region="us-east-1", account_id="000000000000")


def process_fn(handler: str, **settings: Any) -> Function:
    return function_of(handler, "process", **settings)


def python_fn(handler: str, **settings: Any) -> Function:
    return function_of(handler, "in-process", **settings)


@pytest.mark.parametrize(
    ("handler", "error_type", "message"),
    [
        ("exits", "Runtime.ExitError", "Runtime exited with error: exit status 1"),
        ("segfaults", "Runtime.ExitError", "Runtime exited with error: signal: segmentation fault"),
        ("spins", "Sandbox.Timedout", "Task timed out after 1.00 seconds"),
        ("eats_memory", "Runtime.OutOfMemory", "more than its memory limit (128 MB)"),
        ("returns_garbage", "Runtime.MarshalError", "Unable to marshal response"),
        ("returns_too_deep", "Runtime.MarshalError", "Unable to marshal response"),
        ("raises", "KeyError", "'missing'"),
    ],
)
async def test_a_faulty_function_is_a_failed_invocation_and_the_next_gets_a_working_worker(
    handler: str, error_type: str, message: str
) -> None:
    fn = process_fn(handler, timeout=1)
    await fn.start()
    try:
        first = await fn.invoke({"n": 1})
        assert not first.ok
        assert first.payload["errorType"] == error_type
        assert message in first.payload["errorMessage"]
        assert set(first.payload) >= {"errorMessage", "errorType", "stackTrace"}
        second = await fn.invoke({"n": 2})  # a fresh worker answers again, with the same reason
        assert second.payload["errorType"] == error_type
    finally:
        await fn.close()


@pytest.mark.parametrize(
    ("handler", "error_type", "message"),
    [
        ("calls_sys_exit", "SystemExit", "3"),
        ("hangs", "Sandbox.Timedout", "Task timed out after 0.20 seconds"),
        ("returns_garbage", "Runtime.MarshalError", "Unable to marshal response"),
        ("returns_too_deep", "Runtime.MarshalError", "Unable to marshal response"),
        ("raises", "KeyError", "'missing'"),
    ],
)
async def test_an_in_process_handler_that_fails_is_a_failed_invocation(
    handler: str, error_type: str, message: str
) -> None:
    fn = python_fn(handler, timeout=0.2)
    await fn.start()
    try:
        for n in range(2):  # and the function's threads still serve the next call
            result = await fn.invoke({"n": n})
            assert not result.ok
            assert result.payload["errorType"] == error_type
            assert message in result.payload["errorMessage"]
    finally:
        await fn.close()


@pytest.mark.parametrize("handler", ["notes_its_thread", "async_notes_overlap"])
async def test_an_in_process_function_runs_one_invocation_at_a_time_as_on_lambda(handler: str) -> None:
    fn = python_fn(handler, concurrency=3)
    await fn.start()
    try:
        results = await asyncio.gather(*(fn.invoke({"n": n}) for n in range(20)))
        assert all(r.ok for r in results)
        assert max(r.payload["overlap"] for r in results) == 1
    finally:
        await fn.close()


async def test_in_process_concurrency_is_an_opt_in_that_enters_the_handler_from_several_threads() -> None:
    fn = python_fn("notes_its_thread", in_process_concurrency=3)
    await fn.start()
    try:
        results = await asyncio.gather(*(fn.invoke({"n": n}) for n in range(30)))
        assert all(r.ok for r in results)
        threads = {r.payload["thread"] for r in results}
        assert 1 < len(threads) <= 3 and all(
            name.startswith("fn-functions.testing.notes_its_thread") for name in threads
        )
        assert 1 < max(r.payload["overlap"] for r in results) <= 3
    finally:
        await fn.close()


async def test_workers_are_warm_isolated_and_replaced_after_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_SECRET", "do-not-leak")
    fn = process_fn("env_and_logs", environment={"GREETING": "hi"}, memory=256, concurrency=1)
    await fn.start()
    crash = process_fn("exits")
    await crash.start()
    try:
        first, second = await fn.invoke({}), await fn.invoke({})
        assert first.ok and second.ok
        assert first.payload["pid"] == second.payload["pid"]  # warm: the handler was imported once
        assert first.payload["env"] == {"GREETING": "hi", "HUB_SECRET": None, "AWS_LAMBDA_FUNCTION_NAME": "fn"}
        assert first.payload["memory"] == 256
        assert 0 < first.payload["remaining"] <= 2000
        worker = fn.runtime._idle[0]  # type: ignore[attr-defined]
        worker.proc.kill()
        await worker.proc.wait()
        third = await fn.invoke({})
        assert third.ok and third.payload["pid"] != first.payload["pid"]
        assert not (await crash.invoke({})).ok
    finally:
        await fn.close()
        await crash.close()


async def test_a_handler_that_cannot_be_imported_fails_at_start() -> None:
    from hub.runtimes.python import HandlerLoadError

    fn = Function(
        "fn",
        FunctionConfig(runtime="process", handler="functions.nope.handler"),
        region="us-east-1",
        account_id="000000000000",
    )
    with pytest.raises(HandlerLoadError, match=r"ModuleNotFoundError|ImportModuleError"):
        await fn.start()


def test_the_hub_keeps_serving_other_mappings_while_a_function_crashes(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    config = {
        "checkpoints": "memory://",
        "functions": {
            "crasher": {"runtime": "process", "handler": "functions.testing.segfaults", "timeout": "2s"},
            "good": {
                "runtime": "process",
                "handler": "functions.recorder.record",
                "timeout": "2s",
                "environment": {"RECORDER_OUT": str(out)},
            },
        },
        "mappings": [
            {
                "name": "crash",
                "function": "crasher",
                "source": {"type": "schedule", "expression": "rate(1 second)"},
                "maximum_retry_attempts": 0,
            },
            {
                "name": "good",
                "function": "good",
                "source": {"type": "files", "path": str(tmp_path / "in"), "settle_time": "100ms"},
            },
        ],
    }
    with HubProcess(tmp_path, config) as hub:
        hub.start()
        hub.wait_log("segmentation fault")
        for i in range(3):
            (tmp_path / "in").mkdir(exist_ok=True)
            (tmp_path / "in" / f"f{i}.txt").write_text("x")
        wait_for(lambda: len(read_jsonl(out)) == 3, what="three files handled while the other function crashes")
        hub.wait_log("segmentation fault")
        assert hub.stop() == 0


# ---- http ------------------------------------------------------------------------------------------------------


async def serve(handler: Any) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_http_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    async def endpoint(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append({"body": body, "headers": dict(request.headers), "path": request.path})
        if body.get("mode") == "fail":
            return web.Response(status=502, text="bad gateway")
        if body.get("mode") == "slow":
            await asyncio.sleep(5)
        if body.get("mode") == "text":
            return web.Response(text="not json")
        return web.json_response({"ok": True, "echo": body})

    runner, url = await serve(endpoint)
    monkeypatch.setenv("FN_TOKEN", "Bearer t0ken")
    config = FunctionConfig(
        runtime="http", url=f"{url}/invoke", timeout=1, headers={"X-Team": "data"}, authorization_env="FN_TOKEN"
    )
    fn = Function("web", config, region="us-east-1", account_id="000000000000")
    await fn.start()
    try:
        ok = await fn.invoke({"mode": "ok", "n": 1})
        assert ok.ok and ok.payload == {"ok": True, "echo": {"mode": "ok", "n": 1}}
        headers = seen[0]["headers"]
        assert headers["Authorization"] == "Bearer t0ken" and headers["X-Team"] == "data"
        assert headers["Lambda-Runtime-Aws-Request-Id"] == ok.request_id
        failed = await fn.invoke({"mode": "fail"})
        assert not failed.ok and "answered 502" in failed.payload["errorMessage"]
        slow = await fn.invoke({"mode": "slow"})
        assert slow.error == "Timeout"
        text = await fn.invoke({"mode": "text"})
        assert not text.ok and "not JSON" in text.payload["errorMessage"]
    finally:
        await fn.close()
        await runner.cleanup()


# ---- lambda ----------------------------------------------------------------------------------------------------


async def test_lambda_runtime_against_a_local_lambda_invoke_api() -> None:
    calls: list[dict[str, Any]] = []

    async def invoke(request: web.Request) -> web.Response:
        name = request.match_info["tail"].split("/")[2]  # /2015-03-31/functions/{name}/invocations
        payload = json.loads(await request.read())
        calls.append({"name": name, "qualifier": request.query.get("Qualifier"), "payload": payload})
        if payload.get("fail"):
            error = {"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []}
            return web.json_response(error, headers={"X-Amz-Function-Error": "Unhandled"})
        return web.json_response({"statusCode": 200, "got": payload})

    runner, url = await serve(invoke)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    config = FunctionConfig.model_validate(
        {
            "runtime": "lambda",
            "function_name": "orders",
            "qualifier": "live",
            "timeout": 5,
            "aws": {"endpoint_url": url, "region": "eu-west-1", "access_key_id": "test", "secret_access_key": "test"},
        }
    )
    fn = Function("remote", config, region="us-east-1", account_id="000000000000")
    await fn.start()
    try:
        ok = await fn.invoke({"n": 1})
        assert ok.ok and ok.payload == {"statusCode": 200, "got": {"n": 1}}
        assert calls[0]["name"] == "orders" and calls[0]["qualifier"] == "live"
        failed = await fn.invoke({"fail": True})
        assert not failed.ok
        assert failed.payload == {"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []}
    finally:
        await fn.close()
        await runner.cleanup()


def test_a_hung_in_process_handler_does_not_keep_the_hub_from_stopping(tmp_path: Path) -> None:
    config = {
        "checkpoints": "memory://",
        "shutdown_grace": "1s",
        "functions": {"stuck": {"handler": "functions.testing.blocks_forever", "timeout": "500ms"}},
        "mappings": [
            {
                "function": "stuck",
                "maximum_retry_attempts": 0,
                "source": {"type": "schedule", "expression": "rate(1 second)"},
            }
        ],
    }
    with HubProcess(tmp_path, config) as hub:
        hub.start()
        hub.wait_log("Task timed out")
        assert hub.stop(timeout=15) == 0


async def test_closing_the_python_runtime_cancels_calls_not_started_and_lets_the_running_one_end() -> None:
    from hub.runtimes import LambdaContext, Result
    from hub.runtimes.python import PythonRuntime

    runtime = PythonRuntime("functions.testing.notes_its_thread")
    await runtime.start()
    context = LambdaContext("fn", 128, 5.0)
    calls = [asyncio.create_task(runtime.invoke({"n": n}, context)) for n in range(3)]
    workers = runtime._workers
    assert workers is not None
    async with asyncio.timeout(5):
        while workers._calls.qsize() != 2:  # one taken by the only thread, two queued behind it
            await asyncio.sleep(0.001)
    await runtime.close()
    done = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(done[0], Result) and done[0].ok  # it was running: it ends and answers
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in done[1:])  # never started


async def test_invocations_that_keep_every_environment_busy_get_new_ones_up_to_the_concurrency() -> None:
    fn = process_fn("sleeps_and_tells_its_pid", concurrency=3)
    await fn.start()
    try:
        results = await asyncio.gather(*(fn.invoke({"sleep": 0.3}) for _ in range(6)))
        assert all(r.ok for r in results)
        pids = [r.payload for r in results]
        assert len(set(pids)) == 3  # three at once, each in an environment of its own; never a fourth
        assert all(pids.count(pid) == 2 for pid in set(pids))  # then each environment ran one more, warm
    finally:
        await fn.close()


async def test_a_timeout_counts_from_its_own_invocation_after_quick_ones_in_the_same_environment() -> None:
    fn = process_fn("spins_when_told", timeout=1, concurrency=1)
    await fn.start()
    try:
        for n in range(50):  # each one done long before the timeout: their deadlines pass unused
            assert (await fn.invoke({"n": n})).payload == "quick"
        timed_out = await fn.invoke({"spin": True})
        assert timed_out.payload["errorType"] == "Sandbox.Timedout"
        assert (await fn.invoke({})).payload == "quick"  # a fresh environment
    finally:
        await fn.close()


@pytest.fixture
def pipelined(monkeypatch: pytest.MonkeyPatch) -> None:
    """Invocations under a second are pipelined (the default is 1 ms, which a loaded test machine may not show)."""
    from hub.runtimes import process

    monkeypatch.setattr(process, "PIPELINE_WITHIN", 1.0)


async def warm(fn: Function) -> None:
    for n in range(10):  # quick ones, one at a time: the runtime learns that this function's invocations are short
        assert (await fn.invoke({"n": n})).ok


@pytest.mark.usefixtures("pipelined")
async def test_short_invocations_are_pipelined_into_one_environment_and_run_one_at_a_time_in_order() -> None:
    fn = process_fn("runs_and_tells", concurrency=4, timeout=1)
    await fn.start()
    try:
        await warm(fn)
        results = await asyncio.gather(*(fn.invoke({"n": n, "sleep": 0.02}) for n in range(8)))
        assert all(r.ok for r in results), [r.payload for r in results]
        runs = [r.payload for r in results]
        assert len({run["pid"] for run in runs}) < 4  # some shared an environment rather than each waking one
        for pid in {run["pid"] for run in runs}:
            mine = [run for run in runs if run["pid"] == pid]  # in the order sent
            for before, after in itertools.pairwise(mine):
                assert before["ended"] <= after["began"]  # one at a time, in order
        assert all(run["remaining"] > 900 for run in runs)  # each timeout counts from when it began
        assert all(r.duration < 0.5 for r in results)  # Lambda's duration: its own run, not its wait in the queue
    finally:
        await fn.close()


@pytest.mark.usefixtures("pipelined")
async def test_concurrent_executions_counts_invocations_running_not_those_queued() -> None:
    activity = Activity()
    config = FunctionConfig(handler="functions.testing.runs_and_tells", concurrency=4, timeout=1)
    fn = Function("fn", config, region="us-east-1", account_id="000000000000", activity=activity)
    await fn.start()
    try:
        await warm(fn)
        stats = activity.functions["fn"]
        calls = [asyncio.ensure_future(fn.invoke({"n": n, "sleep": 0.05})) for n in range(8)]
        seen: set[int] = set()
        while not all(call.done() for call in calls):
            seen.add(stats.concurrent)
            await asyncio.sleep(0.005)
        results = [call.result() for call in calls]
    finally:
        await fn.close()
    environments = {r.payload["pid"] for r in results}
    assert max(seen) >= 1 and max(seen) <= len(environments) < 4  # one per environment running one, not 4 or 8
    assert stats.concurrent == 0


@pytest.mark.usefixtures("pipelined")
@pytest.mark.parametrize(
    ("fault", "error_type"),
    [("spin", "Sandbox.Timedout"), ("exit", "Runtime.ExitError"), ("eat", "Runtime.OutOfMemory")],
)
async def test_invocations_queued_behind_one_that_fails_its_environment_run_in_another(
    fault: str, error_type: str
) -> None:
    fn = process_fn("runs_and_tells", concurrency=4, timeout=1)
    await fn.start()
    try:
        await warm(fn)
        first = await fn.invoke({})
        faulty = asyncio.ensure_future(fn.invoke({fault: True}))
        queued = [asyncio.ensure_future(fn.invoke({"n": n})) for n in range(3)]  # sent behind it, same environment
        failed = await faulty
        assert failed.payload["errorType"] == error_type
        results = await asyncio.gather(*queued)
        assert all(r.ok for r in results), [r.payload for r in results]
        assert {r.payload["n"] for r in results} == {0, 1, 2}
        assert all(r.payload["pid"] != first.payload["pid"] for r in results)  # not in the environment that ended
        assert all(r.payload["remaining"] > 900 for r in results)  # their timeouts count from when they began
    finally:
        await fn.close()


async def test_a_result_reaches_the_hub_as_pythons_json_reads_it() -> None:
    fn = process_fn("returns_odd_json")
    await fn.start()
    try:
        event = {"a": [1, 2.5, None, True], "b": "x" * 100_000}  # a response longer than one read of the pipe
        result = await fn.invoke(event)
        assert result.ok
        payload = result.payload
        assert payload["nan"] != payload["nan"] and payload["inf"] == float("-inf")
        assert payload["big"] == 10**30 and payload["text"] == "é ☃" and payload["event"] == event
    finally:
        await fn.close()
