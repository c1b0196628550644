"""Relay throughput: `kafkaops` relay (at-least-once, also with `exclusive_target`; exactly-once)
against a bare loop.

Two local single-node clusters (source and target) on this machine. The source topic is filled
once per record size; every run copies all of it into a fresh target topic and is timed from
start to the last acknowledgement (the relay: start-up and read-back of the empty target
included; exactly-once: until the last commit). The relay runs with stop-at-end on the calling
thread, as the bare loop does, and notes the times itself (`_Timed`): polling its counter from
a second Python thread every 5 ms took the GIL from it ~200 times a second, which cost the relay
alone ~5% (0.2 us of CPU per record at 100 B). The baseline, in the same process and on
the same data, is what one would write by hand with confluent-kafka: consume a batch, produce
each record (key, value, partition, timestamp) with the same producer settings, poll, and flush
at the end, with no delivery reports, positions, filters or metrics.

Variants run interleaved, the order rotated every run, and dirty pages are written out
(`sync`, untimed) before each run: each run writes the whole data set, and the kernel flushing
the previous run's writes during the next one would otherwise favour whichever variant runs
first. Prints median and p95 per variant, records/s and MB/s, the ratio of each relay mode to
the bare loop (of the medians, and "paired": the median of each run's ratio to the bare run of
its round, which a machine whose speed drifts between rounds moves less), and the process CPU
seconds per run (librdkafka's threads included): on a box where the brokers share the cores,
CPU per record is the steadier figure.

Each size starts with `--warmup` untimed runs of every variant (default 1): on freshly started
brokers the JIT compiles for the first seconds of load, which otherwise lands on run 1 alone.

Usage: python bench/relay_bench.py [--records N] [--sizes 1000,100] [--runs 3] [--partitions 4]
                                   [--warmup 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from confluent_kafka import TopicPartition

from kafkaops.config import Config
from kafkaops.config.loader import validate
from kafkaops.kafka import ClusterClients
from kafkaops.relay.pipeline import Relay
from kafkaops.relay.source import consumer_overrides
from kafkaops.relay.target import CONSUME_BATCH, producer_overrides
from kafkaops.testing import LocalCluster
from kafkaops.testing.records import create_topic
from kafkaops.testing.sequence import SequenceGenerator

VARIANTS = ("bare", "at-least-once", "exactly-once", "alo-exclusive")
"""alo-exclusive: at-least-once with `exclusive_target` (a run's later records carry no header)."""
EOS_BATCH = 10_000
"""exactly-once: records per transaction (flush_batch_size) for the benchmark."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def config(src: LocalCluster, dst: LocalCluster, source: str, target: str, variant: str) -> Config:
    producer: dict[str, Any] = {"flush_frequency": "20ms", "buffer_size": 100_000}
    delivery = "exactly-once" if variant == "exactly-once" else "at-least-once"
    if delivery == "exactly-once":
        producer |= {"flush_batch_size": EOS_BATCH, "flush_frequency": "100ms"}
    return validate(
        Config,
        {
            "kafka": [src.cluster_section("src"), dst.cluster_section("dst")],
            "relay": {
                "name": f"bench-{target}",
                "sources": ["src"],
                "target": "dst",
                "topics": [f"{source}:{target}"],
                "delivery": delivery,
                "exclusive_target": variant == "alo-exclusive",
                "producer": producer,
                "stop_at_end": True,
            },
        },
        "bench",
    )


def fill(clients: ClusterClients, topic: str, records: int, size: int, partitions: int) -> None:
    gen = SequenceGenerator(run_id=1, size=size)
    producer = clients.producer(**{"linger.ms": 50, "batch.size": 1_000_000})
    for stream, key, value in gen.round_robin(partitions, records // partitions):
        while True:
            try:
                producer.produce(topic, value, key, partition=stream)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(300) == 0


class _Timed(Relay):
    """Notes when the first records were acknowledged and when the last were (stop-at-end
    drains before `_finish` returns), leaving out the relay's shutdown."""

    first: tuple[float, int] | None = None
    drained: float | None = None

    def _settle(self) -> None:
        super()._settle()
        if self.first is None and self.stats.acked:
            self.first = (time.perf_counter(), self.stats.acked)

    def _finish(self) -> None:
        super()._finish()
        self.drained = time.perf_counter()


def run_relay(cfg: Config, records: int) -> tuple[float, float]:
    """Until all `records` are acknowledged, the relay on this thread like the bare loop.

    Returns the total time and the steady-state time per record: from the first acknowledged
    records on, leaving out start-up (health check, producer and transactions, read-back)."""
    cache: dict[str, ClusterClients] = {}
    relay = _Timed(cfg.relay[0], lambda c: cache.setdefault(c, ClusterClients(cfg.cluster(c))))
    t0 = time.perf_counter()
    relay.run()
    assert relay.stats.acked == records, relay.stats.acked
    assert relay.first is not None and relay.drained is not None
    first_at, first_acked = relay.first
    return relay.drained - t0, (relay.drained - first_at) / (records - first_acked)


def run_bare(
    cfg: Config, source: str, target: str, records: int, partitions: int
) -> tuple[float, float]:
    """The baseline: the same clients and settings, none of the relay's bookkeeping. Returns
    the total time and the steady-state time per record (after the first consumed batch)."""
    relay = cfg.relay[0]
    src = ClusterClients(cfg.cluster("src"))
    dst = ClusterClients(cfg.cluster("dst"))
    t0 = time.perf_counter()
    consumer = src.consumer("bench-bare", **consumer_overrides(relay))
    overrides = producer_overrides(relay)
    producer = dst.producer(**overrides)
    consumer.assign([TopicPartition(source, p, 0) for p in range(partitions)])
    produce, poll = producer.produce, producer.poll
    copied = 0
    first: tuple[float, int] | None = None
    while copied < records:
        if first is None and copied:
            first = (time.perf_counter(), copied)
        for m in consumer.consume(CONSUME_BATCH, 0.05):
            if m.error():
                continue
            while True:
                try:
                    produce(target, m.value(), m.key(), m.partition(), None, None,
                            m.timestamp()[1])  # fmt: skip
                    break
                except BufferError:
                    poll(0.05)
            copied += 1
        poll(0)
    assert producer.flush(300) == 0
    end = time.perf_counter()
    consumer.close()
    assert first is not None
    return end - t0, (end - first[0]) / (records - first[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--sizes", default="1000,100")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed runs of every variant per size first (the brokers' JIT warms up)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    records = args.records - args.records % args.partitions
    with LocalCluster(name="bench-src") as src, LocalCluster(name="bench-dst") as dst:
        src_clients = ClusterClients(validate(Config, {"kafka": [src.cluster_section("s")]},
                                              "b").cluster("s"))  # fmt: skip
        dst_admin = ClusterClients(
            validate(Config, {"kafka": [dst.cluster_section("d")]}, "b").cluster("d")
        ).admin()
        for size in sizes:
            source = f"bench-{size}"
            create_topic(src_clients.admin(), source, partitions=args.partitions)
            t0 = time.perf_counter()
            fill(src_clients, source, records, size, args.partitions)
            print(f"\n{records:,} records of {size} B on {args.partitions} partitions "
                  f"(filled in {time.perf_counter() - t0:.1f}s)", flush=True)  # fmt: skip
            times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
            steady: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
            cpu: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
            for run in range(-args.warmup, args.runs):
                turn = run % len(VARIANTS)
                for variant in VARIANTS[turn:] + VARIANTS[:turn]:
                    target = f"{source}-{variant}-{run}"
                    create_topic(dst_admin, target, partitions=args.partitions)
                    cfg = config(src, dst, source, target, variant)
                    os.sync()
                    c0 = time.process_time()
                    if variant == "bare":
                        elapsed, per = run_bare(cfg, source, target, records, args.partitions)
                    else:
                        elapsed, per = run_relay(cfg, records)
                    used = time.process_time() - c0
                    if run >= 0:
                        cpu[variant].append(used)
                        times[variant].append(elapsed)
                        steady[variant].append(per)
                    print(
                        f"  {f'run {run + 1}' if run >= 0 else 'warm-up'} {variant:>14}:"
                        f" {elapsed:6.2f}s {records / elapsed:>10,.0f} rec/s"
                        f" (steady {1 / per:>10,.0f})  cpu {used:5.2f}s",
                        flush=True,
                    )
                    dst_admin.delete_topics([target], operation_timeout=60)[target].result(60)
            report(size, records, times, steady, cpu)


def report(
    size: int,
    records: int,
    times: dict[str, list[float]],
    steady: dict[str, list[float]],
    cpu: dict[str, list[float]],
) -> None:
    """Totals (start-up included) and the steady state, each as a median over the runs."""
    base = statistics.median(times["bare"])
    base_steady = statistics.median(steady["bare"])
    for variant, values in times.items():
        med = statistics.median(values)
        rate = records / med
        per = statistics.median(steady[variant])
        paired = statistics.median(b / v for b, v in zip(times["bare"], values, strict=True))
        print(
            f"{size:>5} B {variant:>14}: median {med:6.2f}s p95 {percentile(values, 0.95):6.2f}s"
            f" | {rate:>10,.0f} rec/s {rate * size / 1e6:7.1f} MB/s | {base / med:5.2f}x bare"
            f" ({paired:4.2f}x paired)"
            f" | steady {1 / per:>10,.0f} rec/s {size / per / 1e6:7.1f} MB/s"
            f" {base_steady / per:5.2f}x bare"
            f" | cpu {statistics.median(cpu[variant]) * 1e6 / records:5.1f} us/record",
            flush=True,
        )


if __name__ == "__main__":
    main()
