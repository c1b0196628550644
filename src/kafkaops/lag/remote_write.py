"""Body of a Prometheus remote-write request: a protobuf WriteRequest, snappy-compressed.

The protobuf is written by hand. The schema used (WriteRequest > TimeSeries > Label, Sample) is
fixed by the remote-write 1.0 spec and needs six fields, so a generated module and the protobuf
runtime would add a dependency for no gain; writing bytes directly also lets us reuse each
label's encoding across iterations, since label sets repeat every iteration while only the
sample changes. Snappy uses cramjam's block format, which is what the spec requires (not the
framed format).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping

import cramjam

Series = tuple[str, Mapping[str, str], float, int]
"""(metric name, labels, value, timestamp in ms since the epoch)."""

HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
"""Headers the spec requires on every request (the sender adds auth and the user's headers)."""

_SMALL_VARINTS = [bytes((i,)) for i in range(128)]
_DOUBLE = struct.Struct("<d")
_TAG_LABEL = b"\x0a"  # TimeSeries.labels = 1, length-delimited; also WriteRequest.timeseries = 1
_TAG_LABEL_NAME = b"\x0a"  # Label.name = 1
_TAG_LABEL_VALUE = b"\x12"  # Label.value = 2
_TAG_SAMPLE = b"\x12"  # TimeSeries.samples = 2
_TAG_SAMPLE_VALUE = b"\x09"  # Sample.value = 1, 64-bit
_TAG_SAMPLE_TIMESTAMP = b"\x10"  # Sample.timestamp = 2, varint
_TAG_TIMESERIES = b"\x0a"  # WriteRequest.timeseries = 1


def _varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _SMALL_VARINTS[n]
    if n < 0:
        n += 1 << 64  # int64 two's complement, as protobuf encodes negative int64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _length_delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


class RemoteWriteEncoder:
    """Turns series into a request body; keep one per remote-write target for its label cache.

    The cache holds the encoded bytes of each (label name, value) pair seen; it is emptied when it
    passes `max_cached_labels`, which bounds memory when groups and topics churn.
    """

    __slots__ = ("_labels", "max_cached_labels")

    def __init__(self, max_cached_labels: int = 200_000) -> None:
        self.max_cached_labels = max_cached_labels
        self._labels: dict[tuple[str, str], bytes] = {}

    def encode(self, series: Iterable[Series]) -> bytes:
        """The uncompressed WriteRequest.

        Labels are sorted by name and `__name__` is added, as the spec requires; labels with an
        empty value are left out (Prometheus treats them as absent). Raises ValueError on a
        non-finite value or a label named `__name__`, which would break the series' identity.
        """
        cache = self._labels
        parts = []
        last_timestamp = None
        sample_head = sample_tail = b""
        for name, labels, value, timestamp_ms in series:
            if not math.isfinite(value):
                raise ValueError(f"{name}: sample value must be finite, got {value!r}")
            if "__name__" in labels:
                raise ValueError(f"{name}: label '__name__' is set from the metric name")
            body = []
            for pair in sorted((("__name__", name), *labels.items())):
                encoded = cache.get(pair)
                if encoded is None:
                    if not pair[1]:
                        continue
                    encoded = self._encode_label(pair)
                body.append(encoded)
            if timestamp_ms != last_timestamp:
                # One iteration's series share a timestamp: encode its varint once.
                last_timestamp = timestamp_ms
                timestamp = _varint(timestamp_ms)
                sample_head = _TAG_SAMPLE + _varint(10 + len(timestamp)) + _TAG_SAMPLE_VALUE
                sample_tail = _TAG_SAMPLE_TIMESTAMP + timestamp
            body.append(sample_head + _DOUBLE.pack(value) + sample_tail)
            parts.append(_length_delimited(_TAG_TIMESERIES, b"".join(body)))
        return b"".join(parts)

    def body(self, series: Iterable[Series]) -> bytes:
        """The HTTP body: the WriteRequest, snappy block-compressed."""
        return snappy_block(self.encode(series))

    def _encode_label(self, pair: tuple[str, str]) -> bytes:
        if len(self._labels) >= self.max_cached_labels:
            self._labels.clear()
        name, value = pair[0].encode(), pair[1].encode()
        label = _length_delimited(_TAG_LABEL_NAME, name) + _length_delimited(
            _TAG_LABEL_VALUE, value
        )
        encoded = self._labels[pair] = _length_delimited(_TAG_LABEL, label)
        return encoded


def snappy_block(data: bytes) -> bytes:
    """Snappy block format (no stream framing), as remote write requires."""
    return bytes(cramjam.snappy.compress_raw(data))
