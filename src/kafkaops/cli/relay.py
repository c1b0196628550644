"""`kafkaops relay`: the relay alone, from our config or from kaf-relay's config.toml unchanged.

kaf-relay's flags keep their meaning: `--mode single|failover` (single keeps the first source),
`--stop-at-end` (relay up to the source end offsets seen at start, flush, exit 0) and
`--topic source:target[:partition]` (replaces that source topic's mapping; repeatable).

Exit codes: 0 when stopped or done, 1 when retries are exhausted (the reason is printed), 2 when
the config is wrong or the relay refuses to start (topic map does not fit the partitions, an
unsafe resume).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from kafkaops.cli.errors import UserError, user_errors
from kafkaops.cli.run import run_jobs
from kafkaops.config import Config, ConfigError, load_config
from kafkaops.config.loader import read_document, validate
from kafkaops.relay.config import (
    KafRelayConfig,
    apply_flags,
    convert_kaf_relay,
    looks_like_kaf_relay,
)
from kafkaops.relay.job import RelayJob
from kafkaops.server.connectivity import ConnectivityJob

_KAF_RELAY_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "error": "ERROR"}


def config_from_kaf_relay(
    path: Path,
    data: dict[str, Any],
    *,
    mode: str | None,
    stop_at_end: bool,
    topics: tuple[str, ...],
) -> Config:
    """Our Config for a kaf-relay config.toml: its sources and target become `[[kafka]]`
    clusters, /metrics is served at `[app] metrics_server_addr` as kaf-relay does."""
    source = str(path)
    kaf = validate(KafRelayConfig, data, source)
    try:
        conversion = convert_kaf_relay(
            kaf, mode=mode or "single", stop_at_end=stop_at_end, topics=topics
        )
    except ValueError as exc:
        raise ConfigError(source, [str(_first_line(exc))]) from None
    level = _KAF_RELAY_LEVELS.get(conversion.log_level.lower(), "INFO")
    return validate(
        Config,
        {
            "http": {"bind-address": conversion.metrics_server_addr},
            "logging": {"level": level, "format": "json"},
            "kafka": conversion.kafka,
            "relay": [conversion.relay.model_dump(mode="json")],
        },
        source,
    )


def _first_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
    return str(exc)


def load_relay_config(
    path: Path,
    *,
    mode: str | None = None,
    stop_at_end: bool = False,
    topics: tuple[str, ...] = (),
    name: str | None = None,
) -> Config:
    """The config to run: ours with the flags applied to the chosen relay(s), or kaf-relay's."""
    data = read_document(path)
    if looks_like_kaf_relay(data):
        return config_from_kaf_relay(path, data, mode=mode, stop_at_end=stop_at_end, topics=topics)
    config = load_config(path)
    relays = [r for r in config.relay if r.enabled]
    if name is not None:
        relays = [r for r in relays if r.name == name]
        if not relays:
            known = ", ".join(repr(r.name) for r in config.relay) or "none"
            raise UserError(f"{path}: no enabled relay named {name!r} (relays: {known})")
    if not relays:
        raise UserError(f"{path}: no enabled [relay] section (or give a kaf-relay config.toml)")
    if len(relays) > 1 and (mode or topics):
        raise UserError(
            f"{path} has {len(relays)} relays: choose one with --name to apply --mode or --topic"
        )
    try:
        relays = [
            apply_flags(r, mode=mode, stop_at_end=stop_at_end or None, topics=topics)
            for r in relays
        ]
    except (ValueError, ValidationError) as exc:
        raise UserError(f"{path}: {_first_line(exc)}") from None
    return config.model_copy(update={"relay": relays})


@click.command("relay")
@click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(path_type=Path),
    help="The kafkaops config file, or a kaf-relay config.toml used unchanged.",
)
@click.option(
    "--mode",
    type=click.Choice(["single", "failover"]),
    default=None,
    help="single: the first source only; failover: switch between the sources.",
)
@click.option(
    "--stop-at-end",
    is_flag=True,
    help="Relay up to the source end offsets seen at start, flush, exit 0.",
)
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="SRC:DST[:PARTITION]",
    help="Map a source topic (repeatable); replaces that topic's mapping from the file.",
)
@click.option("--name", default=None, help="Run only the [[relay]] of this name.")
@user_errors
def relay_command(
    config_file: Path,
    mode: str | None,
    stop_at_end: bool,
    topics: tuple[str, ...],
    name: str | None,
) -> None:
    """Copy topics from a source cluster (or the best of several) to a target cluster.

    Resumes exactly where the target says it stopped, with /metrics and /healthz served at the
    config's http bind-address (kaf-relay's metrics_server_addr for its config files).
    """
    config = load_relay_config(
        config_file, mode=mode, stop_at_end=stop_at_end, topics=topics, name=name
    )
    job = RelayJob(exit_when_done=True)
    code = run_jobs(config, [ConnectivityJob(), job])
    for exc in job.failures.values():
        click.echo(f"kafkaops relay: {exc}", err=True)
    sys.exit(job.exit_code or code)
