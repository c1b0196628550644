"""Group-to-bucket hashing used to split groups among instances."""

from __future__ import annotations

import zlib
from collections import Counter

from kafkaops.lag.membership import BUCKETS, bucket_of


def test_bucket_is_crc32_mod_buckets_so_every_process_agrees() -> None:
    assert bucket_of("orders-consumer", 64) == zlib.crc32(b"orders-consumer") % 64
    assert bucket_of("orders-consumer", 64) == bucket_of("orders-consumer", 64)


def test_groups_spread_over_all_buckets() -> None:
    counts = Counter(bucket_of(f"group-{i}", BUCKETS) for i in range(6400))
    assert len(counts) == BUCKETS
    assert max(counts.values()) < 2 * 6400 / BUCKETS
