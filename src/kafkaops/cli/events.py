"""`kafkaops events`: apply, list and delete event bus definitions; run sources and sensors."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kafkaops.cli.errors import UserError, user_errors
from kafkaops.cli.run import run_jobs
from kafkaops.config import Config, load_config
from kafkaops.eventbus.config import EventbusSection
from kafkaops.eventbus.job import EventbusJob
from kafkaops.eventbus.spec import (
    Definition,
    DefinitionError,
    EventBus,
    EventSource,
    Sensor,
    load_file,
    validate_references,
)
from kafkaops.eventbus.store import DefinitionStore, normalise_kind
from kafkaops.server.connectivity import ConnectivityJob

__all__ = ["events_group"]

_CONFIG = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="The kafkaops config file (data_dir, [[kafka]] clusters, [eventbus]); defaults apply"
    " without one.",
)


def _config(config_file: Path | None) -> Config:
    return load_config(config_file) if config_file is not None else Config()


def _store(config: Config) -> DefinitionStore:
    section = getattr(config, "eventbus", None) or EventbusSection()
    return DefinitionStore.in_data_dir(config.data_dir, section.store)


@click.group("events")
def events_group() -> None:
    """The event bus: EventBus, EventSource and Sensor definitions in Argo Events' shape."""


@events_group.command("apply")
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="A YAML file of definitions (several documents separated by ---); repeatable.",
)
@_CONFIG
@user_errors
def apply(files: tuple[Path, ...], config_file: Path | None) -> None:
    """Validate and store definitions; `kafkaops events run` picks them up."""
    config = _config(config_file)
    loaded = []
    for file in files:
        try:
            result = load_file(file)
        except DefinitionError as exc:
            raise UserError(str(exc)) from None
        for warning in result.warnings:
            click.echo(f"warning: {warning}", err=True)
        loaded.extend(result.definitions)
    store = _store(config)
    try:
        for applied in store.apply(loaded):
            d = applied.definition
            click.echo(f"{d.kind.lower()}/{d.name} {applied.action}")
        for problem in validate_references(store.definitions()):
            click.echo(f"warning: {problem}", err=True)
    finally:
        store.close()


@events_group.command("list")
@click.option("--kind", default=None, help="Only this kind (EventBus, EventSource, Sensor).")
@_CONFIG
@user_errors
def list_definitions(kind: str | None, config_file: Path | None) -> None:
    """Show stored definitions: KIND, NAMESPACE, NAME and what each defines."""
    config = _config(config_file)
    try:
        wanted = normalise_kind(kind) if kind else None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    store = _store(config)
    try:
        definitions = store.definitions(wanted)
    except DefinitionError as exc:
        raise UserError(str(exc)) from None
    finally:
        store.close()
    rows = [("KIND", "NAMESPACE", "NAME", "DETAIL")]
    for d in definitions:
        rows.append((d.kind, d.namespace, d.name, _detail(d)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        click.echo(
            "  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )


def _detail(d: Definition) -> str:
    if isinstance(d, EventBus):
        where = d.spec.kafka.cluster or d.spec.kafka.url
        return f"topic={d.event_topic} kafka={where}"
    if isinstance(d, EventSource):
        return "events=" + ",".join(f"{kind}:{name}" for kind, name, _ in d.events())
    if isinstance(d, Sensor):
        return "triggers=" + ",".join(f"{t.name}({t.condition.text})" for t in d.spec.triggers)
    return ""


@events_group.command("delete")
@click.argument("kind")
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@_CONFIG
@user_errors
def delete(kind: str, name: str, namespace: str, config_file: Path | None) -> None:
    """Delete a stored definition (KIND is EventBus, EventSource or Sensor)."""
    try:
        kind = normalise_kind(kind)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if "/" in name:
        namespace, name = name.split("/", 1)
    store = _store(_config(config_file))
    try:
        deleted = store.delete(kind, namespace, name)
    finally:
        store.close()
    if not deleted:
        raise UserError(f"{kind} {namespace}/{name} is not stored (see kafkaops events list)")
    click.echo(f"{kind.lower()}/{name} deleted")


@events_group.command("run")
@_CONFIG
@click.option(
    "--instance-id",
    default=None,
    help="Overrides [eventbus] instance-id: stable per process, distinct between processes.",
)
@click.option(
    "--only",
    type=click.Choice(["sources", "sensors"]),
    default=None,
    help="Run only the event sources, or only the sensors (default: both).",
)
@user_errors
def run(config_file: Path | None, instance_id: str | None, only: str | None) -> None:
    """Run every stored EventSource and Sensor (plus /metrics and /healthz) until stopped."""
    config = _config(config_file)
    job = EventbusJob(always=True, instance_id=instance_id, only=only)  # type: ignore[arg-type]
    try:
        job.section(config)
    except ValueError as exc:
        raise UserError(f"--instance-id: {exc}") from None
    try:
        code = run_jobs(config, [ConnectivityJob(), job])
    except DefinitionError as exc:
        raise UserError(str(exc)) from None
    sys.exit(code)
