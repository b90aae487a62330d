"""`hub status`, `hub disable`, `hub enable`, `hub update` and `hub reload`: a running hub, through its admin
endpoint (`admin.listen`; `--url` or HUB_ADMIN_URL, default http://127.0.0.1:9180). Commands that change something
send the admin token from HUB_ADMIN_TOKEN (or `--token`) when the hub has one.

Exit status: 0 done; 1 the hub refused or failed (its message is printed); 3 no hub answers at the URL.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any, NoReturn

import click

from hub import redact

DEFAULT_URL = "http://127.0.0.1:9180"
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3

url_option = click.option(
    "--url",
    envvar="HUB_ADMIN_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The running hub's admin endpoint (its `admin.listen`); or HUB_ADMIN_URL.",
)
token_option = click.option(
    "--token",
    envvar="HUB_ADMIN_TOKEN",
    default=None,
    help="The hub's admin token, when it has one (`admin.token`); or HUB_ADMIN_TOKEN.",
)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(redact.text(message), err=True)
    sys.exit(code)


def call(url: str, path: str, method: str = "GET", body: Any = None, token: str | None = None) -> Any:
    """The JSON answer of the admin endpoint; exits 3 if nothing answers, 1 with the hub's message if it refuses."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        redact.remember([token])
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        _fail(f"error: {message}", EXIT_REFUSED)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        _fail(
            f"error: no hub answers at {url} ({reason}): is it running, with `admin: {{listen: ...}}` in its "
            "configuration? Point --url (or HUB_ADMIN_URL) at its admin.listen",
            EXIT_UNREACHABLE,
        )


def _rate(mapping: dict[str, Any]) -> str:
    minute = mapping.get("last_minute") or {}
    if "polled_per_s" in minute:
        return f"{minute['polled_per_s']:.1f}/s"
    return "-"


def _errors(mapping: dict[str, Any]) -> str:
    minute = mapping.get("last_minute") or {}
    if "failed_invoke" in minute:
        return str(minute["failed_invoke"])
    return "-"


def _lag(mapping: dict[str, Any]) -> str:
    """The mapping's lag as its source tells it: records behind (Kafka), the age of the newest record read
    (streams), or the messages waiting and the age of the oldest (queues)."""
    lag = mapping.get("lag") or {}
    shown = []
    if "offset_lag" in lag:
        shown.append(f"{lag['offset_lag']} records")
    if "iterator_age_ms" in lag:
        shown.append(f"{lag['iterator_age_ms'] / 1000:.1f}s")
    if "backlog" in lag:
        shown.append(f"{lag['backlog']} waiting")
    if "oldest_message_age_s" in lag:
        shown.append(f"oldest {lag['oldest_message_age_s']:.1f}s")
    return ", ".join(shown) or "-"


def table(status: dict[str, Any]) -> str:
    """Mappings as a table: name, AWS state, health, lanes, lag, rate and errors of the last minute."""
    rows = [("MAPPING", "STATE", "HEALTH", "LANES", "LAG", "RATE", "ERRORS/MIN")]
    for mapping in status.get("mappings", []):
        rows.append(
            (
                mapping["name"],
                mapping.get("State", "Enabled"),
                mapping["state"],
                str(len(mapping.get("lanes", []))),
                _lag(mapping),
                _rate(mapping),
                _errors(mapping),
            )
        )
    for slot in status.get("stopped_mappings", []):
        rows.append((slot["name"], slot["State"], "-", "0", "-", "-", "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    cluster = status.get("cluster") or {}
    if cluster.get("mode") == "shared":
        members = len(cluster.get("members", []))
        lines.append(f"\ncluster: {members} hubs; this one holds {len(cluster.get('held', []))} leases")
    return "\n".join(lines)


@click.command()
@url_option
@click.option("--watch", "-w", is_flag=True, help="Redraw every 2 seconds until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="Print the hub's /status JSON instead of a table.")
def status(url: str, watch: bool, as_json: bool) -> None:
    """Show a running hub's mappings: AWS state, health, lanes, lag, rate and errors of the last minute."""
    while True:
        answer = call(url, "/status")
        text = json.dumps(answer, indent=2) if as_json else table(answer)
        if not watch:
            click.echo(text)
            return
        click.clear()
        click.echo(f"{url}  {time.strftime('%H:%M:%S')}  (Ctrl-C to stop)\n\n{text}")
        try:
            time.sleep(2.0)
        except KeyboardInterrupt:
            return


def _switch(action: str, help_text: str) -> click.Command:
    """`hub disable MAPPING` or `hub enable MAPPING`: POST /mappings/MAPPING/<action>, print the new state."""

    @click.command(action, help=help_text)
    @click.argument("mapping")
    @url_option
    @token_option
    def command(mapping: str, url: str, token: str | None) -> None:
        answer = call(url, f"/mappings/{_quote(mapping)}/{action}", "POST", {}, token)
        click.echo(f"{answer['name']}: {answer['State']}")

    return command


disable = _switch(
    "disable", "Stop reading MAPPING (in-flight batches finish); its checkpoint is kept for `hub enable`."
)
enable = _switch("enable", "Start reading MAPPING again, from its checkpoint.")


@click.command()
@click.argument("mapping")
@click.argument("settings", nargs=-1, required=True)
@url_option
@token_option
def update(mapping: str, settings: tuple[str, ...], url: str, token: str | None) -> None:
    """Change MAPPING's settings at run time: `hub update orders batch_size=50 maximum_batching_window=1s`.

    Each SETTING is name=value; a value is read as JSON when it parses (numbers, true, {...}, [...]) and as text
    otherwise. The mapping restarts from its checkpoint with the new settings; a bad value changes nothing."""
    changes: dict[str, Any] = {}
    for setting in settings:
        name, sep, value = setting.partition("=")
        if not sep or not name:
            _fail(f"error: {setting!r} is not name=value (e.g. batch_size=50)", 2)
        try:
            changes[name] = json.loads(value)
        except ValueError:
            changes[name] = value
    answer = call(url, f"/mappings/{_quote(mapping)}", "PATCH", changes, token)
    click.echo(f"{answer['name']}: {answer['State']}")


@click.command()
@url_option
@token_option
def reload(url: str, token: str | None) -> None:
    """Read the running hub's configuration file again and apply only what changed (as SIGHUP does)."""
    answer = call(url, "/reload", "POST", {}, token)
    for what in ("created", "updated", "deleted", "functions"):
        if answer.get(what):
            click.echo(f"{what}: {', '.join(answer[what])}")
    if answer.get("needs_restart"):
        click.echo(f"applied at the next start only: {', '.join(answer['needs_restart'])}")
    if not any(answer.get(k) for k in ("created", "updated", "deleted", "functions", "needs_restart")):
        click.echo("nothing changed")


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


COMMANDS = [status, disable, enable, update, reload]
