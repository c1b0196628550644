"""Lag in offsets exactly and lag in seconds within one iteration interval of the ground truth,
in the five situations of research/lag.md §h, against a real broker.

All five run at once on their own topics, under one monitor iterating every 0.5 s:
(a) steady traffic, the group held 2 s behind; (b) the producer goes idle while the group is
stuck in its last burst of records (the case Kafka Lag Go under-reads); (c) a commit older
than the whole history (a backlog written an hour ago; the peers clamp at their window or
extrapolate years); (d) a produce burst, the commit inside it; (e) caught up.
"""

from __future__ import annotations

import time

import pytest

from kafkaops.lag.estimator import Source

pytestmark = pytest.mark.kafka

INTERVAL_S = 0.5
TOLERANCE_S = INTERVAL_S + 0.1
"""One iteration interval, plus scheduling jitter between a record's stamp and its append."""


class Judge:
    """Compares every row of the five groups with the ground truth, per situation."""

    def __init__(self, traffic, groups: dict[str, str]) -> None:
        self.traffic = traffic
        self.by_group = {v: k for k, v in groups.items()}
        self.errors: dict[str, list[float]] = {name: [] for name in groups}
        self.sources: dict[str, set[Source]] = {name: set() for name in groups}

    def check(self, iteration) -> None:
        now_ms = iteration.taken_at_ms["main"]
        for row in iteration.rows:
            name = self.by_group.get(row.group)
            if name is None:
                continue
            assert row.lag_in_offsets == max(0, row.end_offset - row.committed)
            assert row.lag_in_seconds is not None, row
            truth = 0.0 if row.lag_in_offsets == 0 else self.traffic.truth(row, now_ms)
            self.errors[name].append(abs(row.lag_in_seconds - truth))
            self.sources[name].add(row.source)


def start_traffic(traffic, t: dict[str, str], g: dict[str, str]) -> None:
    # (c) a backlog written an hour ago at 10 records/s, then live traffic at 1/s
    hour_ago = int(time.time() * 1000) - 3_600_000
    traffic.produce(t["c"], 1000, hour_ago, spacing_ms=100)
    traffic.commit(g["c"], {(t["c"], 0): 200})
    # (e) caught up on a quiet topic
    traffic.produce(t["e"], 100)
    traffic.commit(g["e"], {(t["e"], 0): 100})
    # (b) and (d) start at the beginning of their topics and move later
    traffic.commit(g["b"], {(t["b"], 0): 0})
    traffic.commit(g["d"], {(t["d"], 0): 0})
    for name, rate in (("a", 50), ("b", 50), ("c", 1), ("d", 10)):
        traffic.stream(t[name], rate)
    traffic.follow(g["a"], t["a"], behind_s=2.0)


async def test_lag_in_seconds_matches_ground_truth_in_all_five_situations(
    kafka, traffic, lag_config, run_monitor, unique
) -> None:
    t = {name: traffic.topic(f"{unique}-{name}") for name in "abcde"}
    g = {name: f"{unique}-g{name}" for name in "abcde"}
    start_traffic(traffic, t, g)
    config = lag_config(
        kafka,
        iteration_interval=f"{INTERVAL_S}s",
        clusters=[{"name": "main", "consumer_groups": {"whitelist": f"^{unique}-g"}}],
    )
    judge = Judge(traffic, g)
    async with run_monitor(config) as mon:
        # the group of (a) needs 2 s of traffic before its first commit
        await mon.until(lambda it: {r.group for r in it.rows} >= set(g.values()), 30, "groups")
        for _ in range(4):
            judge.check(await mon.next())
        # (b) the producer stops while the group sits 20 records before the end
        stopped_at = traffic.stop_stream(t["b"])
        traffic.commit(g["b"], {(t["b"], 0): stopped_at - 20})
        # (d) a burst of 500 records at once; the group commits in its middle
        burst_start = traffic.end_offset(t["d"])
        traffic.produce(t["d"], 500)
        traffic.commit(g["d"], {(t["d"], 0): burst_start + 250})
        b_values = []
        for _ in range(10):
            it = await mon.next()
            judge.check(it)
            row_b = next(r for r in it.rows if r.group == g["b"])
            if row_b.committed == stopped_at - 20:
                assert row_b.end_offset == stopped_at
                assert row_b.lag_in_offsets == 20
                b_values.append((it.taken_at_ms["main"], row_b.lag_in_seconds))

    errors, sources = judge.errors, judge.sources
    for name in "abcde":
        assert len(errors[name]) >= 8, (name, errors[name])
        assert max(errors[name]) <= TOLERANCE_S, (name, errors[name], sources[name])
    # (b) the idle producer's stuck group ages one second per second
    (t0, v0), (t1, v1) = b_values[0], b_values[-1]
    assert t1 - t0 >= 3000
    assert abs((v1 - v0) - (t1 - t0) / 1000) <= TOLERANCE_S
    # (c) the history cannot place an hour-old commit: the record's own timestamp does, exactly
    assert sources["c"] == {Source.RECORD_TIMESTAMP}
    assert max(errors["c"]) < 0.002
    # (e) caught up is exactly zero
    assert sources["e"] == {Source.CAUGHT_UP}
    assert max(errors["e"]) == 0.0
