"""Topics: previous levels per topic, handler matching, silences, persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kafkaops.alert.event import AlertEvent
from kafkaops.alert.handlerspec import validate_handler
from kafkaops.alert.silences import Silences
from kafkaops.alert.state import Level
from kafkaops.alert.tickscript import TickError
from kafkaops.alert.topics import HANDLER_KIND, TOPIC_KIND, Topics
from kafkaops.server.store import DocumentStore


class Sink:
    def __init__(self, name: str) -> None:
        self.kind, self.name = "log", name
        self.events: list[AlertEvent] = []
        self.closed = False

    def submit(self, event: AlertEvent) -> None:
        self.events.append(event)

    async def close(self, timeout: float) -> None:
        self.closed = True


class Factory:
    def __init__(self) -> None:
        self.built: dict[str, Sink] = {}

    def build(self, name: str, _options: Any) -> Sink:
        self.built[name] = Sink(name)
        return self.built[name]


def event(level: Level, alert_id: str = "cpu:host=a", **tags: str) -> AlertEvent:
    return AlertEvent(
        id=alert_id,
        message=f"{alert_id} is {level.name}",
        details="",
        time_ns=1,
        duration_ns=0,
        level=level,
        name="cpu",
        task_name="t",
        tags=tags or {"host": "a"},
    )


def handler(hid: str, topic: str = "ops", match: str = "") -> Any:
    spec = {"id": hid, "topic": topic, "kind": "log", "match": match, "options": {"path": "/x"}}
    return validate_handler(spec)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Topics, Factory, DocumentStore, CollectorRegistry]:
    store = DocumentStore(tmp_path / "a.sqlite")
    factory = Factory()
    registry = CollectorRegistry()
    topics = Topics(store, factory, Silences(store), registry)  # type: ignore[arg-type]
    return topics, factory, store, registry


async def test_previous_level_is_per_topic_and_per_id(parts) -> None:
    topics, *_ = parts
    assert topics.publish("a", event(Level.WARNING)).previous_level is Level.OK
    assert topics.publish("a", event(Level.CRITICAL)).previous_level is Level.WARNING
    assert topics.publish("b", event(Level.CRITICAL)).previous_level is Level.OK
    assert topics.publish("a", event(Level.OK, "other")).previous_level is Level.OK
    assert [e.id for e in topics.events("a")] == ["cpu:host=a", "other"]
    assert [e.id for e in topics.events("a", Level.WARNING)] == ["cpu:host=a"]


async def test_handlers_receive_what_their_match_accepts(parts) -> None:
    topics, factory, _, registry = parts
    topics.put_handler(handler("all"))
    topics.put_handler(handler("crit", match="level() == CRITICAL AND changed()"))
    topics.put_handler(handler("dc", match="\"dc\" == 'eu'"))
    for level in (Level.WARNING, Level.CRITICAL, Level.CRITICAL, Level.OK):
        topics.publish("ops", event(level))
    assert [e.level for e in factory.built["ops:all"].events] == [
        Level.WARNING, Level.CRITICAL, Level.CRITICAL, Level.OK,
    ]  # fmt: skip
    assert [e.level for e in factory.built["ops:crit"].events] == [Level.CRITICAL]
    assert factory.built["ops:dc"].events == []  # no dc tag: skipped and counted
    errors = registry.get_sample_value(
        "kafkaops_alert_match_errors_total", {"topic": "ops", "handler": "dc"}
    )
    assert errors == 4


async def test_silenced_events_are_collected_but_not_handled(parts) -> None:
    topics, factory, _, registry = parts
    topics.put_handler(handler("all"))
    topics.silences.add("\"host\" == 'a'", 10**12)
    topics.publish("ops", event(Level.CRITICAL))
    topics.publish("ops", event(Level.CRITICAL, "cpu:host=b", host="b"))
    assert [e.id for e in factory.built["ops:all"].events] == ["cpu:host=b"]
    assert topics.event_state("ops", "cpu:host=a") is not None
    assert registry.get_sample_value("kafkaops_alert_events_silenced_total", {"topic": "ops"}) == 1


async def test_handlers_persist_replace_and_delete(parts) -> None:
    topics, _, store, _ = parts
    first = topics.put_handler(handler("h"))
    topics.put_handler(handler("h", match="level() > OK"))
    assert store.get(HANDLER_KIND, "ops/h")["match"] == "level() > OK"
    assert topics.get_handler("ops", "h").match is not None
    assert first.sink is not topics.get_handler("ops", "h").sink
    with pytest.raises(TickError):
        topics.put_handler(handler("bad", match="level( >"))
    assert topics.get_handler("ops", "bad") is None
    assert topics.delete_handler("ops", "h")
    assert not topics.delete_handler("ops", "h")
    assert store.list(HANDLER_KIND) == {}
    assert "ops" not in topics.names()


async def test_topic_state_round_trips_through_the_store(parts) -> None:
    topics, factory, store, _ = parts
    topics.publish("ops", event(Level.CRITICAL))
    changed, deleted = topics.take_dirty()
    assert (list(changed), deleted) == (["ops"], set())
    store.put_many(TOPIC_KIND, changed)
    assert topics.take_dirty() == ({}, set())
    again = Topics(store, factory, Silences(store), None)  # type: ignore[arg-type]
    assert again.publish("ops", event(Level.OK)).previous_level is Level.CRITICAL
    assert again.delete_topic("ops")
    assert not again.delete_topic("never")
    assert again.take_dirty() == ({}, {"ops"})
