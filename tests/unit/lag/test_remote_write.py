"""The hand-written encoder, checked against Google's protobuf runtime and cramjam's snappy."""

from __future__ import annotations

import math

import cramjam
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.lag.remote_write import HEADERS, RemoteWriteEncoder, snappy_block


def _write_request_class() -> type:
    """prometheus/prompb WriteRequest, TimeSeries, Label and Sample, built at run time so the
    test decodes with the official runtime without generated code."""
    f = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="remote_test.proto", package="prometheus")
    fdp.syntax = "proto3"

    def message(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        msg = fdp.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name

    optional, repeated = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    message(
        "Sample",
        [("value", 1, f.TYPE_DOUBLE, optional, ""), ("timestamp", 2, f.TYPE_INT64, optional, "")],
    )
    message(
        "Label",
        [("name", 1, f.TYPE_STRING, optional, ""), ("value", 2, f.TYPE_STRING, optional, "")],
    )
    message(
        "TimeSeries",
        [
            ("labels", 1, f.TYPE_MESSAGE, repeated, ".prometheus.Label"),
            ("samples", 2, f.TYPE_MESSAGE, repeated, ".prometheus.Sample"),
        ],
    )
    message("WriteRequest", [("timeseries", 1, f.TYPE_MESSAGE, repeated, ".prometheus.TimeSeries")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus.WriteRequest"))


WriteRequest = _write_request_class()


def _decode(body: bytes) -> list[tuple[list[tuple[str, str]], list[tuple[float, int]]]]:
    request = WriteRequest()
    request.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
    return [
        (
            [(label.name, label.value) for label in ts.labels],
            [(sample.value, sample.timestamp) for sample in ts.samples],
        )
        for ts in request.timeseries
    ]


def test_pinned_bytes_of_one_series() -> None:
    encoded = RemoteWriteEncoder().encode([("up", {"job": "a"}, 1.0, 1000)])
    assert encoded.hex() == (
        "0a28"  # timeseries, 40 bytes
        "0a0e0a085f5f6e616d655f5f12027570"  # label __name__="up"
        "0a080a036a6f62120161"  # label job="a"
        "120c09000000000000f03f10e807"  # sample 1.0 @ 1000
    )


def test_same_bytes_as_the_official_serializer() -> None:
    series = [
        ("kafka_consumer_group_lag_in_seconds", {"group": "g", "topic": "t"}, 12.5, 1_700_000),
        ("kafka_total_groups_checked", {"clustername": "c1"}, 3.0, -5),
    ]
    expected = WriteRequest()
    for name, labels, value, ts in series:
        out = expected.timeseries.add()
        for label_name, label_value in sorted({"__name__": name, **labels}.items()):
            out.labels.add(name=label_name, value=label_value)
        out.samples.add(value=value, timestamp=ts)
    assert RemoteWriteEncoder().encode(series) == expected.SerializeToString()


def test_body_decodes_to_the_series_with_sorted_labels() -> None:
    series = [
        (
            "kafka_consumer_group_lag_in_offsets",
            {
                "topic": "orders",
                "partition": "3",
                "group": "billing",
                "clustername": "c1",
                "Z": "z",
            },
            42.0,
            1_720_000_000_123,
        ),
        ("kafka_iteration_time_seconds", {}, 0.25, 1_720_000_000_124),
    ]
    assert _decode(RemoteWriteEncoder().body(series)) == [
        (
            [
                ("Z", "z"),
                ("__name__", "kafka_consumer_group_lag_in_offsets"),
                ("clustername", "c1"),
                ("group", "billing"),
                ("partition", "3"),
                ("topic", "orders"),
            ],
            [(42.0, 1_720_000_000_123)],
        ),
        ([("__name__", "kafka_iteration_time_seconds")], [(0.25, 1_720_000_000_124)]),
    ]


def test_empty_label_values_are_left_out() -> None:
    body = RemoteWriteEncoder().body([("m", {"env": "", "job": "x"}, 1.0, 1)])
    assert _decode(body) == [([("__name__", "m"), ("job", "x")], [(1.0, 1)])]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        RemoteWriteEncoder().encode([("m", {}, value, 1)])


def test_name_label_cannot_be_overridden() -> None:
    with pytest.raises(ValueError, match="__name__"):
        RemoteWriteEncoder().encode([("m", {"__name__": "other"}, 1.0, 1)])


def test_label_cache_is_bounded_and_output_unchanged_after_clearing() -> None:
    encoder = RemoteWriteEncoder(max_cached_labels=3)
    series = [("m", {"g": str(i)}, float(i), i) for i in range(10)]
    first = encoder.encode(series)
    assert len(encoder._labels) <= 3
    assert encoder.encode(series) == first == RemoteWriteEncoder().encode(series)


def test_empty_request_and_snappy_block_format() -> None:
    assert RemoteWriteEncoder().encode([]) == b""
    assert snappy_block(b"") == b"\x00", "block format starts with the varint length"
    data = b"abc" * 100
    compressed = snappy_block(data)
    assert compressed[:2] == bytes([0xAC, 0x02]), "300 as a varint; no stream header"
    assert bytes(cramjam.snappy.decompress_raw(compressed)) == data


def test_protocol_headers() -> None:
    assert HEADERS == {
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }


label_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
series_strategy = st.lists(
    st.tuples(
        st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True),
        st.dictionaries(
            st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,10}", fullmatch=True), label_text, max_size=5
        ),
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(-(2**63), 2**63 - 1),
    ),
    max_size=20,
)


@given(series_strategy)
def test_any_series_round_trips(series: list) -> None:
    decoded = _decode(RemoteWriteEncoder().body(series))
    expected = [
        (
            sorted((k, v) for k, v in {"__name__": name, **labels}.items() if v),
            [(value, ts)],
        )
        for name, labels, value, ts in series
    ]
    assert decoded == expected
