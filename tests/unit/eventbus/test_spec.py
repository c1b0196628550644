from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kafkaops.eventbus.cloudevents import CloudEvent
from kafkaops.eventbus.paths import ParameterError
from kafkaops.eventbus.spec import (
    Backoff,
    CommandRequest,
    CronSchedule,
    DefinitionError,
    EventBus,
    EventSource,
    HttpRequest,
    KafkaRequest,
    LogRequest,
    Sensor,
    Trigger,
    action_topic,
    load_definitions,
    load_file,
    reset_watermark,
    sensor_group_id,
    trigger_topic,
    validate_references,
)

# Definitions in the shape Argo Events users write (EventBus from the Kafka EventBus PR, the
# Kafka/webhook/calendar EventSources, a Sensor with Kafka and HTTP triggers), plus
# Kubernetes-only settings that must be dropped with a warning, not rejected.
ARGO_DEFINITIONS = """\
apiVersion: argoproj.io/v1alpha1
kind: EventBus
metadata:
  name: default
  namespace: argo-events
spec:
  kafka:
    url: kafka:9092
    topic: "events"
    version: "2.8.0"
    consumerGroup:
      groupName: sensors
      rebalanceStrategy: sticky
      startOldest: true
---
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata:
  name: kafka
  namespace: argo-events
spec:
  template:
    serviceAccountName: argo-events-sa
  kafka:
    orders:
      url: kafka-0:9092,kafka-1:9092
      topic: orders
      jsonBody: true
      partition: "0"
      connectionBackoff:
        duration: 10000000000
        steps: 5
        factor: 2
        jitter: 0.2
    payments:
      url: kafka-0:9092
      topic: payments
      consumerGroup:
        groupName: payments-reader
        oldest: true
        rebalanceStrategy: range
      limitEventsPerSecond: 10
      metadata:
        team: billing
---
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata:
  name: webhook
  namespace: argo-events
spec:
  service:
    ports:
      - port: 12000
        targetPort: 12000
  webhook:
    example:
      port: "12000"
      endpoint: /example
      method: POST
---
apiVersion: argoproj.io/v1alpha1
kind: EventSource
metadata:
  name: calendar
  namespace: argo-events
spec:
  calendar:
    every-ten:
      interval: 10s
    half-past:
      schedule: "30 * * * *"
      timezone: America/New_York
      metadata:
        hello: world
      exclusionDates:
        - "EXDATE:20190102T150405Z"
---
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata:
  name: orders
  namespace: argo-events
spec:
  template:
    serviceAccountName: argo-events-sa
  replicas: 2
  dependencies:
    - name: order-dep
      eventSourceName: kafka
      eventName: orders
      filters:
        data:
          - path: body.amount
            type: number
            comparator: ">="
            value:
              - "50.0"
    - name: payment_dep
      eventSourceName: kafka
      eventName: payments
    - name: hook
      eventSourceName: webhook
      eventName: example
      filtersLogicalOperator: or
      filters:
        context:
          source: webhook
        exprs:
          - expr: kind == "refund"
            fields:
              - name: kind
                path: body.kind
  triggers:
    - template:
        name: paid-order
        conditions: "order-dep && payment_dep"
        conditionsReset:
          - byTime:
              cron: "0 0 * * *"
              timezone: Europe/Berlin
        kafka:
          url: kafka-0:9092
          topic: paid-orders
          partitioningKey: order
          payload:
            - src:
                dependencyName: order-dep
                dataKey: body.id
              dest: order.id
            - src:
                dependencyName: payment_dep
                dataKey: body
              dest: payment
          parameters:
            - src:
                dependencyName: order-dep
                dataKey: body.customer
              dest: partitioningKey
      atLeastOnce: true
      retryStrategy:
        steps: 3
        duration: 1s
        factor: 2
    - template:
        name: notify
        conditions: hook
        http:
          url: http://localhost:8080/notify
          method: PUT
          payload:
            - src:
                dependencyName: hook
                dataKey: body.kind
              dest: kind
      policy:
        status:
          allow: [200, 202]
      dlqTrigger:
        template:
          name: notify-dlq
          log:
            intervalSeconds: 5
"""


@pytest.fixture
def loaded():
    return load_definitions(ARGO_DEFINITIONS, "argo.yaml")


def test_argo_definitions_load_unchanged(loaded):
    kinds = [(type(d).__name__, d.name) for d in loaded.definitions]
    assert kinds == [
        ("EventBus", "default"),
        ("EventSource", "kafka"),
        ("EventSource", "webhook"),
        ("EventSource", "calendar"),
        ("Sensor", "orders"),
    ]


def test_kubernetes_only_settings_are_dropped_with_a_warning_naming_the_line(loaded):
    assert loaded.warnings == (
        "argo.yaml:10: spec.kafka.version: ignored (Kubernetes-only)",
        "argo.yaml:22: spec.template: ignored (Kubernetes-only)",
        "argo.yaml:52: spec.service: ignored (Kubernetes-only)",
        "argo.yaml:85: spec.template: ignored (Kubernetes-only)",
        "argo.yaml:87: spec.replicas: ignored (Kubernetes-only)",
    )


def test_eventbus_fields(loaded):
    bus = loaded.definitions[0]
    assert isinstance(bus, EventBus)
    assert bus.spec.kafka.url == "kafka:9092"
    assert bus.event_topic == "events"
    assert bus.start_oldest
    assert bus.spec.kafka.consumer_group.rebalance_strategy == "sticky"
    assert sensor_group_id(bus, "orders") == "sensors-orders"


def test_eventbus_defaults_follow_argo():
    bus = _one(
        """
        apiVersion: argoproj.io/v1alpha1
        kind: EventBus
        metadata: {name: main, namespace: team}
        spec: {kafka: {cluster: prod, consumerGroup: {oldest: true}, partitioner: hash}}
        """
    )
    assert bus.event_topic == "team-main"
    assert bus.start_oldest  # the later `oldest` spelling works too
    assert sensor_group_id(bus, "s1") == "team-s1"
    assert trigger_topic(bus.event_topic, "s1") == "team-main-s1-trigger"
    assert action_topic(bus.event_topic, "s1") == "team-main-s1-action"
    with pytest.raises(ValueError, match="longer than Kafka's 249"):
        trigger_topic("t" * 240, "sensor")


def test_eventsource_fields(loaded):
    kafka = loaded.definitions[1]
    assert isinstance(kafka, EventSource)
    orders = kafka.spec.kafka["orders"]
    assert orders.json_body and orders.partition == "0"
    assert orders.connection_backoff.duration == timedelta(seconds=10)  # Argo: int nanoseconds
    assert kafka.spec.kafka["payments"].consumer_group.from_oldest
    webhook = loaded.definitions[2].spec.webhook["example"]
    assert (webhook.port, webhook.endpoint, webhook.method) == (12000, "/example", "POST")
    assert [(k, e) for k, e, _ in loaded.definitions[3].events()] == [
        ("calendar", "every-ten"),
        ("calendar", "half-past"),
    ]


def test_sensor_fields(loaded):
    sensor = loaded.definitions[4]
    assert isinstance(sensor, Sensor)
    paid, notify = sensor.spec.triggers
    assert paid.condition.dependencies == ("order-dep", "payment_dep")
    assert not paid.condition.simple
    assert notify.condition.simple
    assert paid.at_least_once
    assert paid.retry.delays(lambda: 0.0) == [timedelta(seconds=1), timedelta(seconds=2)]
    assert notify.retry.attempts == 1
    assert paid.template.reset_schedules == (CronSchedule("0 0 * * *", "Europe/Berlin"),)
    assert notify.dlq_trigger.template.log.interval_seconds == 5
    assert sensor.dependency("hook").filters_logical_operator == "or"


def _one(text):
    result = load_definitions(textwrap.dedent(text), "x.yaml")
    assert len(result.definitions) == 1
    return result.definitions[0]


def _problems(text):
    with pytest.raises(DefinitionError) as err:
        load_definitions(textwrap.dedent(text), "x.yaml")
    return err.value.problems


SENSOR_HEAD = """\
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata: {name: s}
spec:
  dependencies:
    - {name: a, eventSourceName: src, eventName: a}
    - {name: b, eventSourceName: src, eventName: b}
  triggers:
"""


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        (
            "    - template: {name: t, log: {}, slack: {}}",
            "x.yaml:9: Sensor 's': spec.triggers[0].template.slack: unknown field: trigger type"
            " 'slack' is not supported (supported: kafka, http, log, command)",
        ),
        (
            "    - template: {name: t, kafka: {cluster: c, topic: x, payload: [], tls: {}}}",
            "x.yaml:9: Sensor 's': spec.triggers[0].template.kafka.tls: unknown field: put TLS on"
            " the [[kafka]] cluster and reference it with 'cluster'",
        ),
        (
            "    - template: {name: t, conditions: 'a && (b', log: {}}",
            "x.yaml:9: Sensor 's': spec.triggers[0].template.conditions: expected ')', got end of"
            " text at position 8 in 'a && (b'",
        ),
        (
            "    - template: {name: t, conditions: 'a || zz', log: {}}",
            "x.yaml:9: Sensor 's': spec.triggers[0].template.conditions: unknown dependency 'zz'"
            " (dependencies: a, b) at position 6 in 'a || zz'",
        ),
        (
            "    - template: {name: t, log: {}, http: {url: u}}",
            "x.yaml:9: Sensor 's': spec.triggers[0].template: a trigger template needs exactly one"
            " of kafka, http, log or command (got http, log)",
        ),
        (
            "    - template: {name: t, kafka: {url: u, cluster: c, topic: x, payload: []}}",
            "x.yaml:9: Sensor 's': spec.triggers[0].template.kafka: set exactly one of 'cluster'"
            " (a [[kafka]] id) or 'url' (brokers)",
        ),
        (
            "    - template: {name: t, kafka: {url: u, topic: x}}",
            "x.yaml:9: Sensor 's': spec.triggers[0].template.kafka.payload: required field is"
            " missing",
        ),
        (
            "    - {template: {name: t, log: {}},"
            " parameters: [{src: {dependencyName: c}, dest: x}]}",
            "x.yaml:9: Sensor 's': spec.triggers[0].parameters[0].src.dependencyName: unknown"
            " dependency 'c'",
        ),
        (
            "    - template: {name: t, http: {url: u, payload: [{src: {dependencyName: a,"
            " dataKey: 'x|y'}, dest: d}]}}",
            "x.yaml:9: Sensor 's': spec.triggers[0].template.http.payload[0].src.dataKey: gjson"
            " pipes ('|') are not supported at position 2 in path 'x|y' (got 'x|y')",
        ),
        (
            "    - template: {name: t, http: {url: u, payload: [{src: {dependencyName: a},"
            " dest: 'x.*'}]}}",
            "x.yaml:9: Sensor 's': spec.triggers[0].template.http.payload[0].dest: '*' is not"
            " allowed in a destination path at position 3 in path 'x.*' (got 'x.*')",
        ),
        (
            "    - template: {name: t, log: {}, conditionsReset: [{byTime: {cron: '* * *'}}]}",
            "x.yaml:9: Sensor 's': spec.triggers[0].template.conditionsReset[0].byTime.cron: cron"
            " '* * *' needs 5 fields: minute hour dom month dow",
        ),
        (
            "    - template: {name: t, log: {}}\n    - template: {name: t, log: {}}",
            "x.yaml:10: Sensor 's': spec.triggers[1].template.name: duplicate trigger 't'",
        ),
        (
            "    - {template: {name: t, log: {}}, retryStrategy: {steps: -1}}",
            "x.yaml:9: Sensor 's': spec.triggers[0].retryStrategy.steps: Input should be greater"
            " than or equal to 0 (got -1)",
        ),
    ],
)
def test_sensor_errors_name_file_line_and_field(trigger, expected):
    assert _problems(SENSOR_HEAD + trigger + "\n") == [expected]


@pytest.mark.parametrize(
    ("dependency", "expected"),
    [
        (
            "{name: a, eventSourceName: s, eventName: e, filters: {script: 'return true'}}",
            "spec.dependencies[0].filters.script: unknown field: Lua scripts are not supported;"
            " use 'jq' transforms and 'exprs' filters",
        ),
        (
            "{name: a, eventSourceName: s, eventName: e, filters: {data: [{path: x, type: number,"
            " value: ['ten']}]}}",
            "spec.dependencies[0].filters.data[0].value[0]: invalid number 'ten'",
        ),
        (
            "{name: a, eventSourceName: s, eventName: e, filters: {data: [{path: x, type: string,"
            " value: ['(']}]}}",
            "spec.dependencies[0].filters.data[0].value[0]: missing ), unterminated subpattern at"
            " position 0",
        ),
        (
            "{name: a, eventSourceName: s, eventName: e, filters: {data: [{path: x, type: string,"
            " comparator: '>', value: ['a']}]}}",
            "spec.dependencies[0].filters.data[0].comparator: '>' does not apply to strings",
        ),
        (
            "{name: a, eventSourceName: s, eventName: e, filters: {data: [{path: x, type: bool,"
            " comparator: '!=', value: ['true']}]}}",
            "spec.dependencies[0].filters.data[0].comparator: '!=' does not apply to bools",
        ),
        (
            "{name: a, eventSourceName: s, eventName: e, filters: {data: [{path: x, type: bool,"
            " value: []}]}}",
            "spec.dependencies[0].filters.data[0].value: List should have at least 1 item after"
            " validation, not 0",
        ),
        (
            "{name: a, eventSourceName: s, eventName: e, filters: {exprs: [{expr: 'x > y',"
            " fields: [{name: x, path: a}]}]}}",
            "spec.dependencies[0].filters.exprs[0].expr: uses y, which no entry in 'fields' names",
        ),
        (
            "{name: a, eventSourceName: s, eventName: e, filters: {time: {start: '25:00:00',"
            " stop: '01:00:00'}}}",
            "spec.dependencies[0].filters.time.start: '25:00:00' is not a time of day like"
            " 09:30:00 (got '25:00:00')",
        ),
        (
            "{name: a, eventSourceName: s, eventName: e, filters: {time: {start: '01:00:00',"
            " stop: '02:00:00', timezone: Mars/Base}}}",
            "spec.dependencies[0].filters.time.timezone: unknown time zone 'Mars/Base' (use an"
            " IANA name like Europe/Berlin) (got 'Mars/Base')",
        ),
        (
            "{name: a, eventSourceName: s, eventName: e, transform: {jq: '.a[]'}}",
            "spec.dependencies[0].transform.jq: expected a number or a string inside '[]' (no"
            " slices or iteration) at position 4 in jq '.a[]'",
        ),
        (
            "{name: 'a b', eventSourceName: s, eventName: e}",
            "spec.dependencies[0].name: 'a b': dependency names use letters, digits, '-' and '_'"
            " (got 'a b')",
        ),
    ],
)
def test_dependency_errors(dependency, expected):
    text = SENSOR_HEAD.replace(
        "    - {name: a, eventSourceName: src, eventName: a}\n"
        "    - {name: b, eventSourceName: src, eventName: b}\n",
        f"    - {dependency}\n",
    )
    problems = _problems(text + "    - template: {name: t, log: {}}\n")
    assert [p.split(": ", 2)[2] for p in problems] == [expected]


def test_duplicate_dependencies_are_rejected():
    text = SENSOR_HEAD.replace("{name: b,", "{name: a,")
    assert _problems(text + "    - template: {name: t, log: {}}\n") == [
        "x.yaml:7: Sensor 's': spec.dependencies[1].name: duplicate dependency 'a'"
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "{github: {x: {}}}",
            "spec.github: unknown field: event source type 'github' is not supported"
            " (supported: kafka, webhook, calendar, alerts)",
        ),
        (
            "{webhook: {x: {port: 70000, endpoint: /x}}}",
            "spec.webhook.x.port: port 70000 is out of range 1-65535 (got 70000)",
        ),
        (
            "{webhook: {x: {port: 80, endpoint: x}}}",
            "spec.webhook.x.endpoint: endpoint 'x' must start with '/' (got 'x')",
        ),
        (
            "{calendar: {x: {timezone: UTC}}}",
            "spec.calendar.x: set 'schedule' (cron) or 'interval'",
        ),
        (
            "{calendar: {x: {schedule: '@every 5m'}}}",
            "spec.calendar.x: cron '@every 5m': @every is not supported",
        ),
        (
            "{calendar: {x: {interval: 1s, persistence: {}}}}",
            "spec.calendar.x.persistence: unknown field: calendar catch-up is not supported",
        ),
        (
            "{calendar: {x: {interval: 1s, exclusionDates: [tomorrow]}}}",
            "spec.calendar.x.exclusionDates: 'tomorrow' is not like EXDATE:20190102T150405Z",
        ),
        (
            "{kafka: {x: {url: u, topic: t, partition: first}}}",
            "spec.kafka.x.partition: partition 'first' is not a partition number (got 'first')",
        ),
        (
            "{kafka: {x: {url: u, topic: t, sasl: {}}}}",
            "spec.kafka.x.sasl: unknown field: put SASL on the [[kafka]] cluster and reference it"
            " with 'cluster'",
        ),
        ("{alerts: {x: {cluster: c}}}", "spec.alerts.x: set 'topic' or 'topics'"),
        ("{}", "spec: define at least one event under kafka, webhook, calendar or alerts"),
        (
            "{webhook: {x: {port: 80, endpoint: /x}}, calendar: {x: {interval: 1s}}}",
            "spec.calendar.x: event name also used under webhook",
        ),
    ],
)
def test_eventsource_errors(source, expected):
    problems = _problems(
        "apiVersion: argoproj.io/v1alpha1\nkind: EventSource\nmetadata: {name: es}\n"
        f"spec: {source}\n"
    )
    assert [p.split(": ", 2)[2] for p in problems] == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "kind: Sensor\nmetadata: {name: s}\n",
            "x.yaml:1: Sensor 's': apiVersion: required field is missing",
        ),
        ("- 1\n- 2\n", "x.yaml:1: a definition is a mapping, got list"),
        ("kind: Pod\n", "x.yaml:1: kind: 'Pod' is not one of EventBus, EventSource, Sensor"),
        (
            "apiVersion: argoproj.io/v1alpha1\nkind: EventBus\nmetadata: {name: Bad_Name}\n"
            "spec: {kafka: {url: k}}\n",
            "x.yaml:3: EventBus 'Bad_Name': metadata.name: 'Bad_Name' is not a valid name"
            " (lowercase letters, digits, '-' and '.', at most 253) (got 'Bad_Name')",
        ),
        (
            "apiVersion: argoproj.io/v1alpha1\nkind: EventBus\nmetadata: {name: b}\n"
            "spec: {kafka: {url: k, partitioner: random}}\n",
            "x.yaml:4: EventBus 'b': spec.kafka.partitioner: Input should be 'hash' (got 'random')",
        ),
        (
            "apiVersion: argoproj.io/v1alpha1\nkind: EventBus\nmetadata: {name: b}\n"
            "spec: {nats: {}}\n",
            "x.yaml:4: EventBus 'b': spec.kafka: required field is missing",
        ),
    ],
)
def test_document_level_errors(text, expected):
    assert expected in _problems(text)


def test_invalid_yaml_names_the_file():
    assert _problems("key: [unclosed\n")[0].startswith("x.yaml: invalid YAML")


def test_every_problem_is_reported_at_once():
    text = (
        "apiVersion: argoproj.io/v1alpha1\nkind: EventBus\nmetadata: {name: b}\n"
        "spec: {kafka: {url: k, topc: x}}\n---\nkind: Nope\n"
    )
    with pytest.raises(DefinitionError) as err:
        load_definitions(text, "multi.yaml")
    assert len(err.value.problems) == 2
    assert str(err.value).startswith("multi.yaml: 2 problems\n  - multi.yaml:4: EventBus 'b'")


def test_empty_documents_are_skipped_and_duplicates_rejected():
    bus = (
        "apiVersion: argoproj.io/v1alpha1\nkind: EventBus\nmetadata: {name: b}\n"
        "spec: {kafka: {url: k}}\n"
    )
    assert len(load_definitions(f"---\n{bus}---\n---\n", "x").definitions) == 1
    with pytest.raises(DefinitionError, match="EventBus 'b' is defined twice"):
        load_definitions(f"{bus}---\n{bus}", "x")


def test_load_file_names_the_file(tmp_path: Path):
    path = tmp_path / "defs.yaml"
    path.write_text(ARGO_DEFINITIONS)
    assert len(load_file(path).definitions) == 5
    with pytest.raises(DefinitionError, match="cannot read"):
        load_file(tmp_path / "missing.yaml")


def test_validate_references(loaded):
    assert validate_references(loaded.definitions) == []
    sensor = loaded.definitions[4]
    assert validate_references([sensor]) == [
        "Sensor 'orders': EventBus 'default' is not defined",
        "Sensor 'orders': dependency 'order-dep' waits for 'kafka.orders', which no"
        " EventSource emits",
        "Sensor 'orders': dependency 'payment_dep' waits for 'kafka.payments', which no"
        " EventSource emits",
        "Sensor 'orders': dependency 'hook' waits for 'webhook.example', which no"
        " EventSource emits",
    ]


# --------------------------------------------------------------------------- value types


def test_backoff_follows_kubernetes_wait_backoff():
    backoff = Backoff(duration="100ms", steps=4, factor=3, jitter=0.5)
    assert backoff.delays(lambda: 1.0) == [
        timedelta(milliseconds=150),
        timedelta(milliseconds=450),
        timedelta(milliseconds=1350),
    ]
    assert Backoff(steps=0).delays(lambda: 0.0) == []
    assert Backoff(duration=1_000_000).duration == timedelta(milliseconds=1)  # nanoseconds
    assert Backoff(duration="2s", steps=3).delays(lambda: 0.5) == [timedelta(seconds=2)] * 2


def test_cron_schedule_previous_and_next_in_a_time_zone():
    berlin = CronSchedule("0 0 * * *", "Europe/Berlin")
    at = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    assert berlin.previous(at) == datetime(2024, 5, 31, 22, 0, tzinfo=UTC)
    assert berlin.next(at) == datetime(2024, 6, 1, 22, 0, tzinfo=UTC)
    on_the_dot = datetime(2024, 5, 31, 22, 0, tzinfo=UTC)
    assert berlin.previous(on_the_dot) == on_the_dot  # "at or before"
    assert berlin.next(on_the_dot) == datetime(2024, 6, 1, 22, 0, tzinfo=UTC)  # "after"
    assert CronSchedule("@hourly").previous(at) == at


@pytest.mark.parametrize(
    ("expression", "zone", "message"),
    [
        ("*/5 * * * * *", "UTC", "needs 5 fields"),
        ("@every 1m", "UTC", "@every is not supported"),
        ("61 * * * *", "UTC", "invalid cron expression"),
        ("* * * * *", "Nowhere/City", "unknown time zone"),
    ],
)
def test_cron_schedule_rejects(expression, zone, message):
    with pytest.raises(ValueError, match=message):
        CronSchedule(expression, zone)


def test_reset_watermark_takes_the_latest_schedule():
    at = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
    hourly, daily = CronSchedule("0 * * * *"), CronSchedule("0 0 * * *")
    assert reset_watermark((daily, hourly), at) == datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    assert reset_watermark((), at) is None


def test_calendar_next_fire(loaded):
    calendar = loaded.definitions[3].spec.calendar
    anchor = datetime(2024, 1, 1, tzinfo=UTC)
    interval = calendar["every-ten"]
    assert interval.next_fire(anchor, anchor) == anchor + timedelta(seconds=10)
    assert interval.next_fire(anchor + timedelta(seconds=25), anchor) == anchor + timedelta(
        seconds=30
    )
    assert interval.next_fire(anchor - timedelta(hours=1), anchor) == anchor
    half_past = calendar["half-past"]
    assert half_past.next_fire(anchor, anchor) == datetime(2024, 1, 1, 0, 30, tzinfo=UTC)


def test_calendar_skips_excluded_dates():
    source = _one(
        """
        apiVersion: argoproj.io/v1alpha1
        kind: EventSource
        metadata: {name: cal}
        spec:
          calendar:
            daily:
              schedule: "0 9 * * *"
              exclusionDates: ["EXDATE:20240102T090000Z"]
        """
    ).spec.calendar["daily"]
    at = datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    assert source.next_fire(at, at) == datetime(2024, 1, 3, 9, 0, tzinfo=UTC)


def test_alerts_source_filters_levels():
    source = _one(
        """
        apiVersion: argoproj.io/v1alpha1
        kind: EventSource
        metadata: {name: al}
        spec:
          alerts:
            critical:
              cluster: main
              topic: alerts
              topics: [alerts, more-alerts]
              levels: [CRITICAL]
        """
    ).spec.alerts["critical"]
    assert source.all_topics == ["alerts", "more-alerts"]
    assert source.accepts({"level": "CRITICAL"})
    assert not source.accepts({"level": "OK"})
    assert not source.accepts("not an alert")


# --------------------------------------------------------------------------- rendering actions

WHEN = datetime(2024, 1, 2, tzinfo=UTC)


def ev(event_id, data):
    return CloudEvent(event_id, "kafka", "kafka", subject="orders", time=WHEN, data=data)


def test_render_kafka_trigger(loaded):
    paid = loaded.definitions[4].spec.triggers[0]
    request = paid.render(
        {
            "order-dep": ev("o1", {"body": {"id": 7, "customer": "c-9"}}),
            "payment_dep": ev("p1", {"body": {"amount": 7.5}}),
        }
    )
    assert isinstance(request, KafkaRequest)
    assert (request.url, request.cluster, request.topic) == ("kafka-0:9092", None, "paid-orders")
    assert request.key == b"c-9"  # parameters rewrote partitioningKey
    assert json.loads(request.value) == {"order": {"id": "7"}, "payment": '{"amount":7.5}'}


def test_render_http_trigger_and_policy(loaded):
    notify = loaded.definitions[4].spec.triggers[1]
    request = notify.render({"hook": ev("h1", {"body": {"kind": "refund"}})})
    assert isinstance(request, HttpRequest)
    assert (request.method, request.url, request.body) == (
        "PUT",
        "http://localhost:8080/notify",
        b'{"kind":"refund"}',
    )
    assert request.timeout == timedelta(seconds=60)
    assert request.succeeded(202) and not request.succeeded(201)
    dlq = notify.dlq_trigger.render({"hook": ev("h1", {})})
    assert isinstance(dlq, LogRequest) and dlq.interval == timedelta(seconds=5)


def test_trigger_parameters_rewrite_the_template_first():
    sensor = _one(
        SENSOR_HEAD
        + """\
    - template:
        name: t
        command:
          path: /bin/echo
          args: [static]
          timeout: 5s
          parameters:
            - {src: {dependencyName: a, dataKey: word}, dest: args.-1}
          payload:
            - {src: {dependencyName: b, dataKey: n, useRawData: true}, dest: count}
      parameters:
        - {src: {dependencyName: a, dataKey: program}, dest: command.path}
"""
    )
    request = sensor.spec.triggers[0].render(
        {"a": ev("1", {"word": "hi", "program": "/bin/printf"}), "b": ev("2", {"n": 3})}
    )
    assert request == CommandRequest(
        trigger="t",
        argv=("/bin/printf", "static", "hi"),
        stdin=b'{"count":3}',
        timeout=timedelta(seconds=5),
    )


def test_parameters_that_break_the_template_are_reported():
    sensor = _one(
        SENSOR_HEAD
        + """\
    - template: {name: t, http: {url: u}}
      parameters:
        - {src: {dependencyName: a, dataKey: x, useRawData: true}, dest: http.timeout}
"""
    )
    with pytest.raises(ParameterError, match=r"parameters made an invalid http\.timeout"):
        sensor.spec.triggers[0].render({"a": ev("1", {"x": "soon"})})


def test_condition_needs_a_sensor():
    trigger = Trigger.model_validate({"template": {"name": "t", "log": {}}})
    with pytest.raises(RuntimeError, match="not validated as part of a Sensor"):
        _ = trigger.condition
