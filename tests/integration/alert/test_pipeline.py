"""Points in (HTTP, Kafka, the lag feed) → TICKscript rules → alerts consumed from Kafka.

Every scenario writes to a one-partition topic and ends with a sentinel point whose alert is
certain, so reading exactly the expected records also proves nothing else was sent before it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from kafkaops.testing import wait_for
from kafkaops.testing.records import produce

pytestmark = pytest.mark.kafka

T0 = 1_700_000_000_000_000_000
MINUTE = 60_000_000_000


def _values(messages) -> list[dict[str, Any]]:
    return [json.loads(m.value()) for m in messages]


def _script(measurement: str, topic: str, alert: str) -> str:
    return f"""
// one task per behaviour under test
stream
    |from()
        .measurement('{measurement}')
        .groupBy('host')
    |alert()
{alert}
        .kafka()
            .cluster('main')
            .kafkaTopic('{topic}')
"""


def _lines(measurement: str, values: list[float], sentinels: int = 1) -> str:
    """The values for host a, then the sentinel host's CRITICAL `sentinels` times (flapping
    suppresses a group's first change, so there it takes two points to get one alert)."""
    points = [f"{measurement},host=a value={v} {T0 + i * MINUTE}" for i, v in enumerate(values)]
    points += [
        f"{measurement},host=sentinel value=99 {T0 + (len(values) + i) * MINUTE}"
        for i in range(sentinels)
    ]
    return "\n".join(points)


SCENARIOS = {
    # The documented example: 61 73 64 85 62 56 47 → INFO WARNING WARNING CRITICAL INFO INFO OK.
    "resets": (
        """        .info(lambda: "value" > 60).infoReset(lambda: "value" < 50)
        .warn(lambda: "value" > 70).warnReset(lambda: "value" < 60)
        .crit(lambda: "value" > 80).critReset(lambda: "value" < 70)""",
        [61, 73, 64, 85, 62, 56, 47],
        ["INFO", "WARNING", "WARNING", "CRITICAL", "INFO", "INFO", "OK"],
    ),
    "changes": (
        """        .crit(lambda: "value" > 80)
        .stateChangesOnly()""",
        [90, 90, 90, 10, 10, 90],
        ["CRITICAL", "OK", "CRITICAL"],
    ),
    # An unchanged CRITICAL is re-sent once 5m passed since the last one sent (points 1m apart).
    "changes5m": (
        """        .crit(lambda: "value" > 80)
        .stateChangesOnly(5m)""",
        [90, 90, 90, 90, 90, 90, 90],
        ["CRITICAL", "CRITICAL"],
    ),
    # history(2): every change is 80% flapping (> 0.5), every repeat 0% (< 0.25), so a change
    # is never sent and a repeated level is.
    "flapping": (
        """        .crit(lambda: "value" > 80)
        .flapping(0.25, 0.5)
        .history(2)""",
        [90, 90, 10, 10, 90, 90],
        ["CRITICAL", "CRITICAL"],
    ),
    "norecoveries": (
        """        .crit(lambda: "value" > 80)
        .noRecoveries()""",
        [90, 10, 90],
        ["CRITICAL", "CRITICAL"],
    ),
}


def test_rule_behaviours_end_to_end(daemon, topic_factory, reader) -> None:
    topics = {}
    for name, (alert, _values_in, _expected) in SCENARIOS.items():
        topics[name] = topic_factory()
        daemon.define(name, _script(name, topics[name], alert))
    body = "\n".join(
        _lines(name, values, 2 if name == "flapping" else 1)
        for name, (_, values, _) in SCENARIOS.items()
    )
    status, answer = daemon.write(body)
    assert status == 204, answer
    for name, (_alert, _values_in, expected) in SCENARIOS.items():
        got = _values(reader(topics[name], len(expected) + 1))
        assert got[-1]["id"] == f"{name}:host=sentinel", name
        assert [a["level"] for a in got[:-1]] == expected, name
    changes = _values(reader(topics["changes5m"], 3))
    assert [a["time"] for a in changes[:2]] == ["2023-11-14T22:13:20Z", "2023-11-14T22:18:20Z"]
    assert changes[1]["duration"] == 5 * MINUTE
    resets = _values(reader(topics["resets"], 8))
    assert [a["previousLevel"] for a in resets[:7]] == [
        "OK", "INFO", "WARNING", "WARNING", "CRITICAL", "INFO", "INFO",
    ]  # fmt: skip
    assert resets[6]["duration"] == 6 * MINUTE  # the recovery carries the whole outage
    norec = _values(reader(topics["norecoveries"], 3))
    assert [(a["recoverable"], a["previousLevel"]) for a in norec[:2]] == [
        (False, "OK"),
        (False, "CRITICAL"),
    ]


def test_templates_and_where_and_dbrp(daemon, topic_factory, reader) -> None:
    topic = topic_factory()
    script = f"""
dbrp "telegraf"."autogen"
var limit = 80
stream
    |from()
        .measurement('disk')
        .where(lambda: "path" =~ /^\\/data/)
        .groupBy('host', 'path')
    |alert()
        .id('{{{{ .TaskName }}}}/{{{{ index .Tags "host" }}}}{{{{ index .Tags "path" }}}}')
        .message('{{{{ .ID }}}} at {{{{ .Level }}}}: '
            + '{{{{ index .Fields "used" | printf "%.1f" }}}}')
        .details('{{{{ if eq .Level "CRITICAL" }}}}page{{{{ else }}}}mail{{{{ end }}}} <ops>')
        .crit(lambda: "used" > limit)
        .kafka()
            .cluster('main')
            .kafkaTopic('{topic}')
"""
    daemon.define("disks", script)
    lines = [
        "disk,host=h1,path=/data used=91",  # → CRITICAL
        "disk,host=h1,path=/var used=99",  # where() drops it
        "disk,host=h2,path=/data used=95",
    ]
    assert daemon.write(lines[0] + "\n" + lines[1], "?db=other")[0] == 204  # not our dbrp
    assert daemon.write("\n".join(lines), "?db=telegraf&rp=autogen")[0] == 204
    first, second = _values(reader(topic, 2))
    assert first["id"] == "disks/h1/data"
    assert first["message"] == "disks/h1/data at CRITICAL: 91.0"
    assert first["details"] == "page <ops>"
    assert second["id"] == "disks/h2/data"


def test_topic_handlers_with_match_and_silences(daemon, topic_factory, reader) -> None:
    everything, critical = topic_factory(), topic_factory()
    daemon.define(
        "web",
        """
stream|from().measurement('web').groupBy('host')
    |alert()
        .warn(lambda: "value" > 70)
        .crit(lambda: "value" > 80)
        .topic('web-alerts')
""",
    )
    for handler_id, topic, match in (
        ("all", everything, ""),
        ("pager", critical, "level() == CRITICAL AND \"host\" != 'canary'"),
    ):
        status, body = daemon.request(
            "POST",
            "/kapacitor/v1/alerts/topics/web-alerts/handlers",
            {"id": handler_id, "kind": "kafka", "match": match, "options": {"topic": topic}},
        )
        assert status == 200, body
        assert body["options"]["cluster"] == "main"  # the only cluster, filled in
    status, silence = daemon.request(
        "POST",
        "/kapacitor/v1/alerts/silences",
        {"match": "\"host\" == 'noisy'", "duration": "1h", "comment": "maintenance"},
    )
    assert status == 200, silence
    body = "\n".join(
        [
            "web,host=a value=75",  # WARNING: all
            "web,host=a value=90",  # CRITICAL: all + pager
            "web,host=canary value=90",  # CRITICAL: all only (match excludes canary)
            "web,host=noisy value=99",  # silenced: nobody
            "web,host=a value=10",  # OK: all
            "web,host=b value=95",  # CRITICAL: all + pager (sentinel)
        ]
    )
    assert daemon.write(body)[0] == 204
    got_all = _values(reader(everything, 5))
    assert [(a["id"], a["level"]) for a in got_all] == [
        ("web:host=a", "WARNING"),
        ("web:host=a", "CRITICAL"),
        ("web:host=canary", "CRITICAL"),
        ("web:host=a", "OK"),
        ("web:host=b", "CRITICAL"),
    ]
    assert [a["id"] for a in _values(reader(critical, 2))] == ["web:host=a", "web:host=b"]
    status, events = daemon.request("GET", "/kapacitor/v1/alerts/topics/web-alerts/events")
    ids = [(e["id"], e["state"]["level"]) for e in events["events"]]
    # The silenced event is still collected: state stays right for when the silence ends.
    assert ids[:3] == [
        ("web:host=b", "CRITICAL"),
        ("web:host=canary", "CRITICAL"),
        ("web:host=noisy", "CRITICAL"),
    ]
    assert 'kafkaops_alert_events_silenced_total{topic="web-alerts"} 1.0' in daemon.text("/metrics")
    status, expired = daemon.request("DELETE", f"/kapacitor/v1/alerts/silences/{silence['id']}")
    assert (status, expired["state"]) == (200, "expired")
    assert daemon.write("web,host=noisy value=98")[0] == 204
    assert _values(reader(everything, 6))[-1]["id"] == "web:host=noisy"
    status, listed = daemon.request("GET", "/kapacitor/v1/alerts/topics/web-alerts/handlers")
    assert [h["id"] for h in listed["handlers"]] == ["all", "pager"]


def test_lag_feed_to_kafka(daemon, topic_factory, reader) -> None:
    topic = topic_factory()
    daemon.define(
        "lag",
        f"""
dbrp "kafkaops"."autogen"
stream
    |from()
        .measurement('kafka_consumer_group_lag')
        .groupBy('clustername', 'group', 'topic', 'partition')
    |alert()
        .crit(lambda: "lag_in_seconds" > 60)
        .stateChangesOnly()
        .message('{{{{ index .Tags "group" }}}}/{{{{ index .Tags "partition" }}}}: {{{{.Level}}}}')
        .kafka()
            .cluster('main')
            .kafkaTopic('{topic}')
""",
    )

    def row(partition: int, seconds: float | None, t: int) -> dict[str, Any]:
        return {
            "clustername": "main",
            "group": "etl",
            "topic": "orders",
            "partition": partition,
            "lag_in_offsets": 500,
            "lag_in_seconds": seconds,
            "status": "ERR",
            "time_ns": T0 + t,
        }

    daemon.publish("lag", [row(0, 120.5, 0), row(1, None, 0)])
    daemon.publish("lag", [row(0, 130.0, MINUTE), row(1, 30.0, MINUTE)])
    daemon.publish("lag", [row(0, 5.0, 2 * MINUTE), row(1, 61.0, 2 * MINUTE)])
    got = _values(reader(topic, 3))
    assert [(a["message"], a["previousLevel"]) for a in got] == [
        ("etl/0: CRITICAL", "OK"),
        ("etl/0: OK", "CRITICAL"),
        ("etl/1: CRITICAL", "OK"),
    ]
    series = got[0]["data"]["series"][0]
    assert series["columns"] == ["time", "lag_in_offsets", "lag_in_seconds", "status"]
    assert series["values"][0][1:] == [500, 120.5, "ERR"]
    _, task = daemon.request("GET", "/kapacitor/v1/tasks/lag")
    assert task["stats"]["errors"] == 1  # partition 1 had no lag_in_seconds the first time


def test_malformed_line_protocol_names_line_and_column_and_keeps_good_lines(
    daemon, topic_factory, reader
) -> None:
    topic = topic_factory()
    daemon.define("cpu", _script("cpu", topic, '        .crit(lambda: "value" > 80)'))
    body = "cpu,host=a value=90\ncpu,host=b value=\ncpu,host=c value=95\ncpu value=1 notatime"
    status, answer = daemon.write(body)
    assert status == 400
    assert answer["accepted"] == 2
    assert [(e["line"], e["column"]) for e in answer["errors"]] == [(2, 18), (4, 13)]
    assert "line 2 column 18" in answer["error"]
    assert "2 point(s) accepted" in answer["error"]
    assert [a["id"] for a in _values(reader(topic, 2))] == ["cpu:host=a", "cpu:host=c"]
    status, answer = daemon.write("cpu value=1", "?precision=fortnight")
    assert status == 400
    assert answer["error"].startswith("precision: unknown precision 'fortnight'")


def test_kafka_input_is_processed_then_committed(
    daemon_factory, clients, topic_factory, reader, unique
) -> None:
    source, out = topic_factory(), topic_factory()
    group = f"alert-input-{unique}"
    daemon = daemon_factory(
        alert={
            "kafka-input": [
                {
                    "cluster": "main",
                    "topics": [source],
                    "group": group,
                    "auto-offset-reset": "earliest",
                    "precision": "s",
                    "db": "telegraf",
                }
            ]
        }
    )
    daemon.define("fromkafka", _script("mem", out, '        .crit(lambda: "value" > 80)'))
    records = [
        b"mem,host=a value=90 1700000000",
        b"mem,host=b value=10 1700000000\nmem,host=b value=85 1700000060",
        b"this is not line protocol",
    ]
    produce(clients.producer(), source, records)
    got = _values(reader(out, 2))
    assert [(a["id"], a["time"]) for a in got] == [
        ("mem:host=a", "2023-11-14T22:13:20Z"),
        ("mem:host=b", "2023-11-14T22:14:20Z"),
    ]
    consumer = clients.consumer(group)

    def committed() -> int:
        (tp,) = consumer.committed([TopicPartition(source, 0)], timeout=10)
        return tp.offset

    assert wait_for(lambda: committed() == 3, 30, what="offsets committed")
    consumer.close()
    metrics = daemon.text("/metrics")
    assert 'kafkaops_alert_points_rejected_total{source="kafka"} 1.0' in metrics
