"""The `kafkaops` command line."""

from kafkaops.cli.main import main

__all__ = ["main"]
