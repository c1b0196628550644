"""`kafkaops run --config FILE`: the daemon."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from kafkaops.cli.errors import UserError, user_errors
from kafkaops.config import load_config
from kafkaops.server.daemon import BindError, serve
from kafkaops.server.jobs import all_jobs
from kafkaops.server.logs import setup_logging


@click.command("run")
@click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(path_type=Path),
    help="The kafkaops config file (TOML or YAML).",
)
@user_errors
def run_command(config_file: Path) -> None:
    """Run every job the config file asks for, with one HTTP server (/metrics, /healthz)."""
    config = load_config(config_file)
    setup_logging(config.logging.level, config.logging.format)
    try:
        code = asyncio.run(serve(config, all_jobs()))
    except BindError as exc:
        raise UserError(str(exc)) from None
    sys.exit(code)
