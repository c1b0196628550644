from __future__ import annotations

import pytest

from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.kafka import ClusterClients
from kafkaops.relay.failover import SourceHealth
from kafkaops.relay.filters import FilterLoadError
from kafkaops.relay.job import RelayJob, relay_health
from kafkaops.relay.pipeline import Relay, RelayGaveUp, RelayRefused


def config(**relay) -> Config:
    return validate(
        Config,
        {
            "kafka": [
                {"id": "a", "brokers": ["h:1"]},
                {"id": "b", "brokers": ["h:2"]},
                {"id": "t", "brokers": ["h:3"]},
            ],
            "relay": {"sources": ["a"], "target": "t", "topics": ["x:x"], **relay},
        },
        "test",
    )


def build(cfg: Config) -> Relay:
    """A relay that has not run: no client connects before `run`."""
    return Relay(cfg.relay[0], lambda cid: ClusterClients(cfg.cluster(cid)))


def test_wanted_only_with_an_enabled_relay() -> None:
    assert RelayJob().wanted(config())
    assert not RelayJob().wanted(config(enabled=False))
    assert not RelayJob().wanted(validate(Config, {}, "test"))


def test_exit_code_is_2_for_a_refusal_and_1_for_giving_up() -> None:
    job = RelayJob()
    assert job.exit_code == 0
    job.failures["x"] = RelayGaveUp("gave up")
    assert job.exit_code == 1
    job.failures["y"] = RelayRefused("refused")
    assert job.exit_code == 2


def test_a_filter_that_cannot_load_fails_at_construction() -> None:
    with pytest.raises(FilterLoadError, match="no-such"):
        build(config(filters={"f": {"path": "no-such-filter"}}))


def test_health_reports_the_current_source_and_the_target() -> None:
    relay = build(config(mode="failover", sources=["a", "b"]))
    starting = relay_health(relay)
    assert not starting.healthy
    assert starting.unhealthy_clusters == ()
    assert starting.detail["relay"]["sources"] == {"a": "not checked yet", "b": "not checked yet"}

    relay.state = "running"
    relay.selector.current = "a"
    relay.monitor.latest = [SourceHealth("a", {("x", 0): 1}), SourceHealth("b", error="refused")]
    running = relay_health(relay)
    assert running.healthy
    assert running.unhealthy_clusters == ("b",)
    assert running.detail["relay"]["source"] == "a"
    assert running.detail["relay"]["target"] == "t"
    assert running.detail["relay"]["sources"] == {"a": "ok", "b": "refused"}

    relay._target_attempt = 2
    relay._target_reason = "40 records unacknowledged for 5.0s"
    stalled = relay_health(relay)
    assert not stalled.healthy
    assert stalled.unhealthy_clusters == ("b", "t")
    assert stalled.detail["relay"]["target_error"] == "40 records unacknowledged for 5.0s"
