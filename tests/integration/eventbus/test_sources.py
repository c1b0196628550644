"""Event sources in the daemon (`kafkaops run` with an [eventbus] section): webhook, Kafka,
calendar and alerts each put CloudEvents on the event topic."""

from __future__ import annotations

import json
import textwrap
import time
import urllib.error
import urllib.request

import pytest

from kafkaops.eventbus.cloudevents import CloudEvent
from kafkaops.testing import wait_for

pytestmark = pytest.mark.kafka


def post(url: str, body: bytes, token: str | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError):
        return 0


def test_every_source_type_publishes_cloudevents(bus) -> None:
    incoming, alerts = f"{bus.name}-in", f"{bus.name}-alerts"
    bus.topics(partitions=2, output=[incoming, alerts])
    bus.apply(
        bus.bus_yaml()
        + "---\n"
        + textwrap.dedent(
            f"""\
            apiVersion: argoproj.io/v1alpha1
            kind: EventSource
            metadata: {{name: everything}}
            spec:
              webhook:
                hook: {{port: "12000", endpoint: /hook, method: POST, token: s3cret}}
              kafka:
                orders:
                  cluster: main
                  topic: {incoming}
                  jsonBody: true
                  consumerGroup: {{groupName: {bus.name}-orders, oldest: true}}
              calendar:
                tick: {{interval: 1s}}
              alerts:
                cpu:
                  cluster: main
                  topic: {alerts}
                  levels: [CRITICAL]
                  consumerGroup: {{groupName: {bus.name}-alerts, oldest: true}}
            """
        )
    )
    for n in range(3):
        bus.producer.produce(incoming, json.dumps({"order": n}).encode(), f"o{n}".encode())
    bus.producer.produce(alerts, b'{"id": "cpu:h1", "level": "CRITICAL", "message": "hot"}')
    bus.producer.produce(alerts, b'{"id": "cpu:h2", "level": "OK", "message": "fine"}')
    assert bus.producer.flush(30) == 0
    # Through `kafkaops run`: the [eventbus] section is what turns the event bus on.
    proc = bus.process("daemon", daemon=True).start()
    url = f"http://127.0.0.1:{proc.port}/hook"
    wait_for(lambda: post(url, b'{"n": 1}', "s3cret") == 200, 60, 0.2, what="webhook")
    assert post(url, b'{"n": 2}') == 401
    assert post(url, b'{"n": 3}', "wrong") == 401

    def events() -> dict[str, list[CloudEvent]]:
        out: dict[str, list[CloudEvent]] = {}
        for msg in bus.read(bus.event_topic):
            event = CloudEvent.from_json(msg.value())
            assert msg.key() == f"everything.{event.subject}".encode()
            out.setdefault(event.subject or "", []).append(event)
        return out

    seen = wait_for(
        lambda: (
            (e := events())
            and len(e.get("orders", [])) == 3
            and len(e.get("cpu", [])) == 1
            and len(e.get("tick", [])) >= 2
            and e
        ),
        60,
        0.2,
        what="events from every source",
    )
    assert [e.data["body"] for e in seen["hook"]] == [{"n": 1}]
    assert sorted(e.data["body"]["order"] for e in seen["orders"]) == [0, 1, 2]
    assert {e.type for e in seen["orders"]} == {"kafka"}
    assert seen["cpu"][0].data["id"] == "cpu:h1"
    ticks = [e.time for e in seen["tick"]]
    assert ticks == sorted(ticks) and all(e.type == "calendar" for e in seen["tick"])
    assert proc.stop() == 0, proc.output()[-3000:]
    assert "Traceback" not in proc.output()


def test_kafka_source_is_at_least_once_across_a_sigkill(bus) -> None:
    """Records consumed but not yet published when the process dies are read again; ids are
    derived from the record, so a re-read record keeps its event id."""
    incoming = f"{bus.name}-in"
    bus.topics(partitions=1, output=[incoming])
    bus.apply(
        bus.bus_yaml()
        + "---\n"
        + textwrap.dedent(
            f"""\
            apiVersion: argoproj.io/v1alpha1
            kind: EventSource
            metadata: {{name: copier}}
            spec:
              kafka:
                rows:
                  cluster: main
                  topic: {incoming}
                  consumerGroup: {{groupName: {bus.name}-rows, oldest: true}}
            """
        )
    )
    proc = bus.process("p1").start()
    for n in range(200):
        bus.producer.produce(incoming, f"row-{n}".encode())
    assert bus.producer.flush(30) == 0
    wait_for(lambda: len(bus.read(bus.event_topic)) >= 50, 60, 0.1, what="some events")
    proc.kill()
    proc.start()

    def ids() -> set[str]:
        return {CloudEvent.from_json(m.value()).id for m in bus.read(bus.event_topic)}

    wait_for(lambda: len(ids()) >= 200, 60, 0.2, what="every row as an event")
    assert ids() == {f"copier:rows:{bus.cluster.bootstrap}:{incoming}:0:{n}" for n in range(200)}


def test_a_webhook_applied_while_the_daemon_runs_is_served_at_once(bus) -> None:
    """No restart: the daemon serves webhook paths it learns of while running, and stops
    serving them when their event source is deleted."""
    bus.topics(partitions=1)
    bus.eventbus_settings["reload-interval"] = "200ms"
    bus.apply(bus.bus_yaml())
    proc = bus.process("daemon", daemon=True).start()
    url = f"http://127.0.0.1:{proc.port}/late"
    wait_for(lambda: "event bus started" in proc.output(), 60, 0.1, what="daemon up")
    assert post(url, b'{"n": 1}') == 404
    bus.apply(
        textwrap.dedent(
            """\
            apiVersion: argoproj.io/v1alpha1
            kind: EventSource
            metadata: {name: late}
            spec:
              webhook:
                hook: {port: "12000", endpoint: /late, method: POST}
            """
        )
    )
    wait_for(lambda: post(url, b'{"n": 2}') == 200, 30, 0.2, what="the webhook applied late")
    events = [CloudEvent.from_json(msg.value()) for msg in bus.read(bus.event_topic)]
    assert [(e.source, e.subject, e.data["body"]) for e in events] == [("late", "hook", {"n": 2})]
    assert bus.store.delete("EventSource", "default", "late")
    wait_for(lambda: post(url, b'{"n": 3}') == 404, 30, 0.2, what="the deleted webhook gone")
    assert proc.stop() == 0, proc.output()[-3000:]


def test_calendars_fire_in_one_process_of_several_and_move_when_it_dies(bus) -> None:
    """Two processes run the same calendar source: ticks come at its rate, not twice it; when
    the leading process is SIGKILLed the other takes over within the session timeout."""
    bus.topics(partitions=1)
    bus.eventbus_settings["session-timeout"] = "6s"
    bus.apply(
        bus.bus_yaml()
        + "---\n"
        + textwrap.dedent(
            """\
            apiVersion: argoproj.io/v1alpha1
            kind: EventSource
            metadata: {name: clock}
            spec:
              calendar:
                tick: {interval: 1s}
            """
        )
    )

    def ticks() -> list[float]:
        times = [CloudEvent.from_json(msg.value()).time for msg in bus.read(bus.event_topic)]
        return sorted(t.timestamp() for t in times if t is not None)

    first = bus.process("c1").start()
    wait_for(lambda: "this process leads" in first.output(), 60, 0.2, what="c1 leads")
    second = bus.process("c2").start()
    wait_for(lambda: "event bus started" in second.output(), 60, 0.2, what="c2 up")
    both = time.time()
    wait_for(lambda: any(t >= both + 6 for t in ticks()), 30, 0.2, what="6 s of ticks")
    window = [t for t in ticks() if both <= t < both + 5]
    assert 4 <= len(window) <= 6, window  # one calendar at 1/s; two leaders would give ~10
    assert "this process leads" not in second.output()

    first.kill()
    killed = time.time()
    wait_for(lambda: "this process leads" in second.output(), 30, 0.2, what="c2 takes over")
    wait_for(lambda: any(t > killed + 1 for t in ticks()), 30, 0.2, what="ticks from c2")
    assert second.stop() == 0, second.output()[-3000:]
