"""`kafkaops lag`: the lag monitor alone, from our config or Kafka Lag Go's, and `lag show`."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from kafkaops.cli.errors import UserError, user_errors
from kafkaops.cli.run import run_jobs
from kafkaops.config import Config, load_config
from kafkaops.config.loader import read_document, validate
from kafkaops.kafka import ClusterClients
from kafkaops.lag.collector import LIVE_STATES
from kafkaops.lag.config import KlgConfig, KlgConversion, LagConfig, Storage, convert_kafka_lag_go
from kafkaops.lag.job import HealthListener, LagJob
from kafkaops.lag.monitor import Monitor, Snapshot
from kafkaops.server.connectivity import ConnectivityJob

_KLG_LEVELS = {
    "panic": "ERROR",
    "fatal": "ERROR",
    "error": "ERROR",
    "warn": "WARNING",
    "warning": "WARNING",
    "info": "INFO",
    "debug": "DEBUG",
    "trace": "DEBUG",
}
SHOW_RECORD_READS = 100_000
"""`lag show` times every lagging partition from its record (up to this many reads)."""


def config_from_kafka_lag_go(path: Path) -> tuple[Config, KlgConversion]:
    """Our Config for a Kafka Lag Go config.yaml, taken unchanged (no `${ENV}` expansion, as
    Kafka Lag Go does none). /metrics is served on all interfaces at
    prometheus_local.metrics_port, as Kafka Lag Go does."""
    source = str(path)
    data = read_document(path, "yaml")
    klg = validate(KlgConfig, data, source)
    conversion = convert_kafka_lag_go(klg)
    config = validate(
        Config,
        {
            "http": {"bind-address": f"0.0.0.0:{conversion.metrics_port}"},
            "logging": {"level": _KLG_LEVELS[conversion.log_level]},
            "kafka": conversion.kafka,
            "lag": conversion.lag,
        },
        source,
    )
    return config, conversion


def _load(config_file: Path | None, klg_file: Path | None) -> tuple[Config, KlgConversion | None]:
    if (config_file is None) == (klg_file is None):
        raise UserError("give exactly one of --config FILE or --config-file config.yaml")
    if klg_file is not None:
        return config_from_kafka_lag_go(klg_file)
    assert config_file is not None
    config = load_config(config_file)
    if config.lag is None:
        config = config.model_copy(update={"lag": LagConfig()})
    if not config.clusters:
        raise UserError(f"{config_file}: no [[kafka]] cluster to monitor")
    return config, None


_config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="The kafkaops config file (TOML or YAML); [lag] is optional.",
)
_klg_option = click.option(
    "--config-file",
    "klg_file",
    type=click.Path(path_type=Path),
    help="A Kafka Lag Go config.yaml, used unchanged.",
)


@click.group("lag", invoke_without_command=True)
@_config_option
@_klg_option
@click.pass_context
@user_errors
def lag_group(ctx: click.Context, config_file: Path | None, klg_file: Path | None) -> None:
    """Run the consumer-group lag monitor alone (/metrics, /healthz, /lag/groups)."""
    ctx.obj = (config_file, klg_file)
    if ctx.invoked_subcommand is not None:
        return
    config, conversion = _load(config_file, klg_file)
    jobs: list[Any] = [ConnectivityJob(), LagJob()]
    if conversion is not None:
        if conversion.health_check_path == "/metrics" and (
            conversion.health_check_port == conversion.metrics_port
        ):
            raise UserError("app.health_check_path '/metrics' would hide the metrics")
        jobs.append(
            HealthListener("0.0.0.0", conversion.health_check_port, conversion.health_check_path)
        )
    sys.exit(run_jobs(config, jobs))


@lag_group.command("show")
@_config_option
@_klg_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
@click.pass_context
@user_errors
def show(ctx: click.Context, config_file: Path | None, klg_file: Path | None, fmt: str) -> None:
    """One look at every group's lag, worst first (offsets and seconds, per group and topic).

    Lag in seconds is exact at once: with no history yet, the timestamp of the record at each
    committed offset is read from Kafka. Burrow's status needs a window of commits over time,
    so one look can only tell OK (caught up) and STOP (lagging with no members).
    """
    parent = ctx.obj or (None, None)
    config, _ = _load(config_file or parent[0], klg_file or parent[1])
    lag = config.lag or LagConfig()
    config = config.model_copy(
        update={"lag": lag.model_copy(update={"sharding": False, "storage": Storage()})}
    )
    if fmt == "table" and sys.stdout.isatty():
        from rich.console import Console

        with Console(stderr=True).status(
            f"Gathering lag from {len(config.clusters)} cluster(s)..."
        ):
            snapshots, failures = asyncio.run(_gather(config))
    else:
        snapshots, failures = asyncio.run(_gather(config))
    rows = table_rows(snapshots, lag.status.allowed_lag)
    if fmt == "json":
        click.echo(json.dumps({"rows": rows, "failed_clusters": failures}, indent=2))
    else:
        _print_table(rows, multi_cluster=len(config.clusters) > 1)
    for cluster, why in failures.items():
        click.echo(f"cluster {cluster}: {why}", err=True)
    if failures:
        sys.exit(1)


async def _gather(config: Config) -> tuple[list[Snapshot], dict[str, str]]:
    clients: dict[str, ClusterClients] = {}

    def clients_of(cluster_id: str) -> ClusterClients:
        if cluster_id not in clients:
            clients[cluster_id] = ClusterClients(config.cluster(cluster_id))
        return clients[cluster_id]

    monitor = Monitor(config, clients_of, record_read_limit=SHOW_RECORD_READS)
    try:
        snapshots = await monitor.iterate()
    finally:
        await monitor.close()
    failures = {cid: c.reason for cid, c in monitor.clusters.items() if c.up is False}
    return snapshots, failures


def table_rows(snapshots: list[Snapshot], allowed_lag: int) -> list[dict[str, Any]]:
    """One row per (group, topic), worst lag first; status by the one-look rule."""
    rows = []
    for snap in snapshots:
        by_topic: dict[tuple[str, str], list] = {}
        for r in snap.rows:
            by_topic.setdefault((r.group, r.topic), []).append(r)
        for (group, topic), parts in by_topic.items():
            totals = snap.topics[group, topic]
            view = snap.groups[group]
            timed = [p for p in parts if p.lag_in_seconds is not None]
            worst = max(timed, key=lambda p: p.lag_in_seconds or 0.0) if timed else None
            lagging = totals.max_offsets > allowed_lag
            rows.append(
                {
                    "cluster": snap.cluster,
                    "group": group,
                    "topic": topic,
                    "partitions": len(parts),
                    "state": view.state,
                    "lag_in_offsets": totals.sum_offsets,
                    "lag_in_seconds": totals.max_seconds,
                    "source": str(worst.source) if worst else "unknown",
                    "status": ("-" if view.state in LIVE_STATES else "STOP") if lagging else "OK",
                }
            )
    rows.sort(key=lambda r: (-r["lag_in_offsets"], -(r["lag_in_seconds"] or 0.0), r["group"]))
    return rows


def _print_table(rows: list[dict[str, Any]], multi_cluster: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Consumer-group lag (worst first)", title_justify="left")
    if multi_cluster:
        table.add_column("cluster")
    for name in ("group", "topic"):
        table.add_column(name, overflow="fold")
    table.add_column("partitions", justify="right")
    table.add_column("lag (offsets)", justify="right")
    table.add_column("lag (seconds)", justify="right")
    table.add_column("seconds from")
    table.add_column("state")
    table.add_column("status")
    for r in rows:
        seconds = "-" if r["lag_in_seconds"] is None else f"{r['lag_in_seconds']:.1f}"
        cells = [
            r["group"],
            r["topic"],
            str(r["partitions"]),
            str(r["lag_in_offsets"]),
            seconds,
            r["source"],
            r["state"],
            r["status"],
        ]
        table.add_row(*([r["cluster"], *cells] if multi_cluster else cells))
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    console.print(
        "status: OK = caught up; STOP = lagging with no members; '-' = lagging with members "
        "(WARN/STALL/REWIND need the commit window of a running monitor)."
    )
