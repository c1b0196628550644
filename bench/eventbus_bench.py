"""Event bus throughput and latency: Kafka source -> sensor (`a && b`, at-least-once) -> Kafka
trigger, against a bare confluent-kafka consume->produce pipe on the same events.

Each run uses fresh 3-partition topics on one local broker and the default batch settings
(100 records per partition, 1 s). Two phases:

1. throughput: N input events (alternating over topics `a` and `b`) are produced as fast as
   possible; events/s = N / (time from the first input record until every stage has handled
   everything, read from the sensor's `kafkaops_eventbus_position` gauges);
2. latency: events at a steady offered rate (`--rate`); for each trigger record, latency =
   when the bench's read_committed consumer sees it minus when the later of its two input
   events was produced (p50, p95, p99).

`kafkaops` runs as one `kafkaops events run` process (sources and sensor together), or with
`--split` as two (`--only sources` and `--only sensors`), as Argo deploys them. The baseline
runs both phases through a plain consume->produce loop in its own process (one consumer, one
idempotent producer, offsets committed per batch, no transactions, no parsing beyond reading the
timestamp). Prints the median over runs and the ratio kafkaops / baseline, and for the
throughput phase the CPU per event of the broker (its C2 JIT threads apart), of the pipeline's
processes, and each stage's records per commit (every commit is a transaction on the broker).

`--warmup N` first sends N events through each pipeline untimed: the broker's JIT compiles
its transaction paths (which only kafkaops uses) over the first several hundred transactions, and
without a warm-up that cost lands on the first kafkaops run alone.

Usage: python bench/eventbus_bench.py [--runs 3] [--events 40000] [--rate 2000] [--seconds 10]
                                      [--split] [--warmup 0]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from kafkaops.config.kafka import KafkaCluster
from kafkaops.eventbus.spec import load_definitions
from kafkaops.eventbus.store import DefinitionStore
from kafkaops.kafka import ClusterClients
from kafkaops.testing import LocalCluster, free_port, wait_for
from kafkaops.testing.records import create_topic

PARTITIONS = 3
_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} ([\d.e+-]+)$", re.M)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def produce(clients: ClusterClients, name: str, first: int, count: int, rate: float) -> None:
    """Records `first`..`first+count` alternating over `{name}-a`/`{name}-b`, value
    {"t": produced ns}; `rate` 0 means as fast as possible."""
    producer = clients.producer(**{"linger.ms": 2, "enable.idempotence": True})
    start = time.perf_counter()
    for i in range(count):
        if rate:
            ahead = start + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)  # pacing the offered load
        n = first + i
        value = json.dumps({"t": time.time_ns(), "n": n}).encode()
        while True:
            try:
                producer.produce(f"{name}-{'ab'[n % 2]}", value, str(n).encode())
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)


def cpu_seconds(pids: list[int], threads: str = "") -> float:
    """User+system CPU so far of processes (all their threads), or of only their threads whose
    name starts with `threads`, from /proc."""
    ticks = 0
    for pid in pids:
        if threads:
            tasks = [f"/proc/{pid}/task/{t}" for t in os.listdir(f"/proc/{pid}/task")]
        else:
            tasks = [f"/proc/{pid}"]
        for task in tasks:
            try:
                with open(f"{task}/stat") as f:
                    stat = f.read()
            except FileNotFoundError:
                continue  # a thread that ended
            name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1]
            if name.startswith(threads):
                utime, stime = fields.split()[11:13]
                ticks += int(utime) + int(stime)
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU per event of the broker (and of its JIT compiler threads, which run for minutes
    after the broker starts) and of the pipeline's processes over one phase: on a box where
    everything shares two cores, steadier than events/s, and it says where the time goes."""

    def __init__(self, cluster: LocalCluster, pipeline: list[int]) -> None:
        broker = [n.process.pid for n in cluster.members if n.process is not None]
        self.groups = {
            "broker": (broker, ""),
            "jit": (broker, "C2 Compiler"),
            "pipeline": (pipeline, ""),
        }
        self.start = {k: cpu_seconds(*v) for k, v in self.groups.items()}

    def per_event_us(self, events: int) -> dict[str, float]:
        return {
            f"{k}_cpu_us": round((cpu_seconds(*v) - self.start[k]) / events * 1e6, 1)
            for k, v in self.groups.items()
        }


class OutputReader(threading.Thread):
    """Reads the output topic (read_committed) and records each record's latency."""

    def __init__(self, clients: ClusterClients, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = clients.consumer(
            None, **{"isolation.level": "read_committed", "fetch.wait.max.ms": 10}
        )
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        self.count = 0
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for msg in self.consumer.consume(1000, 0.01):
                if msg.error() is not None:
                    continue
                seen = time.time_ns()
                produced = max(int(v) for v in json.loads(msg.value()).values())
                self.latencies.append((seen - produced) / 1e6)
                self.count += 1
        self.consumer.close()


def high_watermarks(consumer: Consumer, topic: str) -> dict[int, int]:
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
        for p in range(PARTITIONS)
    }


# --------------------------------------------------------------------------- kafkaops


def definitions(name: str, brokers: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: argoproj.io/v1alpha1
        kind: EventBus
        metadata: {{name: default}}
        spec:
          kafka: {{url: "{brokers}", topic: {name}-events, consumerGroup: {{startOldest: true}}}}
        ---
        apiVersion: argoproj.io/v1alpha1
        kind: EventSource
        metadata: {{name: bench}}
        spec:
          kafka:
            a: {{url: "{brokers}", topic: {name}-a, jsonBody: true,
                consumerGroup: {{groupName: {name}-src-a, oldest: true}}}}
            b: {{url: "{brokers}", topic: {name}-b, jsonBody: true,
                consumerGroup: {{groupName: {name}-src-b, oldest: true}}}}
        ---
        apiVersion: argoproj.io/v1alpha1
        kind: Sensor
        metadata: {{name: pair}}
        spec:
          dependencies:
            - {{name: a, eventSourceName: bench, eventName: a}}
            - {{name: b, eventSourceName: bench, eventName: b}}
          triggers:
            - template:
                name: both
                conditions: "a && b"
                kafka:
                  url: "{brokers}"
                  topic: {name}-out
                  partitioningKey: both
                  payload:
                    - {{src: {{dependencyName: a, dataKey: body.t}}, dest: a}}
                    - {{src: {{dependencyName: b, dataKey: body.t}}, dest: b}}
              atLeastOnce: true
        """
    )


class KafkaopsPipeline:
    """`kafkaops events run` (one process, or sources and sensors apart) plus its metrics."""

    def __init__(self, cluster: LocalCluster, workdir: Path, name: str, split: bool) -> None:
        self.name = name
        self.clients = ClusterClients(KafkaCluster(id="bench", brokers=[cluster.bootstrap]))
        admin = self.clients.admin()
        for suffix in ("a", "b", "events", "out"):
            create_topic(admin, f"{name}-{suffix}", partitions=PARTITIONS)
        data = workdir / name
        store = DefinitionStore.in_data_dir(data)
        store.apply(load_definitions(definitions(name, cluster.bootstrap), "bench").definitions)
        store.close()
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        # One consumer for the drain checks (20 a second): a new one each time cost the
        # broker more CPU than the pipeline's own requests.
        self.watermarks = self.clients.consumer(None)
        for only in ["sources", "sensors"] if split else [None]:
            port = free_port()
            config = workdir / f"{name}-{only}.toml"
            config.write_text(
                f'data_dir = "{data}"\n[http]\nbind-address = "127.0.0.1:{port}"\n'
                f'[logging]\nlevel = "WARN"\n[eventbus]\ninstance-id = "{name}-{only}"\n'
            )
            log = workdir / f"{name}-{only}.log"
            extra = ["--only", only] if only else []
            with log.open("wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "kafkaops",
                            "events",
                            "run",
                            "--config",
                            str(config),
                            *extra,
                        ],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            self.ports.append(port)
            self.logs.append(log)

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        out = []
        for port in self.ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                continue
            for name, labels, value in _SAMPLE.findall(text):
                out.append((name, dict(re.findall(r'(\w+)="([^"]*)"', labels)), float(value)))
        return out

    def positions(
        self, samples: list[tuple[str, dict[str, str], float]] | None = None
    ) -> dict[tuple[str, int], float]:
        return {
            (labels["stage"], int(labels["partition"])): value
            for name, labels, value in (self.samples() if samples is None else samples)
            if name == "kafkaops_eventbus_position"
        }

    def records_per_commit(self) -> dict[str, float]:
        """Mean batch per stage: each commit is a broker transaction, the broker's main cost."""
        records: dict[str, float] = {}
        commits: dict[str, float] = {}
        for name, labels, value in self.samples():
            if name == "kafkaops_eventbus_records_total":
                records[labels["stage"]] = records.get(labels["stage"], 0) + value
            elif name == "kafkaops_eventbus_commits_total" and labels["result"] == "committed":
                commits[labels["stage"]] = commits.get(labels["stage"], 0) + value
        return {
            stage: round(n / commits[stage], 1)
            for stage, n in records.items()
            if commits.get(stage)
        }

    def ready(self) -> bool:
        return {stage for stage, _p in self.positions()} >= {"event", "trigger", "action"}

    def drained(self, total: int) -> bool:
        """Sources published `total` events and every stage reached the end of its input.

        The trigger and action topics are written in transactions: each ends with one commit
        marker, so a stage that handled the last record stands one offset before the end.
        """
        samples = self.samples()
        published = sum(
            v for n, _l, v in samples if n == "kafkaops_eventbus_published_events_total"
        )
        if published < total:
            return False
        positions = self.positions(samples)
        for stage, topic, markers in (
            ("event", f"{self.name}-events", 0),
            ("trigger", f"{self.name}-events-pair-trigger", 1),
            ("action", f"{self.name}-events-pair-action", 1),
        ):
            for p, end in high_watermarks(self.watermarks, topic).items():
                if end and positions.get((stage, p), -1) < end - markers:
                    return False
        return True

    def stop(self) -> None:
        self.watermarks.close()
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_kafkaops(cluster: LocalCluster, workdir: Path, args: argparse.Namespace, i: int) -> dict:
    name = f"eb{i}-{os.getpid()}"
    pipe = KafkaopsPipeline(cluster, workdir, name, args.split)
    try:
        wait_for(pipe.ready, 60, 0.2, what="sensor stages assigned")
        reader = OutputReader(pipe.clients, f"{name}-out")
        reader.start()
        meter = CpuMeter(cluster, [p.pid for p in pipe.procs])
        t0 = time.perf_counter()
        produce(pipe.clients, name, 0, args.events, 0)
        wait_for(lambda: pipe.drained(args.events), 600, 0.05, what="drain")
        throughput = args.events / (time.perf_counter() - t0)
        cpu = meter.per_event_us(args.events)
        per_commit = pipe.records_per_commit()
        backlog_firings = reader.count
        reader.latencies.clear()
        steady = int(args.rate * args.seconds)
        produce(pipe.clients, name, args.events, steady, args.rate)
        wait_for(lambda: pipe.drained(args.events + steady), 600, 0.05, what="drain")
        reader.stop.set()
        reader.join(5)
        return {
            "events_per_s": throughput,
            **cpu,
            "backlog_firings": backlog_firings,
            "records_per_commit": per_commit,
            "steady_firings": len(reader.latencies),
            "p50_ms": statistics.median(reader.latencies),
            "p95_ms": percentile(reader.latencies, 0.95),
            "p99_ms": percentile(reader.latencies, 0.99),
        }
    except Exception:
        for log in pipe.logs:
            print(log.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        pipe.stop()


# --------------------------------------------------------------------------- baseline


def baseline_worker(brokers: str, name: str) -> None:
    """The bare pipe: consume a and b, produce one output record per input, commit per batch."""
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"{name}-pipe",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
        }
    )
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5, "enable.idempotence": True})
    consumer.subscribe([f"{name}-a", f"{name}-b"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        batch = consumer.consume(500, 0.01)
        if not batch:
            continue
        for msg in batch:
            if msg.error() is None:
                t = json.loads(msg.value())["t"]
                producer.produce(f"{name}-out", json.dumps({"a": t}).encode(), b"both")
        producer.flush(30)
        consumer.commit(asynchronous=False)
    consumer.close()


def run_baseline(cluster: LocalCluster, args: argparse.Namespace, i: int) -> dict:
    name = f"bl{i}-{os.getpid()}"
    clients = ClusterClients(KafkaCluster(id="bench", brokers=[cluster.bootstrap]))
    admin = clients.admin()
    for suffix in ("a", "b", "out"):
        create_topic(admin, f"{name}-{suffix}", partitions=PARTITIONS)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--baseline-worker", cluster.bootstrap, name]
    )
    try:
        reader = OutputReader(clients, f"{name}-out")
        reader.start()
        meter = CpuMeter(cluster, [proc.pid])
        t0 = time.perf_counter()
        produce(clients, name, 0, args.events, 0)
        wait_for(lambda: reader.count >= args.events, 600, 0.05, what="baseline drain")
        throughput = args.events / (time.perf_counter() - t0)
        cpu = meter.per_event_us(args.events)
        reader.latencies.clear()
        steady = int(args.rate * args.seconds)
        produce(clients, name, args.events, steady, args.rate)
        wait_for(lambda: reader.count >= args.events + steady, 600, 0.05, what="baseline")
        reader.stop.set()
        reader.join(5)
        return {
            "events_per_s": throughput,
            **cpu,
            "p50_ms": statistics.median(reader.latencies),
            "p95_ms": percentile(reader.latencies, 0.95),
            "p99_ms": percentile(reader.latencies, 0.99),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--rate", type=float, default=2_000, help="steady-phase events/s")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--split", action="store_true", help="sources and sensors apart")
    parser.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="events through both pipelines once, untimed, before the runs (broker JIT)",
    )
    parser.add_argument("--baseline-worker", nargs=2, metavar=("BROKERS", "NAME"))
    args = parser.parse_args()
    if args.baseline_worker:
        baseline_worker(*args.baseline_worker)
        return
    results: dict[str, list[dict]] = {"kafkaops": [], "baseline": []}
    with (
        tempfile.TemporaryDirectory(prefix="eventbus-bench-") as tmp,
        LocalCluster(name="eventbus-bench", throughput=True) as cluster,
    ):
        if args.warmup:
            warm = argparse.Namespace(**{**vars(args), "events": args.warmup, "seconds": 2})
            run_kafkaops(cluster, Path(tmp), warm, -1)
            run_baseline(cluster, warm, -1)
            print(f"warm-up: {args.warmup:,} events through each pipeline (not counted)")
        for i in range(args.runs):
            results["kafkaops"].append(run_kafkaops(cluster, Path(tmp), args, i))
            results["baseline"].append(run_baseline(cluster, args, i))
            print(f"run {i + 1}: {json.dumps({k: v[-1] for k, v in results.items()})}")
    med = {
        who: {
            k: statistics.median(r[k] for r in runs)
            for k in (
                "events_per_s",
                "broker_cpu_us",
                "jit_cpu_us",
                "pipeline_cpu_us",
                "p50_ms",
                "p95_ms",
                "p99_ms",
            )
        }
        for who, runs in results.items()
    }
    layout = "sources and sensor in two processes" if args.split else "one process"
    k, b = med["kafkaops"], med["baseline"]
    print(
        f"kafkaops ({layout}): {k['events_per_s']:,.0f} events/s; at {args.rate:,.0f} events/s"
        f" p50 {k['p50_ms']:.0f} ms, p95 {k['p95_ms']:.0f} ms, p99 {k['p99_ms']:.0f} ms"
        f" (median of {args.runs} runs); CPU per event: broker {k['broker_cpu_us']:.0f} us"
        f" (JIT {k['jit_cpu_us']:.0f} us),"
        f" kafkaops {k['pipeline_cpu_us']:.0f} us"
    )
    print(
        f"baseline (bare pipe): {b['events_per_s']:,.0f} events/s;"
        f" p50 {b['p50_ms']:.0f} ms, p95 {b['p95_ms']:.0f} ms, p99 {b['p99_ms']:.0f} ms;"
        f" CPU per event: broker {b['broker_cpu_us']:.0f} us"
        f" (JIT {b['jit_cpu_us']:.0f} us), pipe {b['pipeline_cpu_us']:.0f} us"
    )
    print(
        f"ratio kafkaops/baseline: throughput {k['events_per_s'] / b['events_per_s']:.2f}x,"
        f" p99 latency {k['p99_ms'] / b['p99_ms']:.1f}x"
    )


if __name__ == "__main__":
    main()
