"""`kafkaops alert`: finding the daemon, and user errors caught before any request."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from kafkaops.cli.alert import DEFAULT_URL, resolve_url
from kafkaops.cli.main import cli


def test_the_daemon_url_comes_from_flag_config_or_default(tmp_path: Path) -> None:
    config = tmp_path / "k.toml"
    config.write_text('[http]\nbind-address = "0.0.0.0:9999"\n')
    assert resolve_url("10.0.0.1:9470", config) == "http://10.0.0.1:9470"
    assert resolve_url("https://kafkaops.example", None) == "https://kafkaops.example"
    assert resolve_url(None, config) == "http://127.0.0.1:9999"
    assert resolve_url(None, None) == DEFAULT_URL


def test_user_errors_exit_2_before_talking_to_the_daemon(tmp_path: Path) -> None:
    runner = CliRunner()
    url = ["alert", "--url", "127.0.0.1:1"]
    missing = runner.invoke(cli, [*url, "define", "x", "-tick", str(tmp_path / "no.tick")])
    assert (missing.exit_code, missing.output.strip()) == (
        2,
        f"Error: {tmp_path / 'no.tick'}: file not found",
    )
    tick = tmp_path / "t.tick"
    tick.write_text("stream|from()|alert()")
    dbrp = runner.invoke(cli, [*url, "define", "x", "-tick", str(tick), "-dbrp", "telegraf"])
    assert dbrp.exit_code == 2
    assert "expected database.retention_policy" in dbrp.output
    handler = tmp_path / "h.txt"
    handler.write_text("id: x")
    bad = runner.invoke(cli, [*url, "define-topic-handler", str(handler)])
    assert (bad.exit_code, "must be .yaml, .yml or .json" in bad.output) == (2, True)
    broken = tmp_path / "h.yaml"
    broken.write_text("id: x\nkind: log\n")
    bad = runner.invoke(cli, [*url, "define-topic-handler", str(broken)])
    assert (bad.exit_code, "topic: required" in bad.output) == (2, True)
    config = tmp_path / "bad.toml"
    config.write_text("[http]\nbind-address = 'nope'\n")
    bad = runner.invoke(cli, ["alert", "--config", str(config), "list"])
    assert (bad.exit_code, "bind-address" in bad.output) == (2, True)
