"""`kafkaops run --config FILE`: the daemon."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from kafkaops.cli.errors import UserError, user_errors
from kafkaops.config import Config, load_config
from kafkaops.server.daemon import BindError, serve
from kafkaops.server.jobs import all_jobs
from kafkaops.server.logs import setup_logging
from kafkaops.server.runtime import Job


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
    sys.exit(run_jobs(load_config(config_file), all_jobs()))


def run_jobs(config: Config, jobs: Sequence[Job]) -> int:
    """Log as configured and serve `jobs` until signalled; a taken port is the user's to fix."""
    setup_logging(config.logging.level, config.logging.format)
    try:
        return asyncio.run(serve(config, jobs))
    except BindError as exc:
        raise UserError(str(exc)) from None
