"""Broker start-up and shutdown times of the real-Kafka harness (1 and 3 nodes).

Prints median and p95 over several runs, and the ratio of a 3-node start to a 1-node start.
Usage: python bench/harness_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from kafkaops.testing import LocalCluster, kafka_libs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(nodes: int, runs: int) -> tuple[list[float], list[float]]:
    starts, stops = [], []
    for i in range(runs):
        cluster = LocalCluster(name=f"bench{nodes}-{i}", nodes=nodes)
        t0 = time.perf_counter()
        cluster.start()
        t1 = time.perf_counter()
        cluster.stop()
        t2 = time.perf_counter()
        starts.append(t1 - t0)
        stops.append(t2 - t1)
    return starts, stops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    t0 = time.perf_counter()
    kafka_libs()
    print(f"jar cache check: {time.perf_counter() - t0:.2f}s")
    medians = {}
    for nodes in (1, 3):
        starts, stops = measure(nodes, args.runs)
        medians[nodes] = statistics.median(starts)
        print(
            f"{nodes} node(s): start median {medians[nodes]:.2f}s"
            f" p95 {percentile(starts, 0.95):.2f}s"
            f" | stop median {statistics.median(stops):.2f}s ({args.runs} runs)"
        )
    print(f"ratio 3-node / 1-node start: {medians[3] / medians[1]:.2f}x")


if __name__ == "__main__":
    main()
