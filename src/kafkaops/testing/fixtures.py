"""pytest fixtures over real brokers; loaded as a plugin (entry point `pytest11: kafkaops`).

Clusters are session-scoped and shared: tests isolate themselves with unique topic and group names
(`unique`). A failing test gets the tail of every broker log it used in its report.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import pytest

from kafkaops.testing.broker import LocalCluster
from kafkaops.testing.redis import RedisServer

_CLUSTER_FIXTURES = ("kafka", "kafka3", "kafka_secure", "kafka_clusters")


@pytest.fixture(scope="session")
def kafka() -> Iterator[LocalCluster]:
    """One real broker (KRaft, combined node)."""
    with LocalCluster(name="kafka") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kafka3() -> Iterator[LocalCluster]:
    """Three nodes, replication factor 3, min ISR 2. Tests that stop a node restart it."""
    with LocalCluster(name="kafka3", nodes=3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kafka_secure() -> Iterator[LocalCluster]:
    """One node with SASL_PLAINTEXT, SSL and SASL_SSL listeners (users in `testing.USERS`)."""
    with LocalCluster(name="secure", secure=True) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kafka_clusters() -> Iterator[Callable[[str], LocalCluster]]:
    """Independent single-node clusters by name (started on first use), e.g. source and target."""
    started: dict[str, LocalCluster] = {}

    def get(name: str) -> LocalCluster:
        if name not in started:
            started[name] = LocalCluster(name=name).start()
        return started[name]

    yield get
    for cluster in started.values():
        cluster.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server on a free port (shared: tests use keys of their own)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A name no other test uses: for topics, groups and transactional ids."""
    base = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-")[:40]
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    if report.failed and call.when != "setup":
        for name in _CLUSTER_FIXTURES:
            value = getattr(item, "funcargs", {}).get(name)
            if isinstance(value, LocalCluster):
                report.sections.append((f"broker log: {value.name}", value.log_tail(80)))
    return report
