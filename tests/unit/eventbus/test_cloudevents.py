from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.eventbus.cloudevents import (
    CloudEvent,
    CloudEventError,
    DependencyEvent,
    calendar_event_data,
    decode_action_record,
    decode_trigger_record,
    encode_action_record,
    encode_json_event,
    encode_trigger_record,
    format_time,
    go_time_string,
    kafka_event_data,
    kafka_event_id,
    parse_time,
    webhook_event_data,
)

WHEN = datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)


def event(**kwargs):
    base = {"id": "e1", "source": "webhook", "type": "webhook", "subject": "example", "time": WHEN}
    return CloudEvent(**{**base, **kwargs})


def test_structured_json_has_the_spec_attributes():
    ev = event(data={"body": {"x": 1}})
    assert json.loads(ev.to_json()) == {
        "specversion": "1.0",
        "id": "e1",
        "source": "webhook",
        "type": "webhook",
        "subject": "example",
        "datacontenttype": "application/json",
        "time": "2024-01-02T03:04:05.12Z",
        "data": {"body": {"x": 1}},
    }


def test_key_is_source_dot_subject():
    assert event().key == "webhook.example"
    assert event(subject=None).key == "webhook."


def test_round_trip_keeps_every_attribute():
    ev = event(data={"a": [1, None]}, dataschema="urn:x", extensions={"traceparent": "00-ab"})
    assert CloudEvent.from_json(ev.to_json()) == ev


def test_a_parsed_event_is_written_back_byte_for_byte():
    raw = (
        b'{ "specversion": "1.0", "id": "x", "source": "s", "type": "t",'
        b' "time": "2024-01-02T03:04:05.123456789Z", "data": {"k": 1} }'
    )
    parsed = CloudEvent.from_json(raw)
    assert parsed.to_json() == raw  # nanoseconds and spacing survive the trip
    assert parsed.to_dict()["time"] == "2024-01-02T03:04:05.123456789Z"
    changed = parsed.with_data({"k": 2})
    assert json.loads(changed.to_json())["data"] == {"k": 2}
    assert json.loads(changed.to_json())["time"] == "2024-01-02T03:04:05.123456Z"


def test_binary_data_travels_as_base64():
    ev = event(datacontenttype="application/octet-stream", data=b"\x00\xff")
    obj = json.loads(ev.to_json())
    assert obj["data_base64"] == "AP8="
    assert "data" not in obj
    assert CloudEvent.from_json(ev.to_json()).data == b"\x00\xff"


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"specversion": "0.3", "id": "1", "source": "s", "type": "t"}, "unsupported specversion"),
        ({"specversion": "1.0", "source": "s", "type": "t"}, "'id' must be a non-empty string"),
        ({"specversion": "1.0", "id": "1", "source": "", "type": "t"}, "'source'"),
        ({"specversion": "1.0", "id": "1", "source": "s"}, "'type'"),
        ({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "subject": 3}, "'subject'"),
        (
            {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "time": "yesterday"},
            "not RFC 3339",
        ),
        (
            {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": 1,
             "data_base64": "AA=="},
            "both 'data' and 'data_base64'",
        ),
        (
            {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data_base64": "!!"},
            "not base64",
        ),
        ({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "Bad-Name": 1}, "extension"),
        ([1, 2], "JSON object"),
    ],
)  # fmt: skip
def test_invalid_events_are_rejected_with_the_reason(obj, message):
    with pytest.raises(CloudEventError, match=message):
        CloudEvent.from_dict(obj)


def test_not_json_is_rejected():
    with pytest.raises(CloudEventError, match="not JSON"):
        CloudEvent.from_json(b"{nope")


def test_naive_times_are_refused():
    with pytest.raises(CloudEventError, match="timezone-aware"):
        event(time=datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05.123456789Z", datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2024-01-02t03:04:05.5z", datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
        (
            "2024-01-02T05:04:05+02:00",
            datetime(2024, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))),
        ),
    ],
)
def test_parse_time_accepts_rfc3339(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["2024-01-02", "2024-01-02 03:04:05Z", "2024-01-02T03:04:05"])
def test_parse_time_rejects_non_rfc3339(text):
    with pytest.raises(CloudEventError):
        parse_time(text)


def test_time_formats():
    assert format_time(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2024-01-02T03:04:05Z"
    assert format_time(WHEN.astimezone(timezone(timedelta(hours=-5)))) == (
        "2024-01-02T03:04:05.12Z"
    )
    assert go_time_string(WHEN) == "2024-01-02 03:04:05.12 +0000 UTC"
    assert go_time_string(WHEN.replace(microsecond=0)) == "2024-01-02 03:04:05 +0000 UTC"


@given(
    st.datetimes(timezones=st.just(UTC)),
    st.dictionaries(st.text(), st.integers() | st.text() | st.none(), max_size=3),
)
def test_times_and_the_encoded_fast_path_match_the_event_object(when, data):
    micro = f".{when.microsecond:06d}".rstrip("0") if when.microsecond else ""
    clock = f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when:%H:%M:%S}{micro}"
    assert format_time(when) == clock + "Z"
    assert go_time_string(when) == clock.replace("T", " ") + " +0000 UTC"
    fast = encode_json_event(
        id="s:e:1", source="s", type="kafka", subject="e", time=when, data=data
    )
    built = CloudEvent(id="s:e:1", source="s", type="kafka", subject="e", time=when, data=data)
    assert fast == built.encoded() == (b"s.e", built.to_json())


def test_context_is_argos_event_context():
    assert event().context() == {
        "datacontenttype": "application/json",
        "id": "e1",
        "source": "webhook",
        "specversion": "1.0",
        "subject": "example",
        "time": "2024-01-02T03:04:05Z",
        "type": "webhook",
    }


def test_json_data_parses_bytes_and_refuses_non_json():
    assert event(data=b'{"a":1}').json_data() == {"a": 1}
    assert event(data={"a": 1}).json_data() == {"a": 1}
    with pytest.raises(CloudEventError, match="not valid JSON"):
        event(data=b"\xff").json_data()


def test_is_json_understands_suffixes_and_parameters():
    assert event(datacontenttype="application/cloudevents+json").is_json
    assert event(datacontenttype="application/json; charset=utf-8").is_json
    assert not event(datacontenttype="text/plain").is_json


# --------------------------------------------------------------------------- records


def test_trigger_record_round_trip():
    item = DependencyEvent("dep-a", event(data={"x": 1}))
    key, value = encode_trigger_record("t1", item)
    assert key == b"t1"
    assert json.loads(value)["dependencyName"] == "dep-a"
    assert decode_trigger_record(key, value) == ("t1", item)


def test_record_bytes_are_the_json_of_their_parts():
    item = DependencyEvent('dep "q"', event(data={"x": 1}))
    assert json.loads(item.to_json()) == item.to_dict()


def test_action_record_keeps_every_dependency():
    items = (DependencyEvent("a", event(id="1")), DependencyEvent("b", event(id="2")))
    key, value = encode_action_record("t1", items)
    assert [i["dependencyName"] for i in json.loads(value)] == ["a", "b"]
    assert decode_action_record(key, value) == ("t1", items)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (None, b"{}", "without key"),
        (b"t", None, "without key or value"),
        (b"t", b"[]", "non-empty JSON array"),
        (b"t", b"{}", "non-empty JSON array"),
        (b"t", b'[{"event": {}}]', "dependencyName"),
    ],
)
def test_bad_action_records(key, value, message):
    with pytest.raises(CloudEventError, match=message):
        decode_action_record(key, value)


def test_bad_trigger_records():
    with pytest.raises(CloudEventError, match="without key"):
        decode_trigger_record(b"", b"{}")
    with pytest.raises(CloudEventError, match="not JSON"):
        decode_trigger_record(b"t", b"{")


# --------------------------------------------------------------------------- source payloads


def test_kafka_event_data_with_json_body():
    data = kafka_event_data(
        topic="orders",
        partition=2,
        key=b"k1",
        value=b'{"amount": 5}',
        timestamp=WHEN,
        headers=[("h", b"v"), ("empty", None)],
        json_body=True,
        metadata={"team": "a"},
    )
    assert data == {
        "topic": "orders",
        "key": "k1",
        "partition": 2,
        "body": {"amount": 5},
        "timestamp": "2024-01-02 03:04:05.12 +0000 UTC",
        "headers": {"h": "v", "empty": ""},
        "metadata": {"team": "a"},
    }


def test_kafka_event_data_without_json_body_is_base64_like_go():
    data = kafka_event_data(
        topic="t", partition=0, key=None, value=b"\x01raw", timestamp=WHEN, json_body=False
    )
    assert base64.b64decode(data["body"]) == b"\x01raw"
    assert data["key"] == ""
    assert data["headers"] == {}
    assert "metadata" not in data


def test_kafka_event_data_refuses_non_json_when_json_body_is_set():
    with pytest.raises(ValueError, match="jsonBody is set"):
        kafka_event_data(
            topic="t", partition=0, key=None, value=b"x", timestamp=WHEN, json_body=True
        )


def test_kafka_event_id_is_deterministic_and_uses_the_first_broker():
    assert (
        kafka_event_id("src", "ev", broker="b1:9092,b2:9092", topic="t", partition=3, offset=42)
        == "src:ev:b1:9092:t:3:42"
    )


def test_webhook_event_data():
    data = webhook_event_data({"Content-Type": ["application/json"]}, b'{"x": 1}', {"m": "1"})
    assert data == {
        "header": {"Content-Type": ["application/json"]},
        "body": {"x": 1},
        "metadata": {"m": "1"},
    }
    assert webhook_event_data({}, b"  ")["body"] is None
    with pytest.raises(ValueError, match="not JSON"):
        webhook_event_data({}, b"plain text")


def test_calendar_event_data():
    assert calendar_event_data(WHEN, {"k": "v"}) == {
        "eventTime": "2024-01-02 03:04:05.12 +0000 UTC",
        "metadata": {"k": "v"},
    }


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    event_id=st.text(min_size=1, max_size=8),
    source=st.text(min_size=1, max_size=8),
    subject=st.none() | st.text(max_size=8),
    data=_json,
    micros=st.integers(0, 999_999),
)
def test_any_event_round_trips(event_id, source, subject, data, micros):
    ev = CloudEvent(
        event_id, source, "t", subject=subject, time=WHEN.replace(microsecond=micros), data=data
    )
    assert CloudEvent.from_json(ev.to_json()) == ev


def test_trigger_records_pass_the_event_bytes_through_unchanged():
    raw = (
        b'{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"a",'
        b'"time":"2024-01-02T03:04:05.123456789Z","data":{"n":1.50}}'
    )
    item = DependencyEvent("a", CloudEvent.from_json(raw))
    key, value = encode_trigger_record("t1", item)
    trigger, decoded = decode_trigger_record(key, value)
    assert (trigger, decoded.dependency) == ("t1", "a")
    _, action = encode_action_record(trigger, [decoded])
    assert action == b'[{"dependencyName":"a","event":' + raw + b"}]"  # spacing, 1.50, ns kept
    assert decoded == item


@pytest.mark.parametrize(
    "value",
    [
        b'{ "dependencyName": "a", "event": %s }',
        b'{"event":%s,"dependencyName":"a"}',
        b'{"dependencyName":"a","note":1,"event":%s}',
        b'{"dependencyName":"x\\",\\"event\\":","event":%s,"dependencyName":"a"}',
    ],
)
def test_trigger_records_in_other_layouts_decode_like_any_json(value):
    ev = event(data={"x": 1})
    _, item = decode_trigger_record(b"t1", value % ev.to_json())
    assert item == DependencyEvent("a", ev)


def test_an_invalid_event_in_a_trigger_record_is_rejected_by_the_stage_that_reads_it():
    """The trigger stage only needs JSON (the event stage checked the event); the action
    record of a firing that holds anything else is rejected whole."""
    with pytest.raises(CloudEventError, match="not JSON"):
        decode_trigger_record(b"t1", b'{"dependencyName":"a","event":{"id":}')
    bad = b'{"specversion":"1.0","id":"x","source":"s","type":"t","time":"yesterday"}'
    _trigger, item = decode_trigger_record(b"t1", b'{"dependencyName":"a","event":' + bad + b"}")
    _key, action = encode_action_record("t1", [item])
    with pytest.raises(CloudEventError, match="RFC 3339"):
        decode_action_record(b"t1", action)


def test_integers_beyond_64_bits_stay_exact():
    raw = (
        b'{"specversion":"1.0","id":"x","source":"s","type":"t",'
        b'"data":{"big":123456789012345678901234567890,"n":18446744073709551615}}'
    )
    parsed = CloudEvent.from_json(raw)
    assert parsed.data == {"big": 123456789012345678901234567890, "n": 2**64 - 1}
    assert json.loads(parsed.with_data(parsed.data).to_json())["data"] == parsed.data
    body = kafka_event_data(
        topic="t", partition=0, key=None, value=b'{"id": 98765432109876543210}',
        timestamp=WHEN, json_body=True,
    )["body"]  # fmt: skip
    assert body == {"id": 98765432109876543210}


@pytest.mark.parametrize("raw", [b'{"x": NaN}', b'"\\ud800"', b"1e400"])
def test_json_that_is_not_interchangeable_is_refused(raw):
    """Go's encoding/json refuses these too; the stdlib parser would let NaN onto the bus."""
    with pytest.raises(ValueError, match="jsonBody is set"):
        kafka_event_data(
            topic="t", partition=0, key=None, value=raw, timestamp=WHEN, json_body=True
        )
    with pytest.raises(ValueError, match="not JSON"):
        webhook_event_data({}, raw)
