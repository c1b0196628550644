"""User errors end with a one-line message and exit code 2, never a traceback."""

from __future__ import annotations

import click

from kafkaops.config import ConfigError


class UserError(click.ClickException):
    exit_code = 2

    def format_message(self) -> str:
        return self.message


def user_errors(fn):
    """Turn the errors a user can fix (bad config, bad files) into exit code 2 with the message."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            raise UserError(str(exc)) from None

    return wrapper
