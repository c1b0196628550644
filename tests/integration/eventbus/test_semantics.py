"""Sensor semantics on a real broker, with exact firing counts.

The event topic has one partition here, so the order the test sends events in is the order the
triggers see them and every expected firing is known up front. Sensors run in this process;
`bus.settle` waits until every stage has handled everything upstream produced, so "exactly N
firings" also means "and no more".
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kafkaops.eventbus.cloudevents import decode_trigger_record
from kafkaops.testing import wait_for

pytestmark = pytest.mark.kafka


def _kafka_trigger(name: str, topic: str, deps: str, conditions: str, extra: str = "") -> str:
    payload = "\n".join(
        f"""            - src: {{dependencyName: {d}, contextKey: id}}
              dest: {d}"""
        for d in deps
    )
    return f"""\
    - template:
        name: {name}
        conditions: "{conditions}"
        kafka:
          cluster: main
          topic: {topic}
          partitioningKey: {name}
          payload:
            - src: {{dependencyName: {deps[0]}, value: {name}}}
              dest: trigger
{payload}
{extra}"""


def _sensor(bus, name: str, deps: str, triggers: str, filters: dict[str, str] | None = None) -> str:
    lines = []
    for d in deps:
        extra = (filters or {}).get(d, "")
        lines.append(f"    - {{name: {d}, eventSourceName: src, eventName: {d}{extra}}}")
    return (
        bus.bus_yaml()
        + "---\n"
        + textwrap.dedent(
            f"""\
            apiVersion: argoproj.io/v1alpha1
            kind: Sensor
            metadata: {{name: {name}}}
            spec:
              dependencies:
            """
        )
        + "\n".join(lines)
        + "\n  triggers:\n"
        + triggers
    )


def _fired(bus, topic: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    out = []
    for record in bus.output(topic):
        trigger = record.pop("trigger")
        out.append((trigger, tuple(sorted(record.items()))))
    return sorted(out)


def test_simple_and_compound_conditions_fire_exactly(bus) -> None:
    out = f"{bus.name}-out"
    bus.topics(partitions=1, output=[out])
    text = _sensor(
        bus,
        "conds",
        "abc",
        _kafka_trigger("only-a", out, "a", "a")
        + _kafka_trigger("a-and-b", out, "ab", "a && b")
        + _kafka_trigger("ab-or-c", out, "abc", "(a && b) || c"),
    )
    bus_def, sensor = bus.apply(text)
    runner = bus.run_inline(sensor, bus_def)
    # a1 then a2: the latest a wins; b1 completes both compound triggers; c1 fires ab-or-c alone.
    bus.send(
        bus.event("a", "a1"),
        bus.event("a", "a2"),
        bus.event("b", "b1"),
        bus.event("c", "c1"),
        bus.event("b", "b2"),
        bus.event("a", "a3"),
    )
    topics = bus.settle("conds")
    expected = sorted(
        [
            ("only-a", (("a", "a1"),)),
            ("only-a", (("a", "a2"),)),
            ("only-a", (("a", "a3"),)),
            ("a-and-b", (("a", "a2"), ("b", "b1"))),
            ("a-and-b", (("a", "a3"), ("b", "b2"))),
            ("ab-or-c", (("a", "a2"), ("b", "b1"))),
            ("ab-or-c", (("c", "c1"),)),
            ("ab-or-c", (("a", "a3"), ("b", "b2"))),
        ]
    )
    assert sorted(bus.firings(topics["action"])) == expected
    assert _fired(bus, out) == expected
    # Simple triggers skip the trigger topic: only the compound triggers' events are there.
    assert sorted(m.key().decode() for m in topics["trigger"]) == sorted(
        ["a-and-b"] * 5 + ["ab-or-c"] * 6
    )
    assert runner.failure is None


def test_resets_drop_events_from_before_the_last_reset(bus) -> None:
    out = f"{bus.name}-out"
    bus.topics(partitions=1, output=[out])
    reset = """        conditionsReset:
          - byTime: {cron: "0 0 1 1 *", timezone: UTC}
"""
    text = _sensor(bus, "resets", "ab", _kafka_trigger("both", out, "ab", "a && b", reset))
    bus_def, sensor = bus.apply(text)
    bus.run_inline(sensor, bus_def)
    # An `a` stamped before this year's reset (1 Jan) is stale on arrival and never counts.
    last_year = datetime(datetime.now(UTC).year - 1, 6, 1, tzinfo=UTC)
    bus.send(bus.event("a", "a-old"), timestamp_ms=int(last_year.timestamp() * 1000))
    bus.send(bus.event("b", "b1"))
    topics = bus.settle("resets")
    assert topics["action"] == []
    bus.send(bus.event("a", "a1"))
    topics = bus.settle("resets")
    assert bus.firings(topics["action"]) == [("both", (("a", "a1"), ("b", "b1")))]
    assert _fired(bus, out) == [("both", (("a", "a1"), ("b", "b1")))]


def test_filters_decide_which_events_count(bus) -> None:
    out = f"{bus.name}-out"
    bus.topics(partitions=1, output=[out])
    big = """, filters: {data: [{path: amount, type: number, value: ["100"], comparator: ">="}]}"""
    red = """, filters: {data: [{path: colour, type: string, value: ["^red$"]}]}"""
    text = _sensor(
        bus,
        "filters",
        "ab",
        _kafka_trigger("big-red", out, "ab", "a && b"),
        filters={"a": big, "b": red},
    )
    bus_def, sensor = bus.apply(text)
    bus.run_inline(sensor, bus_def)
    bus.send(
        bus.event("a", "a-small", {"amount": 50}),
        bus.event("b", "b-blue", {"colour": "blue"}),
        bus.event("a", "a-big", {"amount": 150}),
        bus.event("b", "b-reddish", {"colour": "reddish"}),
        bus.event("a", "a-none", {"other": 1}),  # the path is missing: a filter error rejects
        bus.event("b", "b-red", {"colour": "red"}),
    )
    topics = bus.settle("filters")
    assert bus.firings(topics["action"]) == [("big-red", (("a", "a-big"), ("b", "b-red")))]
    # Rejected events never reach the trigger topic.
    assert len(topics["trigger"]) == 2


def test_parameters_shape_an_http_request(bus, http_server) -> None:
    bus.topics(partitions=1)
    text = (
        bus.bus_yaml()
        + "---\n"
        + textwrap.dedent(
            f"""\
        apiVersion: argoproj.io/v1alpha1
        kind: Sensor
        metadata: {{name: http}}
        spec:
          dependencies:
            - {{name: order, eventSourceName: src, eventName: order}}
            - {{name: user, eventSourceName: src, eventName: user}}
          triggers:
            - template:
                name: notify
                http:
                  url: {http_server.url}/orders/
                  method: PUT
                  headers: {{X-Team: billing}}
                  payload:
                    - src: {{dependencyName: order, dataKey: total}}
                      dest: amount
                    - src: {{dependencyName: user, dataKey: name}}
                      dest: customer.name
                    - src: {{dependencyName: order, contextKey: id}}
                      dest: order
              parameters:
                - src: {{dependencyName: order, dataKey: id}}
                  dest: http.url
                  operation: append
              atLeastOnce: true
        """
        )
    )
    bus_def, sensor = bus.apply(text)
    bus.run_inline(sensor, bus_def)
    bus.send(
        bus.event("order", "o-1", {"id": "1234", "total": 99.5}),
        bus.event("user", "u-1", {"name": "Ada"}),
    )
    bus.settle("http")
    assert len(http_server.requests) == 1
    method, path, body = http_server.requests[0]
    assert (method, path) == ("PUT", "/orders/1234")
    assert json.loads(body) == {"amount": "99.5", "customer": {"name": "Ada"}, "order": "o-1"}


def test_failed_transactions_never_leave_a_firing_half_done(bus) -> None:
    """BeginTxn and CommitTxn fail once each (injected); every firing still lands exactly
    once, with its checkpoint, and the Kafka trigger runs once per firing."""
    out = f"{bus.name}-out"
    bus.topics(partitions=1, output=[out])
    text = _sensor(bus, "txfail", "ab", _kafka_trigger("both", out, "ab", "a && b"))
    bus.apply(text)
    proc = bus.process(
        "p1", KAFKAOPS_EVENTBUS_CRASH_AT="trigger-begin:1:error,trigger-produced:2:error"
    ).start()
    for i in range(3):  # one firing per batch: the failures hit the first and second firing
        bus.send(bus.event("a", f"a{i}"), bus.event("b", f"b{i}"))
        topics = bus.settle("txfail")
    expected = [("both", (("a", f"a{i}"), ("b", f"b{i}"))) for i in range(3)]
    assert sorted(bus.firings(topics["action"])) == expected
    assert _fired(bus, out) == expected
    log = proc.output()
    assert log.count("batch not committed; returning to the last commit") == 2
    assert "failpoint trigger-begin:1" in log
    assert "failpoint trigger-produced:2" in log


@pytest.mark.parametrize("window", ["event-produced", "trigger-produced"])
def test_a_failed_transaction_drops_the_batch_prepared_while_it_committed(bus, window) -> None:
    """The event and trigger stages prepare the next batch (the trigger stage: updating its
    held events) while a transaction commits. The second commit fails (injected) with a
    backlog waiting, so the next batch has been prepared: it is dropped and read again, the
    trigger topic holds every event exactly once, in order, and every pair fires once."""
    out = f"{bus.name}-out"
    bus.topics(partitions=1, output=[out])
    text = _sensor(bus, "txfail2", "ab", _kafka_trigger("both", out, "ab", "a && b"))
    bus.apply(text)
    pairs = 250  # five batches of 100 before the sensor starts: a backlog
    bus.send(*(e for i in range(pairs) for e in (bus.event("a", f"a{i}"), bus.event("b", f"b{i}"))))
    proc = bus.process("p1", KAFKAOPS_EVENTBUS_CRASH_AT=f"{window}:2:error").start()
    topics = bus.settle("txfail2")
    held = [decode_trigger_record(m.key(), m.value())[1].event.id for m in topics["trigger"]]
    assert held == [f"{d}{i}" for i in range(pairs) for d in "ab"]
    expected = sorted(("both", (("a", f"a{i}"), ("b", f"b{i}"))) for i in range(pairs))
    assert sorted(bus.firings(topics["action"])) == expected
    assert _fired(bus, out) == expected
    log = proc.output()
    assert log.count("batch not committed; returning to the last commit") == 1
    assert f"failpoint {window}:2" in log


def test_state_survives_sigkill(bus) -> None:
    """Send a, SIGKILL the sensor, restart it, send b: exactly one firing."""
    out = f"{bus.name}-out"
    bus.topics(partitions=1, output=[out])
    text = _sensor(bus, "durable", "ab", _kafka_trigger("both", out, "ab", "a && b"))
    bus.apply(text)
    proc = bus.process("p1").start()
    bus.send(bus.event("a", "a1"))
    topics = bus.settle("durable")
    assert len(topics["trigger"]) == 1 and topics["action"] == []
    proc.kill()
    proc.start()
    bus.send(bus.event("b", "b1"))
    topics = bus.settle("durable")
    assert bus.firings(topics["action"]) == [("both", (("a", "a1"), ("b", "b1")))]
    assert _fired(bus, out) == [("both", (("a", "a1"), ("b", "b1")))]
    # A second restart replays the trigger topic: the metadata stops the firing repeating.
    proc.kill()
    proc.start()
    bus.send(bus.event("a", "a2"))
    topics = bus.settle("durable")
    assert len(bus.firings(topics["action"])) == 1
    assert len(bus.output(out)) == 1


@pytest.mark.parametrize("at_least_once", [True, False], ids=["at-least-once", "at-most-once"])
def test_sigkill_during_the_action(bus, http_server, at_least_once: bool) -> None:
    """The HTTP action hangs; the sensor is SIGKILLed inside it and restarted. At-least-once
    runs it again; at-most-once committed first and never runs it again."""
    bus.topics(partitions=1)
    text = (
        bus.bus_yaml()
        + "---\n"
        + textwrap.dedent(
            f"""\
        apiVersion: argoproj.io/v1alpha1
        kind: Sensor
        metadata: {{name: kill-action}}
        spec:
          dependencies:
            - {{name: a, eventSourceName: src, eventName: a}}
          triggers:
            - template:
                name: call
                http: {{url: "{http_server.url}/hang", method: POST}}
              atLeastOnce: {str(at_least_once).lower()}
        """
        )
    )
    bus.apply(text)
    proc = bus.process("p1").start()
    bus.send(bus.event("a", "a1"))
    assert http_server.entered.wait(60), proc.output()
    proc.kill()
    http_server.release.set()
    proc.start()
    if at_least_once:
        bus.settle("kill-action")
        assert [r[1] for r in http_server.requests] == ["/hang", "/hang"]
    else:
        bus.settle("kill-action")
        assert [r[1] for r in http_server.requests] == ["/hang"]
    assert proc.stop() == 0


def test_at_least_once_failure_goes_to_the_dead_letter_trigger(bus, http_server) -> None:
    out = f"{bus.name}-dlq"
    bus.topics(partitions=1, output=[out])
    text = (
        bus.bus_yaml()
        + "---\n"
        + textwrap.dedent(
            f"""\
        apiVersion: argoproj.io/v1alpha1
        kind: Sensor
        metadata: {{name: dlq}}
        spec:
          dependencies:
            - {{name: a, eventSourceName: src, eventName: a}}
          triggers:
            - template:
                name: flaky
                http: {{url: "{http_server.url}/fail", method: POST}}
              atLeastOnce: true
              retryStrategy: {{steps: 3, duration: 10ms, factor: 2}}
              dlqTrigger:
                template:
                  name: dead-letter
                  kafka:
                    cluster: main
                    topic: {out}
                    payload:
                      - src: {{dependencyName: a, contextKey: id}}
                        dest: lost
        """
        )
    )
    bus_def, sensor = bus.apply(text)
    bus.run_inline(sensor, bus_def)
    bus.send(bus.event("a", "a1"))
    bus.settle("dlq")
    assert [r[1] for r in http_server.requests] == ["/fail"] * 3
    assert bus.output(out) == [{"lost": "a1"}]
    assert bus.metrics.actions.labels("dlq", "flaky", "dead_lettered")._value.get() == 1


def test_a_zombie_cannot_commit_after_losing_its_partitions(bus) -> None:
    """p1 freezes (SIGSTOP) with a firing produced but not committed; p2 takes the partitions
    over and commits the firing; p1 wakes up, its commit is refused by the group coordinator
    (KIP-447 group metadata), its transaction aborts, and the firing exists exactly once."""
    out = f"{bus.name}-out"
    bus.topics(partitions=1, output=[out])
    bus.eventbus_settings["transaction-timeout"] = "60s"
    text = _sensor(bus, "zombie", "ab", _kafka_trigger("both", out, "ab", "a && b"))
    bus.apply(text)
    p1 = bus.process("p1", KAFKAOPS_EVENTBUS_CRASH_AT="trigger-produced:1:stop").start()
    wait_for_stage(bus, "zombie", "trigger")
    bus.send(bus.event("a", "a1"), bus.event("b", "b1"))

    def frozen() -> bool:
        return Path(f"/proc/{p1.proc.pid}/stat").read_text().split()[2] == "T"

    wait_for(frozen, 60, 0.1, what="p1 frozen inside its transaction")
    p2 = bus.process("p2").start()
    try:
        # p2 owns the trigger partition once p1's session expired, and commits the firing.
        wait_for(
            lambda: p2.positions().get(("zombie", "trigger", 0), -1) >= 2,
            60,
            0.2,
            what="p2 to take over and commit",
        )
    finally:
        os.kill(p1.proc.pid, signal.SIGCONT)
    refused = wait_for(
        lambda: [line for line in p1.output().splitlines() if "batch not committed" in line],
        60,
        0.2,
        what="p1's commit refused",
    )
    assert any(
        code in refused[0]
        for code in ("UNKNOWN_MEMBER_ID", "ILLEGAL_GENERATION", "FENCED_INSTANCE_ID")
    ), refused
    topics = bus.settle("zombie")
    assert bus.firings(topics["action"]) == [("both", (("a", "a1"), ("b", "b1")))]
    assert _fired(bus, out) == [("both", (("a", "a1"), ("b", "b1")))]
    assert p1.alive and p2.alive


def wait_for_stage(bus, sensor: str, stage: str) -> None:
    wait_for(
        lambda: any(k[0] == sensor and k[1] == stage for k in bus.positions()),
        60,
        0.1,
        what=f"{sensor} {stage} stage assigned",
    )


def test_a_running_daemon_follows_apply_and_delete(bus) -> None:
    out = f"{bus.name}-out"
    bus.topics(partitions=1, output=[out])
    bus.eventbus_settings["reload-interval"] = "200ms"
    bus.apply(bus.bus_yaml())
    proc = bus.process("p1").start()
    wait_for(lambda: "event bus started" in proc.output(), 60, 0.1, what="daemon up")
    bus.apply(_sensor(bus, "late", "a", _kafka_trigger("on-a", out, "a", "a")))
    wait_for_stage(bus, "late", "action")
    bus.send(bus.event("a", "a1"))
    bus.settle("late")
    assert _fired(bus, out) == [("on-a", (("a", "a1"),))]
    assert bus.store.delete("Sensor", "default", "late")
    wait_for(lambda: "sensor stopped" in proc.output(), 30, 0.1, what="sensor stopped")
    assert proc.stop() == 0
