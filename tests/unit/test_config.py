"""Configuration: durations, ${VAR} expansion and every error path (file, line and field named; exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.config import ConfigError, load_config
from hub.types import parse_duration
from hub.yamlsource import expand
from tests.helpers import ROOT, run_cli

GOOD = """\
functions:
  f: {handler: functions.recorder.record, timeout: 500ms}
mappings:
  - function: f
    source:
      type: files
      path: ./inbox
"""


def write(tmp: Path, text: str) -> Path:
    path = tmp / "hub.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), (2, 2), (1.5, 1.5), ("7", 7)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 parsecs", "-1s", "", True, "1.2.3s", None])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_env_expansion() -> None:
    env = {"HOST": "kafka", "EMPTY": ""}
    assert expand("${HOST}:9092", env) == "kafka:9092"
    assert expand("${PORT:-9092}", env) == "9092"
    assert expand("${EMPTY:-fallback}", env) == "fallback"
    assert expand("$${HOST}", env) == "${HOST}"
    with pytest.raises(KeyError):
        expand("${MISSING}", env)


def test_good_config_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.functions["f"].timeout == 0.5
    assert config.functions["f"].memory == 128
    (mapping,) = config.mappings
    assert mapping.display_name == "f-files"
    assert mapping.setting("maximum_retry_attempts") == 2  # asynchronous invocation's default
    assert mapping.setting("batch_size") == 1
    assert config.checkpoints == "sqlite:///.hub/state.db"


def test_a_substituted_value_is_text_exactly_as_given(tmp_path: Path) -> None:
    """The old rule re-parsed an unquoted `${VAR}` as YAML (`0123` a number, `yes` a bool, `pass #2` cut at the
    comment, `@x` or `[x` a crash that printed the value). Now the value is text, never YAML; a field that wants
    a number still converts the text, as it would a quoted "256"."""
    text = GOOD.replace(
        "  f: {handler: functions.recorder.record, timeout: 500ms}",
        "  f:\n    handler: functions.recorder.record\n    memory: ${MEM}\n    environment:\n"
        + "".join(f"      V{i}: ${{V{i}}}\n" for i in range(7))
        + "      MIXED: pre-${V0}-post\n",
    )
    values = ["@S3CR3T", "[x", "pass #2", "0123", "yes", "{a: 1}", "  padded  "]
    config = load_config(write(tmp_path, text), env={"MEM": "256"} | {f"V{i}": v for i, v in enumerate(values)})
    function = config.functions["f"]
    assert function.memory == 256
    assert function.environment == {f"V{i}": v for i, v in enumerate(values)} | {"MIXED": "pre-@S3CR3T-post"}


@pytest.mark.parametrize(
    ("edit", "line", "needle"),
    [
        (("timeout: 500ms", "timeout: 5 parsecs"), 2, "functions.f.timeout: '5 parsecs' is not a duration"),
        (("path: ./inbox", "pth: ./inbox"), 7, "mappings[0].source.pth: unknown setting"),
        (("path: ./inbox", "pth: ./inbox"), 6, "mappings[0].source.path: Field required"),
        (("type: files", "type: filez"), 6, "mappings[0].source.type: unknown source type 'filez'"),
        (("- function: f", "- function: g"), 4, "mappings[0].function: no function 'g'"),
        (("handler: functions.recorder.record", "handler: nodots"), 2, "functions.f.handler: 'nodots' is not"),
        (("path: ./inbox", "path: ./inbox\n    batch_size: 10"), 8, "mappings[0].batch_size: does not apply"),
        (("path: ./inbox", "path: ${INBOX}"), 7, "environment variable INBOX is not set"),
        (("functions:", "functions: ["), 3, "YAML syntax error"),
        (
            ("path: ./inbox", "path: ./inbox\n    filter_criteria: [{detail: {n: [{numeric: ['>']}]}}]"),
            8,
            "mappings[0].filter_criteria[0].detail.n[0].numeric[1]: the value of > must be a number",
        ),
        (("timeout: 500ms", "memory: 64"), 2, "functions.f.memory: Input should be greater than or equal to 128"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path: Path, edit: tuple[str, str], line: int, needle: str) -> None:
    path = write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    text = str(caught.value)
    assert needle in text
    assert any(e.startswith(f"{path}:{line}:") and needle.split(":")[0] in e for e in caught.value.errors), text


def test_duplicate_mapping_names_are_refused(tmp_path: Path) -> None:
    text = GOOD + "  - function: f\n    source: {type: files, path: ./other}\n"
    with pytest.raises(ConfigError, match="two mappings are named 'f-files'"):
        load_config(write(tmp_path, text))


def test_secrets_never_appear_in_errors(tmp_path: Path) -> None:
    text = GOOD.replace("timeout: 500ms", "timeout: 500ms, environment: {API_TOKEN: [hunter2]}")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert "hunter2" not in str(caught.value)


def test_cli_exits_2_naming_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("path: ./inbox", "pth: ./inbox"))
    for command in (["validate", str(path)], ["run", str(path)]):
        result = run_cli(*command)
        assert result.returncode == 2, result
        assert f"{path}:7:" in result.stderr
        assert "mappings[0].source.pth" in result.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml: cannot read the configuration" in result.stderr


def test_shipped_configs_are_valid() -> None:
    for path in sorted((ROOT / "config").rglob("*.yaml")):
        result = run_cli("validate", str(path))
        assert result.returncode == 0, (path, result.stderr)


def test_generated_reference_and_schema_are_up_to_date() -> None:
    """docs/configuration.md and config/schema.json are generated from the models: regenerate them with
    `hub schema --markdown > docs/configuration.md` and `hub schema > config/schema.json`."""
    from hub import reference

    assert (ROOT / "docs/configuration.md").read_text() == reference.markdown()
    assert json.loads((ROOT / "config/schema.json").read_text()) == reference.json_schema()


def test_a_connector_whose_library_is_missing_is_a_config_error(tmp_path: Path) -> None:
    from pydantic import BaseModel, ConfigDict

    from hub import registry
    from hub.source import ConnectorSpec

    class Needy(BaseModel):
        model_config = ConfigDict(extra="forbid")
        type: str

    registry.register(
        ConnectorSpec(
            "needy",
            Needy,
            lambda c, x: None,
            "queue",
            "",
            dict,  # type: ignore[arg-type, return-value]
            requires=("no_such_module_for_the_hub",),
            extra="needy",
        )
    )
    text = (
        "functions:\n  f: {handler: functions.recorder.record}\nmappings:\n  - function: f\n    source: {type: needy}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    (error,) = caught.value.errors
    assert f"{tmp_path / 'hub.yaml'}:5:" in error
    assert "needs no_such_module_for_the_hub, which is not installed: pip install 'eventhub[needy]'" in error


def test_environment_values_are_text_as_cloudformation_reads_them(tmp_path: Path) -> None:
    text = "functions:\n  f:\n    handler: app.handler\n    environment: {SIMULATE_FAILURE: false, N: 3, RATE: 1.5}\n"
    config = load_config(write(tmp_path, text))
    assert config.functions["f"].environment == {"SIMULATE_FAILURE": "false", "N": "3", "RATE": "1.5"}


@pytest.mark.parametrize(
    "handler", ["app.handler", "kinesis-consumer-fn.lambda_handler", "src/app.handler", "functions.resize.handler"]
)
def test_handlers_as_lambda_takes_them(tmp_path: Path, handler: str) -> None:
    config = load_config(write(tmp_path, f"functions:\n  f: {{handler: {handler}}}\n"))
    assert config.functions["f"].handler == handler


@pytest.mark.parametrize("handler", ["handler", "app.", "app.2nd", "a b.handler"])
def test_a_handler_lambda_would_refuse_is_refused(tmp_path: Path, handler: str) -> None:
    with pytest.raises(ConfigError, match=r"hub.yaml:2:\d+: functions.f.handler: .* not a handler as Lambda takes it"):
        load_config(write(tmp_path, f"functions:\n  f: {{handler: '{handler}'}}\n"))


def test_lambdas_reserved_variables_are_refused_as_lambda_refuses_them(tmp_path: Path) -> None:
    text = "functions:\n  f:\n    handler: app.handler\n    environment: {AWS_REGION: eu-west-1, OWN: x}\n"
    with pytest.raises(ConfigError, match=r"functions\.f\.environment: AWS_REGION: reserved by Lambda"):
        load_config(write(tmp_path, text))


def test_code_uri_is_a_folder_next_to_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "src" / "orders").mkdir(parents=True)
    text = (
        "functions:\n  f: {handler: app.handler, code_uri: src/orders}\n  g: {handler: app.handler, code_uri: nope}\n"
    )
    with pytest.raises(ConfigError, match=r"hub.yaml:3:\d+: functions.g.code_uri: no folder"):
        load_config(write(tmp_path, text))
    config = load_config(write(tmp_path, text.rsplit("  g:", 1)[0]))
    assert config.functions["f"].code_uri == str(tmp_path / "src" / "orders")


def test_in_process_functions_cannot_give_one_variable_two_values(tmp_path: Path) -> None:
    text = (
        "functions:\n"
        "  a: {handler: app.a, runtime: in-process, environment: {TABLE_NAME: orders}}\n"
        "  b: {handler: app.b, runtime: in-process, environment: {TABLE_NAME: users}}\n"
    )
    with pytest.raises(ConfigError, match=r"hub.yaml:3:\d+: functions.b.environment.TABLE_NAME: in-process functions"):
        load_config(write(tmp_path, text))
    # each in its own execution environments (the default runtime), the same variable is no conflict
    assert load_config(write(tmp_path, text.replace("runtime: in-process, ", "")))


def test_process_is_an_older_name_of_the_default_runtime(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "functions:\n  f: {handler: app.handler, runtime: process}\n  g: {handler: a.b}\n")
    )
    assert config.functions["f"].runtime == config.functions["g"].runtime == "python"


def test_mappings_that_are_not_a_list_are_an_error_where_they_are(tmp_path: Path) -> None:
    """`mappings: 5` once crashed with a TypeError; `mappings:` written as a mapping once read as
    `mappings[0].source: required`."""
    number = write(tmp_path, GOOD.split("mappings:")[0] + "mappings: 5\n")
    with pytest.raises(ConfigError) as caught:
        load_config(number)
    assert caught.value.errors == [
        f"{number}:3:11: mappings: must be a list (items written `- ...`, or `[a, b]`), not a number"
    ]
    keyed = write(tmp_path, GOOD.replace("  - function: f\n    source:", "  uploads:\n    function: f\n    source:"))
    with pytest.raises(ConfigError) as caught:
        load_config(keyed)
    (error,) = caught.value.errors
    assert error.startswith(f"{keyed}:4:3: mappings: must be a list") and error.endswith("not a mapping")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "functions:\n  f: {handler: a.one}\n  g: {handler: a.two}\n  f: {handler: a.three}\n",
            "4:3: functions.f: given twice, at line:column 2:3 and 4:3",
        ),
        (
            "functions:\n  f:\n    handler: a.b\n    timeout: 3s\n    timeout: 30s\n",
            "5:5: functions.f.timeout: given twice",
        ),
        (GOOD + "    function: f\n", "8:5: mappings[0].function: given twice, at line:column 4:5 and 8:5"),
        (
            GOOD.split("mappings:")[0] + "mappings:\n  - {function: f, source: {type: files, path: a, path: b}}\n",
            "4:50: mappings[0].source.path: given twice, at line:column 4:41 and 4:50",
        ),
    ],
)
def test_a_key_given_twice_is_refused_naming_both_places(tmp_path: Path, text: str, error: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (message,) = caught.value.errors
    assert message.startswith(f"{path}:{error}") and "given twice" in message


def test_an_invalid_filter_is_reported_at_the_value_itself(tmp_path: Path) -> None:
    """The error once pointed at `filter_criteria:`, the line above the offending filter."""
    text = GOOD + "    filter_criteria:\n      - {a: [1]}\n      - {b: [{numeric: ['>', x]}]}\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (message,) = caught.value.errors
    assert message.startswith(f"{path}:10:30: mappings[0].filter_criteria[1].b[0].numeric[1]: "), message


def test_settings_that_want_a_bool_or_a_number_take_the_text_of_a_variable(tmp_path: Path) -> None:
    text = "cpu_affinity: ${PIN}\nshutdown_grace: ${GRACE}\n" + GOOD.replace(
        "path: ./inbox", "path: ./inbox\n    enabled: ${ON}"
    )
    config = load_config(write(tmp_path, text), env={"PIN": "false", "GRACE": "10", "ON": "false"})
    assert config.cpu_affinity is False
    assert config.shutdown_grace == 10
    assert config.mappings[0].enabled is False
