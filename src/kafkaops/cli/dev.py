"""`kafkaops dev`: real local Kafka clusters for trying things out."""

from __future__ import annotations

import click

from kafkaops.cli.errors import UserError
from kafkaops.testing import HarnessError, dev


@click.group("dev")
def dev_group() -> None:
    """Start, list and stop local Kafka clusters (KRaft, from Maven Central jars)."""


@dev_group.command("up")
@click.option("--name", default="local", show_default=True, help="Name of the cluster.")
@click.option("--nodes", type=click.Choice(["1", "3"]), default="1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="PLAINTEXT port of the first node (default: a free port).",
)
def up(name: str, nodes: str, port: int) -> None:
    """Start a cluster in the background (or report the one already running)."""
    try:
        cluster, started = dev.up(name, int(nodes), port or None)
    except HarnessError as exc:
        raise UserError(str(exc)) from None
    click.echo(
        f"{'started' if started else 'already running'}: {cluster.name} "
        f"({cluster.nodes} node{'s' if cluster.nodes > 1 else ''})",
        err=True,
    )
    click.echo(f"bootstrap={cluster.bootstrap}")


@dev_group.command("status")
def status() -> None:
    """List the local clusters."""
    clusters = dev.all_clusters()
    if not clusters:
        click.echo("no local clusters")
        return
    for c in clusters:
        state = "running" if c.running else "stopped"
        click.echo(f"{c.name}\t{state}\tnodes={c.nodes}\tbootstrap={c.bootstrap}")


@dev_group.command("down")
@click.option("--name", default=None, help="Stop only this cluster (default: all).")
def down(name: str | None) -> None:
    """Stop local clusters and delete their data."""
    names = [name] if name else [c.name for c in dev.all_clusters()]
    if name and dev.load(name) is None:
        raise UserError(f"no local cluster named {name!r}")
    for n in names:
        dev.down(n)
        click.echo(f"stopped: {n}")
