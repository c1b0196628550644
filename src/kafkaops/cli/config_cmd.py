"""`kafkaops config check`: validate a file and show what it means, secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

import click
import tomli_w

from kafkaops.cli.errors import user_errors
from kafkaops.config import load_config, masked


@click.group("config")
def config_group() -> None:
    """Work with the kafkaops config file."""


@config_group.command("check")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["toml", "json"]),
    default="toml",
    show_default=True,
    help="How to print the effective config.",
)
@user_errors
def check(file: Path, fmt: str) -> None:
    """Validate FILE and print the effective config (defaults filled in, secrets masked)."""
    data = masked(load_config(file))
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(tomli_w.dumps(_drop_none(data)), nl=False)
    click.echo(f"# {file}: OK", err=True)


def _drop_none(node):
    """TOML has no null: leave unset optional keys out."""
    if isinstance(node, dict):
        return {k: _drop_none(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_drop_none(v) for v in node]
    return node
