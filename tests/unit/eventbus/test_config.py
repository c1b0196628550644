"""The [eventbus] section in the config root."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafkaops.config import ConfigError, load_config


def test_defaults_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text(
        '[eventbus]\ninstance-id = "node-1"\nbatch-size = 500\nbatch-timeout = "250ms"\n'
    )
    section = load_config(path).eventbus
    assert section is not None
    assert (section.instance_id, section.batch_size) == ("node-1", 500)
    assert section.batch_timeout.total_seconds() == 0.25
    assert section.store == "eventbus"
    assert section.transaction_timeout.total_seconds() == 60


def test_no_section_means_no_event_bus(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    path.write_text("")
    assert load_config(path).eventbus is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('instance-id = "a b"', "eventbus.instance-id"),
        ("batch-size = 0", "eventbus.batch-size"),
        ('session-timeout = "1s"', "below 6s"),
        ('store = "../x"', "plain file name"),
        ("unknown = 1", "eventbus.unknown: unknown key"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "k.toml"
    path.write_text(f"[eventbus]\n{line}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path)
