from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.relay.position import (
    CHECKPOINT_HEADER,
    RUN_HEADER,
    RUN_LENGTH_HEADER,
    RUN_START_HEADER,
    SOURCE_HEADER,
    BoundaryDedupe,
    Checkpoint,
    Cursor,
    Mark,
    PositionFormatError,
    PositionTracker,
    RecentRecords,
    ResumeError,
    ResumeScan,
    SourceState,
    Stamp,
    Stamps,
    StopAtEnd,
    TailRecord,
    decode_checkpoint,
    decode_stamp,
    encode_checkpoint,
    encode_stamp,
    plan_start,
    read_block,
    relay_lag,
)

TOPIC_CHARS = st.text(alphabet="abcxyzABC019._-", min_size=1, max_size=20)
NAT = st.integers(min_value=0, max_value=2**62)


# --- header codecs -------------------------------------------------------------------------------


def test_stamp_format_is_compact_and_readable():
    stamp = Stamp("dc1", "orders", 3, Mark(7, 12), 98765)
    assert encode_stamp(stamp) == b"dc1|orders|3|7.12|98765"
    assert decode_stamp(b"dc1|orders|3|7.12|98765") == stamp


@given(
    st.builds(
        Stamp, st.text(min_size=1, max_size=30), TOPIC_CHARS, NAT, st.builds(Mark, NAT, NAT), NAT
    )
)
def test_stamp_round_trips_any_cluster_id(stamp):
    assert decode_stamp(encode_stamp(stamp)) == stamp


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"dc1|t|0|1.2",
        b"dc1|t|x|1.2|3",
        b"dc1|t|0|1|3",
        b"dc1|t|0|1.2|-3",
        b"|t|0|1.2|3",
        b"dc1||0|1.2|3",
        b"\xff|t|0|1.2|3",
        b"dc1|t|0|1.2|+3",
    ],
)
def test_bad_stamps_are_refused(raw):
    with pytest.raises(PositionFormatError, match=SOURCE_HEADER):
        decode_stamp(raw)


@given(
    relay=st.text(max_size=10),
    version=st.tuples(NAT, NAT),
    frontier=st.tuples(NAT, NAT),
    cursors=st.dictionaries(
        st.tuples(TOPIC_CHARS, st.integers(0, 500)),
        st.builds(Cursor, st.text(min_size=1, max_size=8), NAT, st.integers(-1, 2**50)),
        max_size=8,
    ),
)
def test_checkpoint_round_trips(relay, version, frontier, cursors):
    ckpt = Checkpoint(relay, version, Mark(*frontier), cursors)
    assert decode_checkpoint(encode_checkpoint(ckpt)) == ckpt


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[]",
        b'{"relay":"r"}',
        b'{"relay":1,"version":[0,0],"frontier":[0,0],"pos":[]}',
        b'{"relay":"r","version":[0,true],"frontier":[0,0],"pos":[]}',
        b'{"relay":"r","version":[0,0],"frontier":[0,0],"pos":[["c","t",[[0,1]]]]}',
    ],
)
def test_bad_checkpoints_are_refused(raw):
    with pytest.raises(PositionFormatError, match=CHECKPOINT_HEADER):
        decode_checkpoint(raw)


def _ckpt(relay="r") -> bytes:
    return encode_checkpoint(Checkpoint(relay, (1, 0), Mark(1, 0), {}))


def test_our_headers_are_the_last_stamp_and_a_checkpoint_after_it():
    upstream = encode_stamp(Stamp("up", "t", 0, Mark(9, 9), 5))
    ours = encode_stamp(Stamp("dc1", "t", 1, Mark(1, 0), 7))
    headers = [
        ("app", b"x"),
        (SOURCE_HEADER, upstream),
        (CHECKPOINT_HEADER, _ckpt("upstream-relay")),
        (SOURCE_HEADER, ours),
    ]
    stamp, ckpt, run = read_block(headers)[:3]
    assert stamp == decode_stamp(ours)
    assert ckpt is None, "a checkpoint before our stamp belongs to the upstream hop"
    assert run is None
    stamp, ckpt, _ = read_block([*headers, (CHECKPOINT_HEADER, _ckpt("r"))])[:3]
    assert ckpt is not None and ckpt.relay == "r"


def test_records_without_our_stamp_have_no_position():
    assert read_block(None)[:3] == (None, None, None)
    assert read_block([("app", b"x"), (CHECKPOINT_HEADER, _ckpt())])[:3] == (None, None, None)
    with pytest.raises(PositionFormatError):
        read_block([(SOURCE_HEADER, None)])[:3]


def test_our_block_is_recognised_after_an_upstream_relays_headers_in_either_form():
    upstream = encode_stamp(Stamp("up", "t", 0, Mark(9, 9), 5))
    ours = encode_stamp(Stamp("dc1", "t", 1, Mark(1, 0), 7))
    token_after_stamp = [(SOURCE_HEADER, upstream), (RUN_HEADER, b"ours")]
    assert read_block(token_after_stamp)[:3] == (None, None, b"ours")
    stamp_after_token = [(RUN_HEADER, b"up"), (SOURCE_HEADER, ours)]
    assert read_block(stamp_after_token)[:3] == (decode_stamp(ours), None, None)
    both = [
        (SOURCE_HEADER, upstream),
        (RUN_START_HEADER, b"up"),
        (CHECKPOINT_HEADER, _ckpt("upstream-relay")),
        (SOURCE_HEADER, ours),
        (RUN_START_HEADER, b"ours"),
    ]
    assert read_block(both)[:3] == (decode_stamp(ours), None, b"ours")
    ckpt = read_block([*both, (CHECKPOINT_HEADER, _ckpt("r"))])[:3][1]
    assert ckpt is not None and ckpt.relay == "r"
    with pytest.raises(PositionFormatError, match="without a stamp"):
        read_block([("app", b"x"), (RUN_START_HEADER, b"t")])[:3]
    with pytest.raises(PositionFormatError, match="without a value"):
        read_block([(RUN_HEADER, None)])[:3]


def test_stamps_give_a_runs_token_records_the_offsets_after_its_stamp():
    stamps = Stamps()
    start = [(SOURCE_HEADER, encode_stamp(Stamp("dc1", "t", 0, Mark(1, 0), 41)))]
    assert stamps.of([(RUN_HEADER, b"T")]) is None, "its stamp was not read"
    assert stamps.of([*start, (RUN_START_HEADER, b"T")]).offset == 41
    assert stamps.of([("app", b"x")]) is None
    assert stamps.of([(RUN_HEADER, b"another")]) is None
    assert stamps.of([(RUN_HEADER, b"T")]).offset == 42
    assert stamps.of([("app", b"y"), (RUN_HEADER, b"T")]).offset == 43
    assert stamps.of(start).offset == 41, "a stamp without a token stands for itself"


def test_stamps_give_the_bare_records_of_an_exclusive_run_the_offsets_after_its_stamp():
    stamps = Stamps()
    start = [(SOURCE_HEADER, encode_stamp(Stamp("dc1", "t", 0, Mark(1, 0), 41)))]
    assert stamps.of([*start, (RUN_START_HEADER, b"T"), (RUN_LENGTH_HEADER, b"3")]).offset == 41
    assert stamps.of([]).offset == 42
    assert stamps.of([("app", b"y"), (RUN_HEADER, b"T")]).offset == 43, "own headers: the token"
    assert stamps.of(None) is None, "past the run's length: not this relay's"
    assert stamps.of([*start, (RUN_START_HEADER, b"U")]).offset == 41
    assert stamps.of([]) is None, "a run of tokens claims no bare record"


def test_a_run_length_is_read_only_in_our_block_and_must_be_a_count():
    upstream = [
        (SOURCE_HEADER, encode_stamp(Stamp("up", "t", 0, Mark(1, 0), 5))),
        (RUN_START_HEADER, b"U"),
        (RUN_LENGTH_HEADER, b"9"),
    ]
    ours = [(SOURCE_HEADER, encode_stamp(Stamp("dc1", "t", 0, Mark(1, 0), 7)))]
    assert read_block([*upstream, *ours, (RUN_START_HEADER, b"T")])[3] is None
    assert read_block([*upstream, *ours, (RUN_START_HEADER, b"T"), (RUN_LENGTH_HEADER, b"2")])[
        2:
    ] == (b"T", 2)
    for bad in (b"0", b"-1", b"x", b"\xff"):
        with pytest.raises(PositionFormatError, match=RUN_LENGTH_HEADER):
            read_block([*ours, (RUN_START_HEADER, b"T"), (RUN_LENGTH_HEADER, bad)])
    with pytest.raises(PositionFormatError, match=RUN_LENGTH_HEADER):
        read_block([*ours, (RUN_LENGTH_HEADER, b"2")])


# --- tracker -------------------------------------------------------------------------------------

SBT = {("T", 0): {("s", 0)}, ("T", 1): {("s", 1)}}
START = {("s", 0): Cursor("dc1", 10), ("s", 1): Cursor("dc1", 0)}


def _tracker(**kw) -> PositionTracker:
    return PositionTracker("r", "dc1", 3, START, SBT, **kw)


def test_relayed_returns_the_stamp_for_the_record():
    tracker = _tracker()
    batch = tracker.open_batch()
    assert batch.relayed("s", 0, 10, 1000) == b"dc1|s|0|3.0|10"
    assert batch.relayed("s", 0, 11, 1001) == b"dc1|s|0|3.0|11"
    assert tracker.open_batch().relayed("s", 1, 0, 5) == b"dc1|s|1|3.1|0"


def test_cursors_move_only_when_whole_batches_are_acknowledged_in_order():
    tracker = _tracker()
    first, second = tracker.open_batch(), tracker.open_batch()
    first.relayed("s", 0, 10, 100)
    first.relayed("s", 0, 11, 101)
    first.close()
    second.relayed("s", 0, 12, 102)
    second.skipped("s", 1, 0, 50)
    second.close()
    assert tracker.in_flight == 3
    second.acked()
    assert tracker.cursors() == START, "a later batch settles only after the earlier ones"
    assert tracker.frontier == Mark(3, 0)
    first.acked(2)
    assert tracker.in_flight == 0
    assert tracker.cursors() == {("s", 0): Cursor("dc1", 13, 102), ("s", 1): Cursor("dc1", 1, 50)}
    assert tracker.frontier == Mark(3, 2)


def test_a_batch_of_only_filtered_records_settles_on_close():
    tracker = _tracker()
    batch = tracker.open_batch()
    batch.skipped("s", 0, 10, 7)
    assert tracker.cursors()[("s", 0)].offset == 10
    batch.close()
    assert tracker.cursors()[("s", 0)] == Cursor("dc1", 11, 7)


def test_over_acknowledging_is_an_error():
    batch = _tracker().open_batch()
    batch.relayed("s", 0, 10, 0)
    with pytest.raises(ValueError, match="2 acks for 1"):
        batch.acked(2)


def test_checkpoints_on_first_record_then_every_nth_per_target():
    tracker = _tracker(checkpoint_every=3)
    due = [tracker.checkpoint_for(("T", 0)) is not None for _ in range(7)]
    assert due == [True, False, False, True, False, False, True]
    assert tracker.checkpoint_for(("T", 1)) is not None, "each target partition gets its first"


@given(st.lists(st.integers(min_value=1, max_value=9), max_size=30), st.integers(1, 5))
def test_take_places_checkpoints_as_one_call_per_record_does(sizes, every):
    one, many = _tracker(checkpoint_every=every), _tracker(checkpoint_every=every)
    per_record = [one.checkpoint_for(("T", 0)) is not None for _ in range(sum(sizes))]
    by_take: list[bool] = []
    for size in sizes:
        left = size
        while left:
            k, ckpt = many.take(("T", 0), left)
            assert 1 <= k <= left
            by_take += [ckpt is not None] + [False] * (k - 1)
            left -= k
    assert by_take == per_record


def test_run_tokens_are_unique_in_a_session_and_differ_between_sessions():
    first, second = _tracker(), _tracker()
    tokens = [first.new_run() for _ in range(100)] + [second.new_run() for _ in range(100)]
    assert len(set(tokens)) == 200
    assert {len(t) for t in tokens} == {4}


def test_checkpoint_names_relay_frontier_and_only_sources_of_that_target():
    tracker = _tracker(checkpoint_every=1)
    batch = tracker.open_batch()
    batch.relayed("s", 0, 10, 100)
    ckpt = decode_checkpoint(tracker.checkpoint_for(("T", 0)))
    assert ckpt.relay == "r"
    assert ckpt.frontier == Mark(3, 0)
    assert ckpt.cursors == {("s", 0): Cursor("dc1", 10)}, "unacknowledged records are not in it"
    batch.close()
    batch.acked()
    ckpt2 = decode_checkpoint(tracker.checkpoint_for(("T", 0)))
    assert ckpt2.cursors == {("s", 0): Cursor("dc1", 11, 100)}
    assert ckpt2.version > ckpt.version
    assert ckpt2.frontier == Mark(3, 1)


def test_carried_frontier_holds_until_catch_up_passes_the_landed_records():
    tracker = _tracker(carried_frontier=Mark(2, 5), catch_up={("s", 0): 12})
    assert tracker.frontier == Mark(2, 5)
    batch = tracker.open_batch()
    batch.relayed("s", 0, 11, 0)
    batch.skipped("s", 0, 12, 0)
    batch.close()
    batch.acked()
    assert tracker.frontier == Mark(3, 1), "passed offset 12: the pin is released"


def test_catch_up_without_the_frontier_it_protects_is_refused():
    with pytest.raises(ValueError, match="carried_frontier"):
        _tracker(catch_up={("s", 0): 12})


def test_rebase_needs_everything_settled_and_restarts_checkpoints():
    tracker = _tracker(checkpoint_every=100)
    assert tracker.checkpoint_for(("T", 0)) is not None
    batch = tracker.open_batch()
    batch.relayed("s", 0, 10, 0)
    batch.close()
    with pytest.raises(RuntimeError, match="flush"):
        tracker.rebase("dc2", {}, same_offsets=True)
    batch.acked()
    tracker.rebase("dc2", {("s", 0): Cursor("dc2", 11, 0)}, same_offsets=True)
    assert tracker.cursors()[("s", 0)] == Cursor("dc2", 11, 0)
    assert tracker.open_batch().relayed("s", 0, 11, 0).startswith(b"dc2|")
    assert tracker.checkpoint_for(("T", 0)) is not None, "first record after a switch carries one"


def test_rebase_onto_other_offsets_drops_the_offset_based_catch_up():
    tracker = _tracker(carried_frontier=Mark(2, 5), catch_up={("s", 0): 99})
    tracker.rebase("dc2", {("s", 0): Cursor("dc2", 3, 0)}, same_offsets=False)
    assert tracker.frontier == Mark(3, 0)


def test_abandon_returns_the_settled_cursors():
    tracker = _tracker()
    batch = tracker.open_batch()
    batch.relayed("s", 0, 10, 0)
    assert tracker.abandon() == START
    assert tracker.in_flight == 0
    assert tracker.frontier == Mark(3, 1)


# --- scan and resume ------------------------------------------------------------------------------


def rec(offset, stamp=None, ckpt=None, ts=0, extra=()):
    headers = list(extra)
    if stamp is not None:
        headers.append((SOURCE_HEADER, encode_stamp(Stamp(*stamp))))
    if ckpt is not None:
        headers.append((CHECKPOINT_HEADER, encode_checkpoint(ckpt)))
    return TailRecord(offset, ts, headers)


def scan_all(scan: ResumeScan, logs, window=2):
    for t in scan.targets:
        log = logs.get(t, [])
        hi = (log[-1].offset + 1) if log else 0
        while scan.wants_more(t):
            lo = max(0, hi - window)
            scan.feed(t, [r for r in log if lo <= r.offset < hi], reached_start=lo == 0)
            hi = lo
    return scan.result()


ONE = {("T", 0): {("s", 0)}}


def test_empty_target_means_never_relayed_and_epoch_one():
    res = scan_all(ResumeScan("r", ["dc1"], ONE), {})
    assert res.epoch == 1
    assert res.sources[("s", 0)].state is SourceState.NEVER_RELAYED


def test_resume_after_last_record_when_there_is_no_checkpoint():
    log = [
        rec(0, ("dc1", "s", 0, Mark(1, 0), 40), ts=5),
        rec(5, ("dc1", "s", 0, Mark(1, 0), 41), ts=6),
    ]
    res = scan_all(ResumeScan("r", ["dc1"], ONE), {("T", 0): log})
    assert res.sources[("s", 0)].cursor == Cursor("dc1", 42, 6)
    assert res.epoch == 2


def test_filtered_tail_resumes_from_the_checkpoint_not_the_last_record():
    ckpt = Checkpoint("r", (1, 4), Mark(1, 3), {("s", 0): Cursor("dc1", 90, 77)})
    log = [rec(0, ("dc1", "s", 0, Mark(1, 2), 50)), rec(1, ("dc1", "s", 0, Mark(1, 3), 51), ckpt)]
    res = scan_all(ResumeScan("r", ["dc1"], ONE), {("T", 0): log})
    assert res.sources[("s", 0)].cursor == Cursor("dc1", 90, 77)


def test_other_writers_and_other_relays_are_ignored():
    foreign_ckpt = Checkpoint("other", (9, 9), Mark(9, 9), {("s", 0): Cursor("dc1", 999)})
    log = [
        rec(0, ("dc1", "s", 0, Mark(1, 0), 7)),
        rec(1, ("elsewhere", "s", 0, Mark(5, 0), 500)),
        rec(2, None, extra=[("app", b"no relay headers")]),
        rec(3, ("dc1", "zzz", 0, Mark(5, 0), 600)),
        rec(4, ("dc1", "s", 0, Mark(1, 0), 8), foreign_ckpt),
    ]
    res = scan_all(ResumeScan("r", ["dc1"], ONE), {("T", 0): log})
    assert res.sources[("s", 0)].cursor.offset == 9


def run_rec(offset, token, stamp=None, ts=0, extra=()):
    headers = list(extra)
    if stamp is None:
        headers.append((RUN_HEADER, token))
    else:
        headers += [(SOURCE_HEADER, encode_stamp(Stamp(*stamp))), (RUN_START_HEADER, token)]
    return TailRecord(offset, ts, headers)


def test_run_cut_short_resumes_after_its_last_landed_record_whatever_lies_between():
    ours, theirs = b"ours\x00\x00\x00\x01", b"them\x00\x00\x00\x01"
    log = [
        rec(0, ("dc1", "s", 0, Mark(1, 0), 3)),  # written before run tokens
        run_rec(1, ours, ("dc1", "s", 0, Mark(2, 0), 4), ts=10),
        run_rec(2, ours, ts=11, extra=[("app", b"x")]),
        rec(3, None, extra=[("app", b"another writer")]),
        run_rec(4, theirs, ts=99),
        run_rec(5, ours, ts=12),
        rec(6, None, extra=[("app", b"another writer")]),
    ]
    for window in (1, 2, 7):
        res = scan_all(ResumeScan("r", ["dc1"], ONE), {("T", 0): log}, window=window)
        assert res.sources[("s", 0)].cursor == Cursor("dc1", 7, 12), window
        assert res.epoch == 3


def exclusive_start(offset, token, stamp, length, ts=0):
    return TailRecord(offset, ts, [*run_rec(offset, token, stamp).headers,
                                   (RUN_LENGTH_HEADER, b"%d" % length)])  # fmt: skip


def test_exclusive_run_cut_short_counts_its_bare_records_and_its_tokens():
    log = [
        exclusive_start(0, b"A", ("dc1", "s", 0, Mark(1, 0), 10), 3),
        rec(1, None),
        rec(2, None, extra=[("app", b"own")]),  # within 3: the run's own record
        exclusive_start(3, b"B", ("dc1", "s", 0, Mark(1, 1), 13), 4, ts=20),
        rec(4, None, ts=21),
        run_rec(5, b"B", ts=22, extra=[("app", b"own")]),
        rec(6, None, ts=23),
    ]
    for window in (1, 3, 7):
        res = scan_all(ResumeScan("r", ["dc1"], ONE), {("T", 0): log}, window=window)
        assert res.sources[("s", 0)].cursor == Cursor("dc1", 17, 23), window
        assert not res.foreign


def test_records_of_another_writer_past_an_exclusive_runs_length_are_reported_not_counted():
    log = [
        exclusive_start(0, b"A", ("dc1", "s", 0, Mark(1, 0), 10), 2, ts=5),
        rec(1, None, ts=6),
        rec(2, None, ts=7, extra=[("app", b"another writer")]),
        run_rec(3, b"A", ts=8, extra=[("app", b"own")]),
    ]
    res = scan_all(ResumeScan("r", ["dc1"], ONE), {("T", 0): log})
    assert "2 records after offset 0" in res.foreign[("T", 0)]
    assert res.sources[("s", 0)].cursor == Cursor("dc1", 12, 8), "the token only: maybe again"


def test_bare_records_after_a_run_of_tokens_are_another_writers():
    log = [
        run_rec(0, b"A", ("dc1", "s", 0, Mark(1, 0), 10), ts=5),
        run_rec(1, b"A", ts=6),
        rec(2, None, ts=7),
    ]
    res = scan_all(ResumeScan("r", ["dc1"], ONE), {("T", 0): log})
    assert res.sources[("s", 0)].cursor == Cursor("dc1", 12, 6)
    assert not res.foreign


def test_transaction_marker_gaps_on_the_target_do_not_matter():
    # read_committed never returns markers: offsets 1, 3, 5 are commit markers.
    ckpt = Checkpoint("r", (1, 1), Mark(1, 1), {("s", 0): Cursor("dc1", 3)})
    log = [
        rec(0, ("dc1", "s", 0, Mark(1, 0), 2)),
        rec(2, ("dc1", "s", 0, Mark(1, 1), 3), ckpt),
        rec(4, ("dc1", "s", 0, Mark(1, 2), 4)),
    ]
    res = scan_all(ResumeScan("r", ["dc1"], ONE), {("T", 0): log}, window=1)
    assert res.sources[("s", 0)].cursor.offset == 5


def test_read_back_stops_at_the_settled_frontier():
    ckpt = Checkpoint("r", (1, 9), Mark(1, 8), {("s", 0): Cursor("dc1", 800)})
    log = [rec(i, ("dc1", "s", 0, Mark(1, i // 100), i)) for i in range(1000)]
    log[950] = rec(950, ("dc1", "s", 0, Mark(1, 9), 950), ckpt)
    scan = ResumeScan("r", ["dc1"], ONE)
    res = scan_all(scan, {("T", 0): log}, window=10)
    assert res.scanned[("T", 0)] <= 210, "reads back to the first record before batch 1.8 only"
    assert res.sources[("s", 0)].cursor.offset == 1000


def test_hitting_the_scan_limit_is_an_error_not_a_guess():
    log = [rec(i, ("dc1", "x", 0, Mark(1, 0), i)) for i in range(50)]
    scan = ResumeScan("r", ["dc1"], {("T", 0): {("s", 0)}, ("T", 1): {("x", 0)}}, max_records=20)
    res = scan_all(scan, {("T", 0): log}, window=5)
    assert res.sources[("s", 0)].state is SourceState.UNRESOLVED
    assert "raise resume_scan_limit" in res.sources[("s", 0)].reason
    with pytest.raises(ResumeError, match="resume_scan_limit"):
        plan_start("r", res, "dc1", {("s", 0): (0, 10), ("x", 0): (0, 60)})


FAN = {("T", 0): {("s", 0)}, ("T", 1): {("s", 0)}}


def test_spread_out_partition_resumes_at_checkpoint_and_skips_what_landed():
    ckpt = Checkpoint("r", (2, 0), Mark(2, 0), {("s", 0): Cursor("dc1", 10, 1)})
    logs = {
        ("T", 0): [
            rec(0, ("dc1", "s", 0, Mark(2, 0), 10), ckpt),
            rec(1, ("dc1", "s", 0, Mark(2, 0), 13)),
        ],
        ("T", 1): [rec(0, ("dc1", "s", 0, Mark(1, 5), 4))],
    }
    res = scan_all(ResumeScan("r", ["dc1"], FAN), logs)
    s = res.sources[("s", 0)]
    assert s.cursor == Cursor("dc1", 10, 1)
    assert s.landed == {("T", 0): ("dc1", 13), ("T", 1): ("dc1", 4)}
    assert res.carried_frontier == Mark(0, 0), "T1 has no checkpoint: keep everything in view"
    plan = plan_start("r", res, "dc1", {("s", 0): (0, 20)})
    assert plan.partitions[("s", 0)].landed == {("T", 0): 13}
    skip = plan.landed_filter()
    assert skip.already_landed(("s", 0), 12, ("T", 0))
    assert not skip.already_landed(("s", 0), 12, ("T", 1))
    assert skip.already_landed(("s", 0), 13, ("T", 0))
    assert not skip.already_landed(("s", 0), 14, ("T", 0))
    assert not skip, "past the highest landed offset the filter empties itself"
    assert plan.catch_up() == {("s", 0): 13}


def test_spread_out_partition_without_any_checkpoint_is_unresolved():
    logs = {("T", 0): [rec(0, ("dc1", "s", 0, Mark(1, 0), 10))], ("T", 1): []}
    res = scan_all(ResumeScan("r", ["dc1"], FAN), logs)
    assert res.sources[("s", 0)].state is SourceState.UNRESOLVED


FAN_IN = {("T", 0): {("s", 0), ("x", 0)}}


def test_single_target_takes_the_later_of_record_and_checkpoint_across_clusters():
    # Another source partition's record carries the checkpoint: s was switched to dc2 after its
    # last record on dc1, so the checkpoint written after that record knows better.
    ckpt = Checkpoint(
        "r", (3, 0), Mark(3, 0), {("s", 0): Cursor("dc2", 70, 9), ("x", 0): Cursor("dc2", 4)}
    )
    logs = {
        ("T", 0): [
            rec(0, ("dc1", "s", 0, Mark(2, 0), 500)),
            rec(1, ("dc2", "x", 0, Mark(3, 0), 3), ckpt),
        ]
    }
    res = scan_all(ResumeScan("r", ["dc1", "dc2"], FAN_IN), logs)
    assert res.sources[("s", 0)].cursor == Cursor("dc2", 70, 9)
    logs[("T", 0)].append(rec(2, ("dc1", "s", 0, Mark(4, 0), 501), ts=8))
    res = scan_all(ResumeScan("r", ["dc1", "dc2"], FAN_IN), logs)
    assert res.sources[("s", 0)].cursor == Cursor("dc1", 502, 8), "switched back after it"


def test_single_target_same_cluster_takes_the_further_of_record_and_checkpoint():
    ckpt = Checkpoint(
        "r", (3, 0), Mark(3, 0), {("s", 0): Cursor("dc1", 40, 2), ("x", 0): Cursor("dc1", 0)}
    )
    logs = {("T", 0): [rec(0, ("dc1", "s", 0, Mark(3, 0), 60), ckpt, ts=7)]}
    res = scan_all(ResumeScan("r", ["dc1"], FAN_IN), logs)
    assert res.sources[("s", 0)].cursor == Cursor("dc1", 61, 7)
    assert res.sources[("x", 0)].cursor == Cursor("dc1", 0), "idle x resolves from the checkpoint"


def test_corrupt_relay_header_stops_the_resume_with_its_location():
    log = [TailRecord(3, 0, [(SOURCE_HEADER, b"garbage")])]
    scan = ResumeScan("r", ["dc1"], ONE)
    with pytest.raises(PositionFormatError, match=r"T\[0\] offset 3"):
        scan.feed(("T", 0), log, reached_start=True)


# --- planning ------------------------------------------------------------------------------------


def _resumed(cursor: Cursor):
    log = [rec(0, (cursor.cluster, "s", 0, Mark(1, 0), cursor.offset - 1), ts=cursor.timestamp_ms)]
    return scan_all(ResumeScan("r", ["dc1", "dc2"], ONE), {("T", 0): log})


def test_truncated_source_log_resumes_at_log_start_and_reports_the_gap():
    plan = plan_start("r", _resumed(Cursor("dc1", 100, 5)), "dc1", {("s", 0): (130, 200)})
    part = plan.partitions[("s", 0)]
    assert (part.offset, part.skipped) == (130, 30)


def test_source_ending_before_the_copied_position_is_refused():
    with pytest.raises(
        ResumeError, match="ends at offset 50 but the relay already copied up to 99"
    ):
        plan_start("r", _resumed(Cursor("dc1", 100, 5)), "dc1", {("s", 0): (0, 50)})


def test_offset_identical_source_behind_the_position_is_waited_for():
    plan = plan_start(
        "r", _resumed(Cursor("dc1", 100, 5)), "dc2", {("s", 0): (0, 50)}, position_mapping="offset"
    )
    part = plan.partitions[("s", 0)]
    assert (part.offset, part.wait_for_source) == (100, True)


def test_other_source_is_found_by_timestamp_minus_skew():
    res = _resumed(Cursor("dc1", 100, 5_000))
    plan = plan_start("r", res, "dc2", {("s", 0): (10, 60)}, timestamp_skew_ms=1_000)
    assert plan.lookups() == {("s", 0): 4_000}
    with pytest.raises(ResumeError, match="unresolved timestamp"):
        plan.cursors()
    resolved = plan.with_lookups({("s", 0): 42}, {("s", 0): (10, 60)})
    assert resolved.cursors() == {("s", 0): Cursor("dc2", 42, 5_000)}
    at_end = plan.with_lookups({("s", 0): -1}, {("s", 0): (10, 60)})
    assert at_end.partitions[("s", 0)].offset == 60


def test_start_at_applies_only_to_partitions_never_relayed():
    res = scan_all(ResumeScan("r", ["dc1"], ONE), {})
    wm = {("s", 0): (5, 50)}
    assert plan_start("r", res, "dc1", wm).partitions[("s", 0)].offset == 5
    assert plan_start("r", res, "dc1", wm, start_at="latest").partitions[("s", 0)].offset == 50


def test_plan_builds_a_tracker_at_the_planned_positions():
    plan = plan_start("r", _resumed(Cursor("dc1", 100, 5)), "dc1", {("s", 0): (0, 200)})
    tracker = plan.tracker(ONE, checkpoint_every=10)
    assert tracker.epoch == 2
    assert tracker.cursors() == {("s", 0): Cursor("dc1", 100, 5)}
    assert json.loads(tracker.checkpoint_for(("T", 0)))["relay"] == "r"


# --- boundary dedupe, stop-at-end, lag ----------------------------------------------------------


def test_boundary_dedupe_cancels_each_known_copy_once():
    recent = RecentRecords(capacity=3)
    s = ("s", 0)
    for ts, value in ((1, b"a"), (2, b"b"), (2, b"b"), (3, b"c")):
        recent.add(s, ts, None, value)
    dedupe = recent.dedupe_from({s: 2})
    assert dedupe.seen(s, 2, None, b"b")
    assert dedupe.seen(s, 2, None, b"b")
    assert not dedupe.seen(s, 2, None, b"b"), "a third identical record is new"
    assert dedupe.seen(s, 3, None, b"c")
    assert not dedupe.seen(s, 1, None, b"a"), "before the lookup time, and evicted anyway"
    assert not BoundaryDedupe([]).seen(s, 2, None, b"b")


def test_stop_at_end_counts_offsets_so_markers_do_not_stall_it():
    stop = StopAtEnd({("s", 0): 10, ("s", 1): 5, ("s", 2): 3}, starts={("s", 2): 3})
    assert stop.remaining == {("s", 0), ("s", 1)}
    assert not stop.consumed(("s", 0), 8), "offset 9 (a commit marker) is still before the end"
    assert not stop.past_end(("s", 0), 9)
    assert stop.past_end(("s", 0), 10)
    assert not stop.reached_end(("s", 0))
    assert stop.consumed(("s", 1), 4)
    assert stop.done


def test_relay_lag_compares_only_positions_on_that_source():
    cursors = {("s", 0): Cursor("dc1", 90), ("s", 1): Cursor("dc2", 5)}
    assert relay_lag({("s", 0): 100, ("s", 1): 100}, cursors, "dc1") == {("s", 0): 10}
