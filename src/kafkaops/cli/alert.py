"""`kafkaops alert ...`: the kapacitor CLI's verbs, talking to the running daemon's HTTP API.

As with `kapacitor`, definitions go through the daemon (which checks them against its config,
e.g. that a Kafka cluster exists), so the commands need `kafkaops run` to be up. The daemon's
answer to a bad definition is printed as is and the exit code is 2.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import click
import yaml

from kafkaops.cli.errors import UserError, user_errors
from kafkaops.config import load_config

DEFAULT_URL = "http://127.0.0.1:9470"
TIMEOUT_S = 30.0


class DaemonError(click.ClickException):
    """The daemon could not be reached or failed (not the user's input): exit code 1."""

    exit_code = 1


class Client:
    def __init__(self, url: str, wait: float = 0.0) -> None:
        self.url = url.rstrip("/")
        self._deadline = time.monotonic() + wait

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, JSON body) for 2xx and 404; other 4xx raise UserError with the daemon's
        message, 5xx and connection failures DaemonError."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        while True:
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                    status, text = response.status, response.read()
                break
            except urllib.error.HTTPError as exc:
                status, text = exc.code, exc.read()
                break
            except (urllib.error.URLError, OSError) as exc:
                if time.monotonic() < self._deadline:
                    time.sleep(0.2)
                    continue
                reason = getattr(exc, "reason", exc)
                raise DaemonError(
                    f"cannot reach kafkaops at {self.url}: {reason} (is `kafkaops run` "
                    "running? use --url or --config to point at it)"
                ) from None
        try:
            payload = json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            payload = {"error": text.decode("utf-8", "replace")}
        if status >= 500:
            raise DaemonError(_message(payload, status))
        if status >= 400 and status != 404:
            raise UserError(_message(payload, status))
        return status, payload


def _message(payload: Any, status: int) -> str:
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return f"HTTP {status}"


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def resolve_url(url: str | None, config_file: Path | None) -> str:
    """--url (or KAFKAOPS_URL), else the config's bind-address, else the default."""
    if url:
        return url if "://" in url else f"http://{url}"
    if config_file is None:
        return DEFAULT_URL
    http = load_config(config_file).http
    host = http.host if http.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{http.port}"


def _client(ctx: click.Context) -> Client:
    return ctx.find_object(Client)  # type: ignore[return-value]


@click.group("alert")
@click.option(
    "--url",
    envvar="KAFKAOPS_URL",
    help=f"The daemon's HTTP address (default: the --config bind-address, else {DEFAULT_URL}).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="The kafkaops config file, to find the daemon's bind-address.",
)
@click.option(
    "--wait",
    "wait",
    type=float,
    default=0.0,
    metavar="SECONDS",
    help="Keep trying this long while the daemon is not up yet (for scripts).",
)
@click.pass_context
@user_errors
def alert_group(ctx: click.Context, url: str | None, config_file: Path | None, wait: float) -> None:
    """Alert tasks, topic handlers, silences and Kafka tests, on the running daemon
    (Kapacitor's CLI verbs)."""
    ctx.obj = Client(resolve_url(url, config_file), wait)


# tasks ---------------------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None


def _parse_dbrp(text: str) -> dict[str, str]:
    db, sep, rp = text.partition(".")
    if not sep or not db or not rp:
        raise UserError(
            f"-dbrp {text!r}: expected database.retention_policy, e.g. telegraf.autogen"
        )
    return {"db": db.strip('"'), "rp": rp.strip('"')}


@alert_group.command("define")
@click.argument("name")
@click.option("-tick", "--tick", "tick", required=True, type=click.Path(path_type=Path),
              help="The TICKscript file.")  # fmt: skip
@click.option("-dbrp", "--dbrp", "dbrps", multiple=True,
              help="database.retention_policy the task reads (repeatable).")  # fmt: skip
@click.option("-type", "--type", "task_type", default="stream", show_default=True,
              type=click.Choice(["stream"]))  # fmt: skip
@click.pass_context
def define(
    ctx: click.Context, name: str, tick: Path, dbrps: tuple[str, ...], task_type: str
) -> None:
    """Create or update the task NAME from a TICKscript (a new task starts disabled)."""
    client = _client(ctx)
    body: dict[str, Any] = {"script": _read(tick), "type": task_type}
    if dbrps:
        body["dbrps"] = [_parse_dbrp(d) for d in dbrps]
    path = f"/kapacitor/v1/tasks/{_q(name)}"
    try:
        status, _ = client.call("GET", path)
        if status == 404:
            client.call("POST", "/kapacitor/v1/tasks", {"id": name, **body})
        else:
            client.call("PATCH", path, body)
    except UserError as exc:
        raise UserError(f"{tick}: {exc.message}") from None


def _set_status(ctx: click.Context, names: tuple[str, ...], status: str) -> None:
    client = _client(ctx)
    for name in names:
        code, body = client.call("PATCH", f"/kapacitor/v1/tasks/{_q(name)}", {"status": status})
        if code == 404:
            raise UserError(_message(body, code))


@alert_group.command("enable")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def enable(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Start the tasks."""
    _set_status(ctx, names, "enabled")


@alert_group.command("disable")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def disable(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Stop the tasks (their definitions and alert state are kept)."""
    _set_status(ctx, names, "disabled")


@alert_group.command("delete")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def delete(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Delete the tasks, with their alert state."""
    client = _client(ctx)
    for name in names:
        code, body = client.call("DELETE", f"/kapacitor/v1/tasks/{_q(name)}")
        if code == 404:
            raise UserError(_message(body, code))


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@alert_group.command("list")
@click.argument("pattern", default="")
@click.pass_context
def list_tasks(ctx: click.Context, pattern: str) -> None:
    """List tasks (optionally those whose ID matches a glob PATTERN)."""
    _, body = _client(ctx).call("GET", f"/kapacitor/v1/tasks?pattern={_q(pattern)}")
    rows = [
        [
            t["id"],
            t["type"],
            t["status"],
            str(t["executing"]).lower(),
            ", ".join(f'"{d["db"]}"."{d["rp"]}"' for d in t["dbrps"]) or "(all)",
        ]
        for t in body["tasks"]
    ]
    _table(["ID", "Type", "Status", "Executing", "Databases and Retention Policies"], rows)


@alert_group.command("show")
@click.argument("name")
@click.pass_context
def show(ctx: click.Context, name: str) -> None:
    """Show a task: status, errors, statistics and its TICKscript."""
    code, t = _client(ctx).call("GET", f"/kapacitor/v1/tasks/{_q(name)}")
    if code == 404:
        raise UserError(_message(t, code))
    stats = t["stats"]
    lines = [
        f"ID: {t['id']}",
        f"Error: {t['error']}",
        f"Type: {t['type']}",
        f"Status: {t['status']}",
        f"Executing: {str(t['executing']).lower()}",
        f"Created: {t['created']}",
        f"Modified: {t['modified']}",
        f"LastEnabled: {t['last-enabled']}",
        "Databases Retention Policies: "
        + (", ".join(f'["{d["db"]}"."{d["rp"]}"]' for d in t["dbrps"]) or "(all)"),
    ]
    if stats:
        alerts = " ".join(f"{k}={v}" for k, v in stats["alerts"].items())
        lines.append(f"Stats: points={stats['points']} errors={stats['errors']} alerts: {alerts}")
    lines += ["TICKscript:", t["script"].rstrip(), "", "DOT:", t["dot"]]
    click.echo("\n".join(lines))


# topics and handlers ---------------------------------------------------------------------------


@alert_group.command("define-topic-handler")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_context
def define_topic_handler(ctx: click.Context, file: Path) -> None:
    """Create or replace a topic handler from a YAML/JSON file (id, topic, kind, match,
    options). The daemon checks the options against its config (e.g. the Kafka cluster)."""
    text = _read(file)
    ext = file.suffix.lower()
    try:
        if ext in (".yaml", ".yml"):
            spec = yaml.safe_load(text)
        elif ext == ".json":
            spec = json.loads(text)
        else:
            raise UserError(f"{file}: bad file extension {ext!r}: must be .yaml, .yml or .json")
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise UserError(f"{file}: cannot parse {ext[1:].upper()}: {exc}") from None
    if not isinstance(spec, dict):
        raise UserError(f"{file}: expected a mapping with id, topic, kind and options")
    for key in ("id", "topic"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise UserError(f"{file}: {key}: required, a non-empty string")
    base = f"/kapacitor/v1/alerts/topics/{_q(spec['topic'])}/handlers"
    handler_id = spec["id"]
    client = _client(ctx)
    try:
        code, _ = client.call("PUT", f"{base}/{_q(handler_id)}", spec)
        if code == 404:
            client.call("POST", base, spec)
    except UserError as exc:
        raise UserError(f"{file}: {exc.message}") from None


@alert_group.command("list-topic-handlers")
@click.argument("topic", default="")
@click.pass_context
def list_topic_handlers(ctx: click.Context, topic: str) -> None:
    """List topic handlers (of one TOPIC, or of every topic)."""
    client = _client(ctx)
    if topic:
        names = [topic]
    else:
        _, body = client.call("GET", "/kapacitor/v1/alerts/topics")
        names = [t["id"] for t in body["topics"]]
    rows = []
    for name in names:
        code, body = client.call("GET", f"/kapacitor/v1/alerts/topics/{_q(name)}/handlers")
        for h in body["handlers"] if code == 200 else []:
            rows.append([name, h["id"], h["kind"], h["match"]])
    _table(["Topic", "ID", "Kind", "Match"], rows)


@alert_group.command("delete-topic-handler")
@click.argument("topic")
@click.argument("handler_id")
@click.pass_context
def delete_topic_handler(ctx: click.Context, topic: str, handler_id: str) -> None:
    """Delete the handler HANDLER_ID of TOPIC."""
    code, body = _client(ctx).call(
        "DELETE", f"/kapacitor/v1/alerts/topics/{_q(topic)}/handlers/{_q(handler_id)}"
    )
    if code == 404:
        raise UserError(_message(body, code))


@alert_group.command("list-topics")
@click.pass_context
def list_topics(ctx: click.Context) -> None:
    """List alert topics with their level and collected event count."""
    _, body = _client(ctx).call("GET", "/kapacitor/v1/alerts/topics")
    rows = [[t["id"], t["level"], str(t["collected"])] for t in body["topics"]]
    _table(["ID", "Level", "Collected"], rows)


@alert_group.command("show-topic")
@click.argument("topic")
@click.pass_context
def show_topic(ctx: click.Context, topic: str) -> None:
    """The last event of every alert ID in TOPIC, highest level first."""
    code, body = _client(ctx).call("GET", f"/kapacitor/v1/alerts/topics/{_q(topic)}/events")
    if code == 404:
        raise UserError(_message(body, code))
    rows = [
        [e["id"], e["state"]["level"], e["state"]["time"], e["state"]["duration"],
         e["state"]["message"]]
        for e in body["events"]
    ]  # fmt: skip
    _table(["ID", "Level", "Time", "Duration", "Message"], rows)


# service test ----------------------------------------------------------------------------------


@alert_group.command("test")
@click.argument("service", type=click.Choice(["kafka"]))
@click.option("--cluster", help="The [[kafka]] id (default: the first configured).")
@click.option("--topic", help="The topic to write to (default: test).")
@click.option("--key", help="The record key (default: key).")
@click.option("--message", help="The record value (default: test kafka message).")
@click.pass_context
def test_service(
    ctx: click.Context,
    service: str,
    *,
    cluster: str | None,
    topic: str | None,
    key: str | None,
    message: str | None,
) -> None:
    """Send a test record from the daemon to a [[kafka]] cluster and report the broker's answer."""
    options = {"cluster": cluster, "topic": topic, "key": key, "message": message}
    body = {k: v for k, v in options.items() if v is not None}
    _, result = _client(ctx).call("POST", f"/kapacitor/v1/service-tests/{service}", body)
    if not result["success"]:
        raise DaemonError(f"{service} test failed: {result['message']}")
    click.echo(f"{service} test succeeded")


# silences --------------------------------------------------------------------------------------


@alert_group.group("silence", invoke_without_command=True)
@click.option(
    "--match", "match", help="""Which events, e.g. '"group" == 'etl' AND level() >= WARNING'."""
)
@click.option("--for", "duration", help="How long, e.g. 2h or 30m.")
@click.option("--comment", default="", help="Why (shown in the list).")
@click.pass_context
def silence(ctx: click.Context, match: str | None, duration: str | None, comment: str) -> None:
    """Suppress matching alert events for a while (`silence list`, `silence expire ID`)."""
    if ctx.invoked_subcommand is not None:
        return
    if not match or not duration:
        raise UserError("silence needs --match EXPR and --for DURATION (or: silence list)")
    _, body = _client(ctx).call(
        "POST",
        "/kapacitor/v1/alerts/silences",
        {"match": match, "duration": duration, "comment": comment},
    )
    click.echo(f"silence {body['id']} until {body['ends-at']}")


@silence.command("list")
@click.pass_context
def list_silences(ctx: click.Context) -> None:
    """Active silences and those expired in the last day."""
    _, body = _client(ctx).call("GET", "/kapacitor/v1/alerts/silences")
    rows = [[s["id"], s["state"], s["ends-at"], s["match"], s["comment"]] for s in body["silences"]]
    _table(["ID", "State", "Ends", "Match", "Comment"], rows)


@silence.command("expire")
@click.argument("silence_id")
@click.pass_context
def expire_silence(ctx: click.Context, silence_id: str) -> None:
    """End a silence now."""
    code, body = _client(ctx).call("DELETE", f"/kapacitor/v1/alerts/silences/{_q(silence_id)}")
    if code == 404:
        raise UserError(_message(body, code))
