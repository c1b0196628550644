from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.testing.sequence import (
    HEADER_SIZE,
    SequenceGenerator,
    SequencePayload,
    SequenceVerifier,
    decode,
    encode,
)


@pytest.mark.parametrize("size", [100, 1024, HEADER_SIZE])
def test_values_have_the_requested_size_and_decode(size):
    gen = SequenceGenerator(run_id=42, size=size)
    key, value = gen.next(3, produced_ns=123)
    assert len(value) == size
    assert key == b"3-0"
    assert decode(value) == SequencePayload(42, 3, 0, 123)
    assert decode(gen.next(3)[1]).seq == 1
    assert gen.sent == {3: 2}


def test_encode_matches_the_generator():
    assert encode(1, 2, 3, 100) == SequenceGenerator(1, 100).value(2, 3)


def test_values_below_the_header_size_are_refused():
    with pytest.raises(ValueError, match="below the 36-byte header"):
        SequenceGenerator(1, 35)


def test_damage_is_detected():
    value = bytearray(encode(1, 0, 5, 100))
    value[60] ^= 0xFF
    with pytest.raises(ValueError, match="stream 0 seq 5: padding does not match"):
        decode(bytes(value))
    with pytest.raises(ValueError, match="not a sequence record"):
        decode(b"X" * 100)
    with pytest.raises(ValueError, match="shorter than"):
        decode(b"KSQ1")


def test_round_robin_interleaves_streams():
    out = [(s, decode(v).seq) for s, _, v in SequenceGenerator(1, 64).round_robin(2, 2)]
    assert out == [(0, 0), (1, 0), (0, 1), (1, 1)]


def test_a_clean_copy_is_ok():
    gen = SequenceGenerator(7, 100)
    ver = SequenceVerifier(run_id=7)
    for stream, _key, value in gen.round_robin(3, 50):
        ver.observe_value(value, partition=stream)
    report = ver.report(gen.sent)
    assert report.ok, str(report)
    assert str(report) == "ok: 150 records over 3 streams"


def test_missing_duplicated_and_out_of_order_are_counted_per_stream():
    ver = SequenceVerifier()
    for seq in [0, 1, 3, 2, 3, 5]:
        ver.observe(0, seq)
    for seq in [0, 1, 2]:
        ver.observe(1, seq, partition=4)
    report = ver.report({0: 7, 1: 3, 2: 2})
    s0, s1, s2 = report.streams[0], report.streams[1], report.streams[2]
    assert (s0.missing, s0.duplicated, s0.out_of_order, s0.first_missing) == (2, 1, 1, (4, 6))
    assert (s1.missing, s1.misplaced) == (0, 3)
    assert (s2.missing, s2.received, s2.first_missing) == (2, 0, (0, 1))
    assert not report.ok
    assert report.missing == 4
    assert report.duplicated == 1
    assert report.out_of_order == 1
    text = str(report)
    assert "stream 0: 2 missing, 1 duplicated, 1 out of order of 7 (first missing: [4, 6])" in text
    assert "stream 1: 3 misplaced of 3" in text


def test_a_replayed_batch_counts_as_duplicates_not_disorder():
    ver = SequenceVerifier()
    for seq in [0, 1, 2, 3, 1, 2, 3, 4]:
        ver.observe(0, seq)
    s = ver.report({0: 5}).streams[0]
    assert (s.duplicated, s.out_of_order, s.missing) == (3, 0, 0)


def test_records_beyond_the_expected_count_are_unexpected():
    ver = SequenceVerifier()
    ver.observe(0, 0)
    ver.observe(0, 9)
    s = ver.report({0: 1}).streams[0]
    assert (s.unexpected, s.ok) == (1, False)


def test_foreign_and_corrupt_records_are_counted_apart():
    ver = SequenceVerifier(run_id=1)
    ver.observe_value(encode(2, 0, 0, 64))
    ver.observe_value(b"garbage")
    ver.observe_value(None)
    report = ver.report({})
    assert (report.foreign, report.corrupt, report.ok) == (1, 2, False)
    assert report.problems() == ["1 records of another run", "2 corrupt records"]


def test_negative_sequence_numbers_are_a_bug_in_the_caller():
    with pytest.raises(ValueError, match="negative"):
        SequenceVerifier().observe(0, -1)


@given(
    n=st.integers(1, 300),
    drop=st.sets(st.integers(0, 299), max_size=20),
    dup=st.sets(st.integers(0, 299), max_size=20),
    seed=st.integers(),
)
def test_counts_match_a_reference_model(n, drop, dup, seed):
    seqs = [s for s in range(n) if s not in drop]
    seqs += [s for s in dup if s < n and s not in drop]
    random.Random(seed).shuffle(seqs)
    ver = SequenceVerifier()
    top, disorder = -1, 0
    seen: set[int] = set()
    for s in seqs:
        ver.observe(0, s)
        if s not in seen:
            disorder += s < top
            top = max(top, s)
            seen.add(s)
    r = ver.report({0: n}).streams[0]
    assert r.missing == len({s for s in drop if s < n})
    assert r.duplicated == len(seqs) - len(seen)
    assert r.out_of_order == disorder
    assert r.distinct == len(seen)
