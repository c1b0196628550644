"""Entry point: `kafkaops <command>`."""

from __future__ import annotations

import click

from kafkaops import __version__
from kafkaops.cli.alert import alert_group
from kafkaops.cli.config_cmd import config_group
from kafkaops.cli.dev import dev_group
from kafkaops.cli.events import events_group
from kafkaops.cli.lag import lag_group
from kafkaops.cli.relay import relay_command
from kafkaops.cli.run import run_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kafkaops")
def cli() -> None:
    """kafkaops: lag monitoring, alerting, relaying and an event bus for Apache Kafka."""


cli.add_command(alert_group)
cli.add_command(config_group)
cli.add_command(dev_group)
cli.add_command(events_group)
cli.add_command(lag_group)
cli.add_command(relay_command)
cli.add_command(run_command)


def main() -> None:
    cli(prog_name="kafkaops")
