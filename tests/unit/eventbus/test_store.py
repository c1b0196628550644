"""Applied definitions round-trip through the embedded store unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafkaops.eventbus.spec import EventSource, Sensor, load_definitions
from kafkaops.eventbus.store import DefinitionStore, normalise_kind

DEFS = """\
apiVersion: argoproj.io/v1alpha1
kind: EventBus
metadata: {name: default, namespace: team}
spec: {kafka: {cluster: main, consumerGroup: {startOldest: true}}}
---
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata: {name: hooks, namespace: team}
spec:
  webhook: {push: {port: "12000", endpoint: /push}}
  calendar: {tick: {interval: 1m30s, timezone: Europe/Berlin}}
---
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: s, namespace: team}
spec:
  dependencies:
    - name: p
      eventSourceName: hooks
      eventName: push
      filters: {data: [{path: body.n, type: number, value: ["3"], comparator: ">"}]}
  triggers:
    - template:
        name: t
        conditions: p
        conditionsReset: [{byTime: {cron: "0 0 * * *"}}]
        http: {url: "http://x/", payload: [{src: {dependencyName: p, dataKey: body}, dest: b}]}
      retryStrategy: {steps: 3, duration: 1000000000, factor: 2}
      atLeastOnce: true
"""


@pytest.fixture
def store(tmp_path: Path):
    s = DefinitionStore.in_data_dir(tmp_path)
    yield s
    s.close()


def test_definitions_come_back_equal_and_reapplying_is_unchanged(store) -> None:
    loaded = load_definitions(DEFS, "d.yaml").definitions
    assert [a.action for a in store.apply(loaded)] == ["created"] * 3
    back = store.definitions()
    assert sorted(back, key=lambda d: d.kind) == sorted(loaded, key=lambda d: d.kind)
    sensor = next(d for d in back if isinstance(d, Sensor))
    assert sensor.spec.triggers[0].condition.text == "p"  # compiled again on load
    assert sensor.spec.triggers[0].retry.duration.total_seconds() == 1
    assert [a.action for a in store.apply(loaded)] == ["unchanged"] * 3


def test_changes_bump_the_generation_and_report_configured(store) -> None:
    store.apply(load_definitions(DEFS, "d.yaml").definitions)
    before = store.generation()
    changed = DEFS.replace("interval: 1m30s", "interval: 2m")
    actions = {
        a.definition.kind: a.action for a in store.apply(load_definitions(changed, "d").definitions)
    }
    assert actions == {"EventBus": "unchanged", "EventSource": "configured", "Sensor": "unchanged"}
    assert store.generation() > before
    [source] = store.definitions("EventSource")
    assert isinstance(source, EventSource)
    assert source.spec.calendar["tick"].interval.total_seconds() == 120


def test_delete_by_kind_namespace_and_name(store) -> None:
    store.apply(load_definitions(DEFS, "d.yaml").definitions)
    assert store.delete("Sensor", "team", "s") is True
    assert store.delete("Sensor", "team", "s") is False
    assert [d.kind for d in store.definitions()] == ["EventBus", "EventSource"]


@pytest.mark.parametrize("text", ["sensor", "Sensors", "SENSOR"])
def test_kinds_are_spelled_as_kubectl_users_do(text: str) -> None:
    assert normalise_kind(text) == "Sensor"
    with pytest.raises(ValueError, match="one of EventBus, EventSource, Sensor"):
        normalise_kind("trigger")
