"""Sequence-numbered records and the verifier that proves a copy lost or duplicated nothing.

Every value starts with a fixed 36-byte header, then padding up to the requested size:

    magic "KSQ1" | run id u64 | stream i32 | seq i64 | produced_ns i64 | crc32(padding) u32

`stream` is the source partition the record was produced to and `seq` counts 0, 1, 2, ... per
stream, so after any number of hops the verifier knows which stream a record belongs to and where
in it. The key is `<stream>-<seq>`, distinct per record, so key-hash routing spreads them. The
run id tells runs apart when a topic is reused; the CRC catches a mangled payload; produced_ns
lets a benchmark measure end-to-end latency.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

MAGIC = b"KSQ1"
_HEADER = struct.Struct(">4sQiqqI")
HEADER_SIZE = _HEADER.size
_MISSING_SHOWN = 10


@dataclass(frozen=True, slots=True)
class SequencePayload:
    run_id: int
    stream: int
    seq: int
    produced_ns: int


def encode(run_id: int, stream: int, seq: int, size: int, produced_ns: int = 0) -> bytes:
    """One value of exactly `size` bytes (at least HEADER_SIZE)."""
    return SequenceGenerator(run_id, size).value(stream, seq, produced_ns)


def decode(value: bytes) -> SequencePayload:
    """Raise ValueError for anything that is not an intact sequence record."""
    if len(value) < HEADER_SIZE:
        raise ValueError(
            f"record of {len(value)} bytes is shorter than the {HEADER_SIZE}-byte header"
        )
    magic, run_id, stream, seq, produced_ns, crc = _HEADER.unpack_from(value)
    if magic != MAGIC:
        raise ValueError(f"not a sequence record (starts with {value[:4]!r})")
    if zlib.crc32(memoryview(value)[HEADER_SIZE:]) != crc:
        raise ValueError(f"stream {stream} seq {seq}: padding does not match its checksum")
    return SequencePayload(run_id, stream, seq, produced_ns)


class SequenceGenerator:
    """Values of one size for one run; `next` numbers records per stream."""

    def __init__(self, run_id: int, size: int, *, seed: int = 0) -> None:
        if size < HEADER_SIZE:
            raise ValueError(f"size {size} is below the {HEADER_SIZE}-byte header")
        self.run_id = run_id
        self.size = size
        self._pad_len = size - HEADER_SIZE
        self._pad = random.Random(seed).randbytes(self._pad_len + 256)
        self.sent: dict[int, int] = {}

    def value(self, stream: int, seq: int, produced_ns: int = 0) -> bytes:
        start = seq % 256
        pad = self._pad[start : start + self._pad_len]
        header = _HEADER.pack(MAGIC, self.run_id, stream, seq, produced_ns, zlib.crc32(pad))
        return header + pad

    @staticmethod
    def key(stream: int, seq: int) -> bytes:
        return b"%d-%d" % (stream, seq)

    def next(self, stream: int, produced_ns: int = 0) -> tuple[bytes, bytes]:
        """(key, value) of the stream's next record."""
        seq = self.sent.get(stream, 0)
        self.sent[stream] = seq + 1
        return self.key(stream, seq), self.value(stream, seq, produced_ns)

    def round_robin(self, streams: int, per_stream: int) -> Iterator[tuple[int, bytes, bytes]]:
        """(stream, key, value): `per_stream` records on each of `streams` streams, interleaved."""
        for _ in range(per_stream):
            for stream in range(streams):
                key, value = self.next(stream)
                yield stream, key, value


@dataclass(frozen=True)
class StreamReport:
    stream: int
    expected: int
    received: int
    distinct: int
    missing: int
    duplicated: int
    out_of_order: int
    """Records seen for the first time after a higher sequence number of the same stream."""
    misplaced: int
    """Records read from a partition other than their stream (same-partition copies only)."""
    unexpected: int
    """Distinct sequence numbers at or beyond the expected count."""
    first_missing: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return not (
            self.missing
            or self.duplicated
            or self.out_of_order
            or self.misplaced
            or self.unexpected
        )


@dataclass(frozen=True)
class SequenceReport:
    streams: Mapping[int, StreamReport]
    foreign: int = 0
    """Records of another run."""
    corrupt: int = 0
    """Records that are not intact sequence records."""

    def _total(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.streams.values())

    @property
    def missing(self) -> int:
        return self._total("missing")

    @property
    def duplicated(self) -> int:
        return self._total("duplicated")

    @property
    def out_of_order(self) -> int:
        return self._total("out_of_order")

    @property
    def received(self) -> int:
        return self._total("received")

    @property
    def ok(self) -> bool:
        return not self.foreign and not self.corrupt and all(s.ok for s in self.streams.values())

    def problems(self) -> list[str]:
        out = [f"{self.foreign} records of another run"] if self.foreign else []
        if self.corrupt:
            out.append(f"{self.corrupt} corrupt records")
        for s in self.streams.values():
            if s.ok:
                continue
            parts = [
                f"{n} {label}"
                for n, label in (
                    (s.missing, "missing"),
                    (s.duplicated, "duplicated"),
                    (s.out_of_order, "out of order"),
                    (s.misplaced, "misplaced"),
                    (s.unexpected, "unexpected"),
                )
                if n
            ]
            shown = f" (first missing: {list(s.first_missing)})" if s.first_missing else ""
            out.append(f"stream {s.stream}: {', '.join(parts)} of {s.expected}{shown}")
        return out

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.received} records over {len(self.streams)} streams"
        return "; ".join(self.problems())


@dataclass
class _Stream:
    seen: bytearray = field(default_factory=bytearray)
    top: int = -1
    received: int = 0
    distinct: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    misplaced: int = 0


class SequenceVerifier:
    """Counts, per stream, what a consumer of the copy observed."""

    def __init__(self, run_id: int | None = None) -> None:
        self.run_id = run_id
        self._streams: dict[int, _Stream] = {}
        self.foreign = 0
        self.corrupt = 0

    def observe(self, stream: int, seq: int, partition: int | None = None) -> None:
        """One record in consumption order; `partition`: where it was read, if it should match."""
        if seq < 0:
            raise ValueError(f"negative sequence number {seq}")
        st = self._streams.get(stream)
        if st is None:
            st = self._streams[stream] = _Stream()
        st.received += 1
        if partition is not None and partition != stream:
            st.misplaced += 1
        if seq >= len(st.seen):
            st.seen.extend(bytes(max(seq + 1 - len(st.seen), len(st.seen))))
        if st.seen[seq]:
            st.duplicated += 1
            return
        st.seen[seq] = 1
        st.distinct += 1
        if seq < st.top:
            st.out_of_order += 1
        else:
            st.top = seq

    def observe_value(self, value: bytes | None, partition: int | None = None) -> None:
        """Decode and observe one consumed value; foreign or damaged values are counted apart."""
        try:
            payload = decode(value or b"")
        except ValueError:
            self.corrupt += 1
            return
        if self.run_id is not None and payload.run_id != self.run_id:
            self.foreign += 1
            return
        self.observe(payload.stream, payload.seq, partition)

    def report(self, expected: Mapping[int, int]) -> SequenceReport:
        """`expected`: records produced per stream (sequence numbers 0 .. n-1)."""
        out: dict[int, StreamReport] = {}
        for stream in sorted(set(expected) | set(self._streams)):
            n = expected.get(stream, 0)
            st = self._streams.get(stream, _Stream())
            in_range = st.seen[:n]
            present = in_range.count(1)
            first_missing: list[int] = []
            if present < n:
                pos = in_range.find(0)
                while pos != -1 and len(first_missing) < _MISSING_SHOWN:
                    first_missing.append(pos)
                    pos = in_range.find(0, pos + 1)
                if len(in_range) < n:
                    first_missing.extend(
                        range(
                            len(in_range),
                            min(n, len(in_range) + _MISSING_SHOWN - len(first_missing)),
                        )
                    )
            out[stream] = StreamReport(
                stream=stream,
                expected=n,
                received=st.received,
                distinct=st.distinct,
                missing=n - present,
                duplicated=st.duplicated,
                out_of_order=st.out_of_order,
                misplaced=st.misplaced,
                unexpected=st.distinct - present,
                first_missing=tuple(first_missing[:_MISSING_SHOWN]),
            )
        return SequenceReport(out, foreign=self.foreign, corrupt=self.corrupt)
