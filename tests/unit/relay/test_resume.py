from __future__ import annotations

from kafkaops.relay.resume import TailRead


def test_dedupe_from_keeps_only_records_at_or_after_the_lookup_timestamp() -> None:
    tail = TailRead(
        {
            ("T", 0): [(("t", 0), 105, b"k2", b"v2"), (("t", 0), 100, b"k1", b"v1")],
            ("T", 1): [(("t", 1), 300, b"k9", b"v9")],
        }
    )
    dedupe = tail.dedupe_from({("t", 0): 104})
    assert dedupe.seen(("t", 0), 105, b"k2", b"v2")
    assert not dedupe.seen(("t", 0), 105, b"k2", b"v2")  # one known copy cancels one re-read
    assert not dedupe.seen(("t", 0), 100, b"k1", b"v1")  # before the lookup timestamp
    assert not dedupe.seen(("t", 1), 300, b"k9", b"v9")  # no lookup for that partition
