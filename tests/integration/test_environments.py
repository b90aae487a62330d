"""Execution environments as Lambda's: each function sees its own environment and Lambda's variables, its code
is found as Lambda finds it (hyphenated file names, its own code folder), and `hub invoke` runs it as `hub run`
does. These run the default runtime (worker processes), built from a configuration file as the hub builds them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hub.config import load_config
from hub.functions import Function
from tests.helpers import ROOT, run_cli

SHOWS_ITS_ENVIRONMENT = """\
import os

import boto3

kinesis = boto3.client("kinesis")  # at import, as Lambda handlers make their clients
NAMES = (
    "TABLE_NAME", "SIMULATE_FAILURE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_EXECUTION_ENV", "LAMBDA_TASK_ROOT", "_HANDLER", "TZ",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "HUB_ONLY",
)


def lambda_handler(event, context):
    return {
        "env": {name: os.environ.get(name) for name in NAMES},
        "region": kinesis.meta.region_name,
        "module": __file__,
        "cwd": os.getcwd(),
        "log_stream_name": context.log_stream_name,
    }
"""


@pytest.fixture
def code(tmp_path: Path) -> Path:
    """Two functions' code folders, each with an `app.py` of its own, and a hyphenated file name."""
    for name in ("orders", "users"):
        folder = tmp_path / "src" / name
        folder.mkdir(parents=True)
        (folder / "app.py").write_text(f"def handler(event, context):\n    return {{'i_am': {name!r}}}\n")
        (folder / "kinesis-consumer-fn.py").write_text(SHOWS_ITS_ENVIRONMENT)
    return tmp_path


def write_config(folder: Path) -> Path:
    config = folder / "hub.yaml"
    config.write_text(
        """\
region: eu-central-1
function_defaults:
  environment: {SIMULATE_FAILURE: false}
  aws: {access_key_id: AKIDEXAMPLE, secret_access_key: "${ROLE_SECRET:-s3cr3t-role}"}
functions:
  orders:
    handler: kinesis-consumer-fn.lambda_handler
    code_uri: src/orders
    memory: 256
    environment: {TABLE_NAME: orders}
  users:
    handler: kinesis-consumer-fn.lambda_handler
    code_uri: src/users
    environment: {TABLE_NAME: users, SIMULATE_FAILURE: true}
    aws: {endpoint_url: "http://127.0.0.1:4566"}
  orders_app: {handler: app.handler, code_uri: src/orders}
  users_app: {handler: app.handler, code_uri: src/users}
"""
    )
    return config


async def invoke(config_path: Path, name: str) -> dict[str, object]:
    function = Function.from_config(name, load_config(config_path))
    await function.start()
    try:
        result = await function.invoke({})
    finally:
        await function.close()
    assert result.ok, result.payload
    return result.payload  # type: ignore[no-any-return]


@pytest.fixture
def no_region_in_the_hubs_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HUB_ONLY", "the hub's own variable")
    monkeypatch.setenv("TABLE_NAME", "the hub's own value")


@pytest.mark.usefixtures("no_region_in_the_hubs_environment")
async def test_two_functions_with_the_same_variable_each_see_their_own_and_lambdas(code: Path) -> None:
    config = write_config(code)
    orders, users = await invoke(config, "orders"), await invoke(config, "users")
    assert orders["env"] == {
        "TABLE_NAME": "orders",
        "SIMULATE_FAILURE": "false",  # a YAML boolean, as CloudFormation reads it
        "AWS_REGION": "eu-central-1",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_LAMBDA_FUNCTION_NAME": "orders",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/orders",
        "AWS_LAMBDA_LOG_STREAM_NAME": orders["log_stream_name"],
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "LAMBDA_TASK_ROOT": str(code / "src" / "orders"),
        "_HANDLER": "kinesis-consumer-fn.lambda_handler",
        "TZ": ":UTC",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",  # the execution role, from function_defaults
        "AWS_SECRET_ACCESS_KEY": "s3cr3t-role",
        "AWS_ENDPOINT_URL": None,
        "HUB_ONLY": None,  # nothing of the hub's own environment
    }
    assert orders["region"] == "eu-central-1"  # a client made at import, with no region in the hub's environment
    assert users["env"]["TABLE_NAME"] == "users" and users["env"]["SIMULATE_FAILURE"] == "true"
    assert users["env"]["AWS_LAMBDA_FUNCTION_NAME"] == "users"
    assert users["env"]["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert users["env"]["AWS_ACCESS_KEY_ID"] == "AKIDEXAMPLE"  # its own `aws` sets the endpoint, not the role
    assert orders["module"] == str(code / "src" / "orders" / "kinesis-consumer-fn.py")
    assert orders["cwd"] == str(code / "src" / "orders")  # as Lambda runs in its task root


async def test_two_functions_with_their_own_app_py_both_load(code: Path) -> None:
    config = write_config(code)
    assert await invoke(config, "orders_app") == {"i_am": "orders"}
    assert await invoke(config, "users_app") == {"i_am": "users"}


async def test_in_process_functions_cannot_share_a_module_name_from_two_folders(code: Path) -> None:
    from hub.runtimes.python import HandlerLoadError

    text = write_config(code).read_text()
    config = code / "in-process.yaml"
    config.write_text(
        text.replace("code_uri: src/orders}", "code_uri: src/orders, runtime: in-process}").replace(
            "code_uri: src/users}", "code_uri: src/users, runtime: in-process}"
        )
    )
    loaded = load_config(config)
    first = Function.from_config("orders_app", loaded)
    await first.start()
    try:
        second = Function.from_config("users_app", loaded)
        with pytest.raises(HandlerLoadError, match="already loaded in the hub's process"):
            await second.start()
    finally:
        await first.close()


def test_hub_invoke_runs_a_function_as_hub_run_does(code: Path) -> None:
    config = write_config(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "hub", "invoke", "users", "--config", str(config)],
        cwd=code,
        env={**env, "PYTHONPATH": str(ROOT), "ROLE_SECRET": "from-the-hubs-env"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["env"]["TABLE_NAME"] == "users"
    assert payload["env"]["AWS_SECRET_ACCESS_KEY"] == "***"  # the function got it; hub invoke prints it masked
    assert payload["region"] == "eu-central-1"
    assert "from-the-hubs-env" not in result.stderr  # a role's secret reaches the function, never the log


def test_a_handler_that_fails_to_import_is_lambdas_import_error(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text("functions:\n  f: {handler: missing-module.handler}\n")
    result = run_cli("invoke", "f", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "Runtime.ImportModuleError: Unable to import module 'missing-module'" in result.stderr


def test_an_environment_never_outlives_its_hub(tmp_path: Path) -> None:
    """A hub killed with SIGKILL takes its execution environments with it: none finishes an invocation that the
    restarted hub delivers again."""
    from tests.helpers import HubProcess, wait_for

    def children(pid: int) -> set[int]:
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == pid:
                    found.add(int(entry.name))
        return found

    config = {
        "checkpoints": "memory://",
        "functions": {
            "f": {
                "handler": "functions.testing.says_it_started_then_blocks",
                "timeout": "60s",
                "environment": {"STARTED_FILE": str(tmp_path / "started")},
            }
        },
        "mappings": [{"function": "f", "source": {"type": "files", "path": str(tmp_path / "in")}}],
        "s3_endpoint": {"enabled": False},
    }
    with HubProcess(tmp_path, config) as hub:
        hub.start()
        assert hub.proc is not None
        environments = wait_for(lambda: children(hub.proc.pid), what="the first execution environment")  # type: ignore[union-attr]
        (tmp_path / "in" / "upload.txt").write_text("x")
        wait_for((tmp_path / "started").exists, what="the invocation to start")  # and it never returns
        hub.kill()
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in environments), 10, "the environment to end")
