"""The `hub` command."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from hub import logs, redact
from hub.cli_args import EXIT_CONFIG, fail, read_json, read_text

DEFAULT_CONFIG = "config/hub.yaml"
# A SAM template's --parameter-overrides and --bindings travel in the environment, so that the poller processes
# `hub run` starts (hub/pollers.py) translate the template exactly as the hub did.
SAM_OVERRIDES = "HUB_SAM_PARAMETER_OVERRIDES"
SAM_BINDINGS = "HUB_SAM_BINDINGS"
DEPRECATED = {
    "cpu_affinity": "deprecated and ignored: the hub no longer pins its processes to CPUs (measured, it did not "
    "make the default configuration faster); delete the setting",
}
"""Top-level settings still accepted, to no effect, and what whoever sets them is told (with file and line)."""


def sam_options(command: Any) -> Any:
    """--parameter-overrides and --bindings, for commands that take a SAM template."""
    command = click.option(
        "--bindings",
        envvar=SAM_BINDINGS,
        type=click.Path(dir_okay=False, exists=True),
        help="SAM templates: where the template's resources live here (default: hub-bindings.yaml next to it).",
    )(command)
    return click.option(
        "--parameter-overrides",
        "parameter_overrides",
        multiple=True,
        help="SAM templates: Key=Value parameter values, as `sam deploy` takes them.",
    )(command)


def _sam_environment(parameter_overrides: tuple[str, ...], bindings: str | None) -> None:
    if parameter_overrides:
        os.environ[SAM_OVERRIDES] = " ".join(parameter_overrides)  # each is `Key=Value ...`, as sam takes it
    if bindings:
        os.environ[SAM_BINDINGS] = bindings


def _load(path: str, warn: Callable[[str], object] | None = None, create_resources: bool = False) -> Any:
    """The validated configuration; its secrets are masked in everything this process writes from here on (those
    of a configuration that does not validate too, for its error messages). `warn` gets each deprecated setting
    it uses, as `file:line:col: setting: what to do`. `create_resources`: a SAM template's missing queues, streams
    and tables are created first (hub/sam/resources.py)."""
    from hub.config import ConfigError

    try:
        return _load_masked(path, warn, create_resources)
    except ConfigError as exc:
        fail(_invalid(path, exc))


def _load_masked(path: str, warn: Callable[[str], object] | None = None, create_resources: bool = False) -> Any:
    """load_config, remembering the document's secrets before it is validated. Raises ConfigError."""
    from hub import sam
    from hub.config import validate
    from hub.yamlsource import load

    template = sam.is_template(path)
    if template:
        from hub.sam.translate import parse_overrides, translate

        overrides = parse_overrides([os.environ.get(SAM_OVERRIDES, "")])
        document = translate(path, overrides, os.environ.get(SAM_BINDINGS) or None)
    else:
        document = load(path)
    redact.remember(redact.secrets_in(document.data))
    config = validate(document)
    redact.remember(redact.secrets_of(config))
    for key, why in DEPRECATED.items():
        if warn is not None and key in document.data:
            warn(f"{document.where((key,))}: {key}: {why}")
    if template:
        from hub.sam import resources

        resources.prepare(document, create=create_resources)  # else only checked: nothing is contacted
    return config


def _masked_excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    """An error that escapes every command prints its traceback with the secrets masked."""
    import traceback

    sys.stderr.write(redact.text("".join(traceback.format_exception(kind, exc, tb))))


def _invalid(path: str, exc: Any) -> str:
    """What a configuration error prints: each problem on an `error:` line, then the file's verdict."""
    verdict = getattr(exc, "verdict", "configuration not valid")
    return "\n".join(f"error: {line}" for line in exc.errors) + f"\n{path}: {verdict}"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="Readable lines, or one JSON object per line.",
)
def main(log_level: str, log_format: str) -> None:
    """A self-hosted event-source hub: Lambda event source mappings, S3 notifications and EventBridge
    schedules on your own machines. Functions are ordinary Lambda handlers, handler(event, context).

    \b
    Start with:
      hub run                      run config/hub.yaml (the embedded default: files and schedules)
      hub validate my.yaml         check a configuration without starting anything
      hub events files             print the event a function receives from a source
    """
    logs.setup(log_level, log_format)
    sys.excepthook = _masked_excepthook


@main.command()
@click.argument("config", default=DEFAULT_CONFIG, type=click.Path(dir_okay=False))
@click.option("--poller", "poller", hidden=True, help="Run only this mapping, as one of its extra pollers.")
@click.option("--poller-index", type=click.IntRange(min=2), default=2, hidden=True, help="Which poller this is.")
@click.option("--parent-pid", type=int, hidden=True, help="Stop when this process (the hub) is gone.")
@sam_options
@click.pass_context
def run(
    ctx: click.Context,
    config: str,
    poller: str | None,
    poller_index: int,
    parent_pid: int | None,
    parameter_overrides: tuple[str, ...],
    bindings: str | None,
) -> None:
    """Run every mapping in CONFIG (default: config/hub.yaml) until Ctrl-C or SIGTERM.

    On a stop, reading ends, in-flight invocations get `shutdown_grace` to finish, positions are
    checkpointed and the hub exits 0. A bad configuration exits 2 before anything starts. A mapping with
    `provisioned_poller_config` runs in `minimum_pollers` processes: this one and child processes it
    starts, restarts and stops. CONFIG may be a SAM template (docs/sam.md): its missing queues, streams
    and tables are first created on the AWS API emulator its bindings point at.
    """
    from hub import pollers
    from hub.app import Hub
    from hub.runtimes.python import HandlerLoadError

    _sam_environment(parameter_overrides, bindings)
    # the hub warns and creates a template's missing resources; the poller processes it starts load the same file,
    # say nothing and create nothing
    cfg = _load(config, logging.getLogger("hub.config").warning if poller is None else None, poller is None)
    if poller is not None:
        # a child started by the hub (hub/pollers.py): one mapping, every log line tagged with its index
        logs.tag(poller=poller_index)
        if not any(m.display_name == poller and m.enabled for m in cfg.mappings):
            fail(f"error: {config}: no enabled mapping named {poller!r} to poll")
        main_task = pollers.run_poller(Hub(cfg, only=poller, poller=poller_index), parent_pid)
    else:
        options = ctx.find_root().params
        command = pollers.child_command(config, options["log_level"], options["log_format"])
        extra = pollers.Pollers(cfg, command)
        main_task = Hub(cfg, pollers=extra if extra.children else None, loader=lambda: _load_masked(config)).run()
    try:
        asyncio.run(main_task)
    except HandlerLoadError as exc:
        fail(f"error: {exc}")
    except KeyboardInterrupt:
        pass
    leave(0)


def leave(code: int) -> NoReturn:
    """Exit now. Everything is settled and closed; a sync handler still hung in its thread (in-process runtime:
    threads cannot be killed) would keep the interpreter from exiting, so do not wait for such threads."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@main.command()
@click.argument("configs", metavar="CONFIG...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@sam_options
def validate(configs: tuple[str, ...], parameter_overrides: tuple[str, ...], bindings: str | None) -> None:
    """Check each CONFIG (a hub configuration or a SAM template) and print a summary; exit 2 naming file, line
    and field if any is not valid.

    Nothing is started and no broker is contacted.
    """
    from hub.config import ConfigError

    _sam_environment(parameter_overrides, bindings)
    invalid = False
    for config in configs:
        try:
            cfg = _load_masked(config, lambda problem: click.echo(redact.text(f"warning: {problem}"), err=True))
        except ConfigError as exc:
            click.echo(redact.text(_invalid(config, exc)), err=True)
            invalid = True
            continue
        click.echo(f"{config}: valid: {len(cfg.functions)} functions, {len(cfg.mappings)} mappings")
        for mapping in cfg.mappings:
            state = "" if mapping.enabled else " (disabled)"
            click.echo(f"  {mapping.display_name}: {mapping.source.type} -> {mapping.function}{state}")
    if invalid:
        sys.exit(EXIT_CONFIG)


@main.command("sam")
@click.argument("template", type=click.Path(dir_okay=False))
@sam_options
def sam_command(template: str, parameter_overrides: tuple[str, ...], bindings: str | None) -> None:
    """Print the hub configuration a SAM TEMPLATE stands for (what `hub run TEMPLATE` runs), as YAML to keep.

    It is validated first: a template the hub cannot run exits 2 naming file, line and logical id.
    """
    import yaml

    from hub.config import ConfigError
    from hub.sam import is_template, resources
    from hub.sam.translate import parse_overrides, translate

    if not is_template(template):
        fail(f"error: {template}: not a SAM template (no `Transform: AWS::Serverless-2016-10-31`)")
    try:
        document = translate(template, parse_overrides(parameter_overrides), bindings)
        redact.remember(redact.secrets_in(document.data))
        _validated(document)
        resources.prepare(document, create=False)  # a resource hub run could not create fails here too
    except ConfigError as exc:
        fail(_invalid(template, exc))
    text = yaml.safe_dump(document.data, sort_keys=False, width=120)
    click.echo(f"# The hub configuration of the SAM template {Path(template).name} (hub sam); keep it next to it.")
    click.echo(redact.text(text), nl=False)


def _validated(document: Any) -> Any:
    from hub.config import validate as validate_config

    return validate_config(copy.deepcopy(document))


@main.command()
@click.argument("function")
@click.option(
    "--event",
    "event_arg",
    default="{}",
    show_default=True,
    help="The event: a JSON file, inline JSON, or - for standard input.",
)
@click.option("--config", default=DEFAULT_CONFIG, show_default=True, type=click.Path(dir_okay=False))
def invoke(function: str, event_arg: str, config: str) -> None:
    """Invoke FUNCTION once with an event and print its result as JSON (exit 1 if it failed)."""
    from hub.functions import Function
    from hub.runtimes.python import HandlerLoadError

    cfg = _load(config)
    if function not in cfg.functions:
        fail(f"error: no function {function!r} in {config} (functions: {', '.join(sorted(cfg.functions))})")
    event = read_json(event_arg, "--event")

    async def once() -> Any:
        fn = Function.from_config(function, cfg)
        await fn.start()
        try:
            return await fn.invoke(event)
        finally:
            await fn.close()

    try:
        result = asyncio.run(once())
    except HandlerLoadError as exc:
        fail(f"error: {exc}")
    # a failed invocation's message may quote what a server answered (http runtime): mask it like a log line
    click.echo(redact.text(json.dumps(result.payload, indent=2, default=str)))
    leave(0 if result.ok else 1)


@main.command()
@click.argument("source", required=False)
@click.argument("variant", required=False)
def events(source: str | None, variant: str | None) -> None:
    """Print a sample event that a function receives from SOURCE (as `sam local generate-event` does); VARIANT
    picks another form of it where settings choose one (`hub events kafka msk`, `hub events schedule scheduler`).

    Without SOURCE, list the installed sources and their variants.
    """
    from hub import registry

    if source is None:
        for spec in registry.all_specs():
            variants = f" (variants: {', '.join(spec.sample_variants)})" if spec.sample_variants else ""
            click.echo(f"{spec.type:<10} {spec.summary}{variants}")
        return
    try:
        spec = registry.get(source)
    except KeyError:
        fail(f"error: unknown source {source!r} (installed: {', '.join(registry.names())})")
    if variant is None:
        sample = spec.sample_event
    elif variant in spec.sample_variants:
        sample = spec.sample_variants[variant]
    else:
        known = ", ".join(spec.sample_variants) or "none"
        fail(f"error: source {source!r} has no event variant {variant!r} (variants: {known})")
    click.echo(json.dumps(sample(), indent=2))


@main.command("test-pattern")
@click.option("--pattern", required=True, help="An EventBridge pattern: a JSON file, inline JSON, or -.")
@click.option("--event", "event_arg", required=True, help="An event: a JSON file, inline JSON, or -.")
def test_pattern(pattern: str, event_arg: str) -> None:
    """Print true if the pattern matches the event, false if not (exit 2 if the pattern is invalid).

    The local equivalent of EventBridge's TestEventPattern.
    """
    from hub.filtering import PatternError, compile_pattern

    if pattern == "-" and event_arg == "-":
        fail("error: only one of --pattern and --event can be read from standard input (-)")
    try:
        # the text itself, not a parse of it: the pattern compiler reads JSON as EventBridge does
        compiled = compile_pattern(read_text(pattern, "--pattern"))
    except PatternError as exc:
        fail(f"error: invalid pattern: {exc}")
    click.echo("true" if compiled.matches(read_json(event_arg, "--event")) else "false")


@main.command()
@click.option("--markdown", is_flag=True, help="The configuration reference (docs/configuration.md) instead.")
def schema(markdown: bool) -> None:
    """Print the JSON Schema of the configuration file (for editors and CI checks), generated from the models."""
    from hub import reference

    if markdown:
        click.echo(reference.markdown(), nl=False)
    else:
        click.echo(json.dumps(reference.json_schema(), indent=2))


if __name__ == "__main__":
    main()


def _add_admin_commands() -> None:
    from hub import cli_admin

    for command in cli_admin.COMMANDS:
        main.add_command(command)


_add_admin_commands()
