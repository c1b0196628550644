"""kill -9 the `kafkaops relay` process at random points while records flow, restart, repeat.

Exactly-once: nothing lost, nothing twice. At-least-once: nothing lost; the only duplicates
the design allows are records of the last unacknowledged window of a killed process (the
position is read back from the target, so records it holds are never sent again); the test
states that bound as at most `buffer_size` records per kill.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from kafkaops.testing import LocalCluster, WaitTimeout

from .conftest import (
    Feed,
    Streamer,
    end_offsets,
    finish,
    kill9,
    read_all,
    relay_config,
    relay_process,
    topic,
    total,
    verify,
    wait_total,
    write_config,
)

KILLS = 4
BUFFER = 4000


@pytest.mark.parametrize(
    "setup", ["exactly-once", "at-least-once", "at-least-once exclusive_target"]
)
def test_kill_9_and_restart(
    setup: str, src: LocalCluster, dst: LocalCluster, unique: str, tmp_path: Path
) -> None:
    """With `exclusive_target` most records carry no relay header: the resume counts them."""
    delivery, _, option = setup.partition(" ")
    exclusive = option == "exclusive_target"
    rng = random.Random(f"kill-9-{setup}")
    name = topic(src, unique, 4)
    topic(dst, name, 4)
    feed = Feed([src], name, streams=4, size=200)
    feed.send(2_000)
    path = write_config(tmp_path / "relay.toml", relay_config({"a": src, "b": dst}, {
        "sources": ["a"],
        "target": "b",
        "topics": [f"{name}:{name}"],
        "delivery": delivery,
        "exclusive_target": exclusive,
        "checkpoint_interval": 300,
        "producer": {"buffer_size": BUFFER, "flush_batch_size": 500, "flush_frequency": "10ms",
                     "backoff_min": "100ms", "backoff_max": "500ms"},
    }))  # fmt: skip
    with Streamer(feed, per_tick=25):
        for _ in range(KILLS):
            proc = relay_process(path)
            now = total(end_offsets(dst, name))
            try:
                wait_total(dst, name, now + rng.randint(1, 6_000), timeout=90)
            except WaitTimeout:
                raise AssertionError(f"no progress; relay log:\n{kill9(proc)[-3000:]}") from None
            assert proc.poll() is None, finish(proc)[1]
            kill9(proc)
    code, err = finish(relay_process(path, "--stop-at-end"), timeout=180)
    assert code == 0, err

    report = verify(dst, name, feed.expected)
    print(f"{delivery}: {report.received} received, {report.duplicated} duplicated")
    bare = sum(not m.headers() for m in read_all(dst, name))
    assert (bare > report.received // 2) if exclusive else (bare == 0), bare
    assert report.missing == 0, report
    assert report.out_of_order == 0, report
    assert not report.corrupt and not report.foreign
    if delivery == "exactly-once":
        assert report.duplicated == 0, report
    else:
        assert report.duplicated <= KILLS * BUFFER, report
    assert report.received - report.duplicated == sum(feed.expected.values())
