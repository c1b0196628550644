"""Lag monitor iteration cost on the grid of research/lag.md §h, against a naive baseline.

One local broker; for each scenario the groups are made by committing offsets with the admin API
(no consumer processes, so they are Empty), and a background producer writes ~200 records/s
round-robin over the scenario's partitions so every end offset moves. Each side then runs in a
fresh child process (so peak RSS is its own): 3 warm-up iterations, then N measured ones.

  ours   the monitor as shipped: bounded-concurrency OffsetFetch, ONE ListOffsets call over the
         de-duplicated partitions of all groups (one request per leader broker)
  naive  the same pipeline with the per-group collector Kafka Lag Go and its peers use:
         OffsetFetch group after group, then one ListOffsets call per group

Printed per scenario and side: median and p95 iteration time, CPU-seconds per iteration (user +
system of the whole process, librdkafka threads included), peak RSS, and Kafka requests per
iteration by API (librdkafka statistics: brokers.*.req, summed over the monitor's clients;
OffsetFetch, which those statistics leave out for admin requests, counted at the call).

Usage: python bench/lag_bench.py [--scenarios S1,S2,...] [--iterations 20]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import NewTopic

from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.kafka import ClusterClients
from kafkaops.lag.collector import Collection, Collector, GroupOffsets, reason
from kafkaops.lag.monitor import Monitor
from kafkaops.testing import LocalCluster, wait_for


@dataclass(frozen=True)
class Scenario:
    id: str
    topics: int
    partitions: int
    groups: int
    topics_per_group: int
    """Each group reads this many topics (all their partitions), assigned round-robin."""

    @property
    def pairs(self) -> int:
        return self.groups * self.topics_per_group * self.partitions


GRID = {
    s.id: s
    for s in (
        Scenario("S1", 1, 10, 10, 1),
        Scenario("S2", 10, 10, 100, 1),
        Scenario("S3", 100, 10, 1000, 1),
        Scenario("S4", 10, 100, 10, 10),
        Scenario("S5", 1, 100, 100, 1),
        Scenario("S6", 20, 100, 500, 1),
    )
}
WARMUP = 3
API_ORDER = ("ListGroups", "FindCoordinator", "OffsetFetch", "Metadata", "ListOffsets")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the baseline collector -------------------------------------------------------------------


class NaiveCollector(Collector):
    """Per-group collection, as the peers do: OffsetFetch group after group, then one
    ListOffsets call per group (the same partition is asked again for every group reading it)."""

    def collect(self, owns=None) -> Collection:
        errors: list[str] = []
        groups = self.list_groups(errors)
        fetched: list[GroupOffsets] = []
        for group, state in groups:
            fetched.extend(self.committed_offsets([(group, state)], errors))
        taken_at = time.time()
        end_offsets: dict[tuple[str, int], int] = {}
        with concurrent.futures.ThreadPoolExecutor(self.concurrency) as pool:
            for part in pool.map(lambda g: self.end_offsets(set(g.committed), errors), fetched):
                end_offsets.update(part)
        return Collection(self.clients.id, taken_at, fetched, end_offsets, errors, len(groups))


# -- request counting --------------------------------------------------------------------------


class CountingClients(ClusterClients):
    """Every client reports librdkafka statistics; the latest report per client is kept."""

    def __init__(self, cluster) -> None:
        super().__init__(cluster)
        self.latest: dict[str, dict[str, int]] = {}
        self.reports = 0
        self.offset_fetches = 0
        self._lock = threading.Lock()

    def admin(self, **overrides: Any) -> Any:
        return CountingAdmin(super().admin(**overrides), self)

    def settings(self, role: str, **overrides: Any) -> dict[str, Any]:
        """Statistics on admin clients only: a consumer's report lists every partition it
        ever fetched and queues up between polls, which would inflate the RSS we measure (the
        record reader's reads are counted by the reader itself)."""
        settings = super().settings(role, **overrides)
        if role == "admin":
            settings["statistics.interval.ms"] = 100
            settings["stats_cb"] = self._stats
        return settings

    def _stats(self, text: str) -> None:
        stats = json.loads(text)
        totals: dict[str, int] = {}
        for broker in stats.get("brokers", {}).values():
            for api, count in broker.get("req", {}).items():
                totals[api] = totals.get(api, 0) + count
        with self._lock:
            self.latest[stats["name"]] = totals
            self.reports += 1

    def drain(self, monitor: Monitor, stop: threading.Event) -> None:
        """Serve statistics callbacks (admin poll only serves callbacks, so this is safe
        beside the collector)."""
        while not stop.wait(0.1):
            admin = monitor.clusters["bench"].collector._admin
            if admin is not None:
                admin.poll(0)

    def totals(self) -> dict[str, int]:
        """Current request counts, once two more reports arrived (the first may have been
        made before the last requests)."""
        start = self.reports
        wait_for(lambda: self.reports >= start + 2, 5, 0.05, "statistics reports")
        out: dict[str, int] = {"OffsetFetch": self.offset_fetches}
        with self._lock:
            for per_client in self.latest.values():
                for api, count in per_client.items():
                    out[api] = out.get(api, 0) + count
        return out


class CountingAdmin:
    """librdkafka's statistics leave out the admin client's coordinator requests (OffsetFetch),
    so those are counted here: the client takes one group per call, one request each."""

    def __init__(self, admin: Any, clients: CountingClients) -> None:
        self._admin = admin
        self._clients = clients

    def list_consumer_group_offsets(self, request: Any, **kwargs: Any) -> Any:
        with self._clients._lock:
            self._clients.offset_fetches += 1
        return self._admin.list_consumer_group_offsets(request, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._admin, name)


# -- one side, in a child process ---------------------------------------------------------------


def run_side(bootstrap: str, prefix: str, side: str, iterations: int) -> dict[str, Any]:
    config: Config = validate(
        Config,
        {
            "kafka": [{"id": "bench", "brokers": [bootstrap], "timeout": "30s"}],
            "lag": {
                "clusters": [{"name": "bench", "consumer_groups": {"whitelist": f"^{prefix}"}}]
            },
        },
        "bench",
    )
    clients = CountingClients(config.cluster("bench"))
    monitor = Monitor(config, lambda _cid: clients)
    cluster = monitor.clusters["bench"]
    if side == "naive":
        cluster.collector = NaiveCollector(
            clients, cluster.collector.admits, config.lag.num_workers, 30.0
        )

    async def measure() -> dict[str, Any]:
        for _ in range(WARMUP):
            await monitor.iterate()
        stop = threading.Event()
        threading.Thread(target=clients.drain, args=(monitor, stop), daemon=True).start()
        before = await asyncio.to_thread(clients.totals)
        reads = cluster.reader.reads
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = usage.ru_utime + usage.ru_stime
        times, rows = [], 0
        for _ in range(iterations):
            (snap,) = await monitor.iterate()
            times.append(monitor.iteration_seconds)
            rows = len(snap.rows)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (usage.ru_utime + usage.ru_stime - cpu0) / iterations
        after = await asyncio.to_thread(clients.totals)
        stop.set()
        await monitor.close()
        requests = {
            api: (after.get(api, 0) - before.get(api, 0)) / iterations
            for api in set(after) | set(before)
        }
        requests["record reads"] = (cluster.reader.reads - reads) / iterations
        return {
            "side": side,
            "rows": rows,
            "median": statistics.median(times),
            "p95": percentile(times, 0.95),
            "cpu": cpu,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "requests": {k: v for k, v in requests.items() if v},
        }

    return asyncio.run(measure())


# -- scenario set-up in the parent --------------------------------------------------------------


class Producer:
    """~200 records/s round-robin over the scenario's partitions, timestamps = now."""

    def __init__(self, clients: ClusterClients, partitions: list[tuple[str, int]]) -> None:
        self.producer = clients.producer(**{"linger.ms": 5})
        self.partitions = partitions
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        i = 0
        while not self.stop.wait(0.05):
            for _ in range(10):
                topic, partition = self.partitions[i % len(self.partitions)]
                self.producer.produce(topic, b"x" * 100, partition=partition)
                i += 1
            self.producer.poll(0)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.producer.flush(10)


def build(clients: ClusterClients, s: Scenario, prefix: str) -> list[tuple[str, int]]:
    admin = clients.admin()
    topics = [f"{prefix}-t{i}" for i in range(s.topics)]
    for f in admin.create_topics([NewTopic(t, s.partitions, 1) for t in topics]).values():
        f.result(120)
    wait_for(lambda: set(topics) <= set(admin.list_topics(timeout=30).topics), 60, what="topics")
    partitions = [(t, p) for t in topics for p in range(s.partitions)]
    producer = clients.producer(**{"linger.ms": 20})
    for _ in range(3):
        for t, p in partitions:
            producer.produce(t, b"x" * 100, partition=p)
        producer.poll(0)
    assert producer.flush(120) == 0
    requests = []
    for g in range(s.groups):
        reads = [topics[(g + k) % s.topics] for k in range(s.topics_per_group)]
        requests.append(
            ConsumerGroupTopicPartitions(
                f"{prefix}-g{g}",
                [TopicPartition(t, p, 1) for t in reads for p in range(s.partitions)],
            )
        )
    deadline = time.monotonic() + 120
    while requests:
        # a fresh broker answers COORDINATOR_LOAD_IN_PROGRESS for a while: commit again
        assert time.monotonic() < deadline, f"{len(requests)} groups could not be committed"
        failed = []
        for start in range(0, len(requests), 50):
            batch = requests[start : start + 50]
            futures = [admin.alter_consumer_group_offsets([r])[r.group_id] for r in batch]
            for request, future in zip(batch, futures, strict=True):
                result = future.result(60)
                if any(tp.error is not None for tp in result.topic_partitions):
                    failed.append(request)
        requests = failed
    return partitions


def teardown(clients: ClusterClients, s: Scenario, prefix: str) -> None:
    admin = clients.admin()
    groups = [f"{prefix}-g{g}" for g in range(s.groups)]
    for start in range(0, len(groups), 100):
        for f in admin.delete_consumer_groups(groups[start : start + 100]).values():
            try:
                f.result(60)
            except Exception as exc:  # a group that never got offsets: nothing to delete
                print(f"  (delete group: {reason(exc)})", file=sys.stderr)
    topics = [f"{prefix}-t{i}" for i in range(s.topics)]
    for f in admin.delete_topics(topics).values():
        f.result(60)


def child(bootstrap: str, prefix: str, side: str, iterations: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", bootstrap, prefix, side, str(iterations)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def show(s: Scenario, result: dict[str, Any]) -> None:
    req = result["requests"]
    per_api = " ".join(f"{api}={req[api]:.1f}" for api in API_ORDER if api in req)
    others = " ".join(f"{k}={v:.1f}" for k, v in sorted(req.items()) if k not in API_ORDER)
    print(
        f"{s.id} {result['side']:5} pairs={result['rows']:>6} "
        f"median={result['median']:.3f}s p95={result['p95']:.3f}s "
        f"cpu={result['cpu']:.3f}s/it rss={result['rss_mb']:.0f}MB | req/it: {per_api} {others}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenarios", default=",".join(GRID))
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    with LocalCluster(name="lagbench") as cluster:
        config = validate(Config, {"kafka": [cluster.cluster_section("bench", timeout="30s")]}, "b")
        clients = ClusterClients(config.cluster("bench"))
        for sid in args.scenarios.split(","):
            s = GRID[sid]
            prefix = f"bench-{sid.lower()}"
            t0 = time.perf_counter()
            partitions = build(clients, s, prefix)
            print(
                f"{sid}: {s.topics} topics x {s.partitions} partitions, {s.groups} groups, "
                f"{s.pairs} group-partitions (built in {time.perf_counter() - t0:.0f}s)",
                flush=True,
            )
            producer = Producer(clients, partitions)
            try:
                ours = child(cluster.bootstrap, prefix, "ours", args.iterations)
                show(s, ours)
                if not args.no_baseline:
                    naive = child(cluster.bootstrap, prefix, "naive", args.iterations)
                    show(s, naive)
                    print(
                        f"{sid} ratio naive/ours: median {naive['median'] / ours['median']:.1f}x,"
                        f" ListOffsets {naive['requests'].get('ListOffsets', 0):.0f} vs "
                        f"{ours['requests'].get('ListOffsets', 0):.0f} per iteration",
                        flush=True,
                    )
            finally:
                producer.close()
                teardown(clients, s, prefix)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, bootstrap, prefix, side, iterations = sys.argv
        print(json.dumps(run_side(bootstrap, prefix, side, int(iterations))))
    else:
        main()
