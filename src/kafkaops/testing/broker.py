"""Real Apache Kafka brokers (KRaft, combined broker+controller nodes) as local processes.

One node, a three-node quorum, or a secured node with SASL and SSL listeners; any number of
independent clusters at once. Ports are picked free, data lives in a temp dir, and a cluster
is "ready" only when metadata from every node answers.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from kafkaops.testing.jars import HarnessError, java, kafka_libs

USERS = {"alice": "alice-secret", "bob": "bob-secret"}
"""SASL users every secured node knows (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512)."""

LOG4J2 = """\
status=warn
appender.out.type=Console
appender.out.name=OUT
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=WARN
rootLogger.appenderRef.out.ref=OUT
logger.srv.name=kafka.server.KafkaRaftServer
logger.srv.level=INFO
"""

FAST_SETTINGS = {
    "group.initial.rebalance.delay.ms": 0,
    "num.partitions": 1,
    "auto.create.topics.enable": "true",
    "delete.topic.enable": "true",
    "num.network.threads": 2,
    "num.io.threads": 2,
    "background.threads": 2,
    "num.recovery.threads.per.data.dir": 1,
    "log.cleaner.dedupe.buffer.size": 2 * 1024 * 1024,
    "log.segment.delete.delay.ms": 1000,
    "log.initial.task.delay.ms": 100,
    "controlled.shutdown.enable": "false",
    "offsets.topic.num.partitions": 5,
    "transaction.state.log.num.partitions": 5,
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": 5000,
    "broker.heartbeat.interval.ms": 500,
    "broker.session.timeout.ms": 4000,
}


def _replication(nodes: int) -> dict[str, Any]:
    rf = min(nodes, 3)
    min_isr = 2 if rf >= 3 else 1
    return {
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": min_isr,
        "default.replication.factor": rf,
        "min.insync.replicas": min_isr,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_cluster_id() -> str:
    """Kafka's Uuid text form; never starting with '-', which its CLI would read as an option."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _jaas(module: str, options: str = "") -> str:
    return f"org.apache.kafka.common.security.{module} required{options};"


@dataclass(eq=False)
class KafkaNode:
    """One combined broker+controller process."""

    node_id: int
    home: Path
    ports: dict[str, int]
    properties: dict[str, Any]
    heap: str
    throughput: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.home / "broker.log"

    @property
    def config_path(self) -> Path:
        return self.home / "server.properties"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def jvm(self, main: str, *args: str) -> list[str]:
        # Tests want a broker up fast and small: the C1 compiler only and the serial collector.
        # Benchmarks want one that runs like a real broker: full JIT and G1, as Kafka ships.
        tuning = (
            ["-Xms1g", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
            if self.throughput
            else ["-Xms64m", f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
        )
        return [
            java(),
            *tuning,
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp",
            f"{kafka_libs()}/*",
            main,
            *args,
        ]

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "log4j2.properties").write_text(LOG4J2)
        lines = [f"{k}={v}" for k, v in self.properties.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def format_command(self, cluster_id: str, scram: bool) -> list[str]:
        args = ["format", "-t", cluster_id, "-c", str(self.config_path)]
        if scram:
            for user, password in USERS.items():
                for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                    args += ["-S", f"{mech}=[name={user},password={password}]"]
        return self.jvm("kafka.tools.StorageTool", *args)

    def start(self, detach: bool = False) -> None:
        if self.running:
            return
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            self.jvm("kafka.Kafka", str(self.config_path)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=detach,
        )
        log.close()

    def stop(self, kill: bool = False, grace: float = 15.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass(eq=False)
class LocalCluster:
    """A real Kafka cluster on loopback: `nodes` combined nodes, optionally with SASL and SSL."""

    name: str = "kafka"
    nodes: int = 1
    secure: bool = False
    workdir: Path | None = None
    keep_workdir: bool = False
    port: int = 0
    """PLAINTEXT port of the first node; 0 picks a free one."""
    throughput: bool = False
    """JVM settings for sustained throughput (benchmarks) instead of a fast, small start."""
    cluster_id: str = field(default_factory=new_cluster_id)
    members: list[KafkaNode] = field(default_factory=list)
    tls: Any = None

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise HarnessError("a cluster needs at least one node")
        self._owns_workdir = self.workdir is None
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"kafkaops-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.secure:
            from kafkaops.testing.tls import make_tls_files

            self.tls = make_tls_files(self.workdir / "tls")
        ports = [self._ports() for _ in range(self.nodes)]
        if self.port:
            ports[0]["PLAINTEXT"] = self.port
        voters = ",".join(f"{i + 1}@127.0.0.1:{p['CONTROLLER']}" for i, p in enumerate(ports))
        heap = "384m" if self.nodes == 1 else "256m"
        for i, node_ports in enumerate(ports):
            home = self.workdir / f"node{i + 1}"
            props = self._properties(i + 1, node_ports, voters, home)
            self.members.append(
                KafkaNode(i + 1, home, node_ports, props, heap, throughput=self.throughput)
            )

    def _ports(self) -> dict[str, int]:
        names = ["PLAINTEXT", "CONTROLLER"]
        if self.secure:
            names += ["SASL_PLAINTEXT", "SSL", "SASL_SSL"]
        return {n: free_port() for n in names}

    def _properties(
        self, node_id: int, ports: dict[str, int], voters: str, home: Path
    ) -> dict[str, Any]:
        listeners = ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items())
        advertised = ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items() if n != "CONTROLLER")
        props: dict[str, Any] = {
            "process.roles": "broker,controller",
            "node.id": node_id,
            "controller.quorum.voters": voters,
            "listeners": listeners,
            "advertised.listeners": advertised,
            "listener.security.protocol.map": ",".join(
                f"{n}:{'PLAINTEXT' if n == 'CONTROLLER' else n}" for n in ports
            ),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(home / "data"),
            **FAST_SETTINGS,
            **_replication(self.nodes),
        }
        if self.secure:
            props.update(self._security_properties())
        return props

    def _security_properties(self) -> dict[str, Any]:
        plain_users = "".join(f' user_{u}="{p}"' for u, p in USERS.items())
        props: dict[str, Any] = {
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.tls.broker_keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.tls.ca),
            "ssl.client.auth": "requested",
        }
        for listener in ("sasl_plaintext", "sasl_ssl"):
            prefix = f"listener.name.{listener}"
            props[f"{prefix}.plain.sasl.jaas.config"] = _jaas("plain.PlainLoginModule", plain_users)
            for mech in ("scram-sha-256", "scram-sha-512"):
                props[f"{prefix}.{mech}.sasl.jaas.config"] = _jaas("scram.ScramLoginModule")
            props[f"{prefix}.oauthbearer.sasl.jaas.config"] = _jaas(
                "oauthbearer.OAuthBearerLoginModule", ' unsecuredLoginStringClaim_sub="broker"'
            )
        return props

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 120.0, detach: bool = False) -> LocalCluster:
        """Format every node (in parallel), start them together, wait until all serve metadata."""
        for node in self.members:
            node.write_config()
        formats = [
            subprocess.Popen(
                node.format_command(self.cluster_id, self.secure),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for node in self.members
        ]
        for node, proc in zip(self.members, formats, strict=True):
            out, _ = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise HarnessError(
                    f"formatting node {node.node_id} failed:\n{out.decode()[-2000:]}"
                )
        if not detach:
            _live.add(self)
        for node in self.members:
            node.start(detach=detach)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until every running node answers metadata on its own listener.

        Probing each node directly matters: cluster-wide metadata keeps listing a stopped broker
        until its session expires, and a node opens its port only once it is unfenced.
        """
        deadline = time.monotonic() + timeout
        for node in self.members:
            if node.process is None:
                continue
            admin = AdminClient(
                {
                    "bootstrap.servers": f"127.0.0.1:{node.ports['PLAINTEXT']}",
                    "socket.timeout.ms": 2000,
                    "logger": _quiet,
                }
            )
            last = "no answer"
            while True:
                if not node.running:
                    raise HarnessError(
                        f"{self.name}: node {node.node_id} exited during start-up:\n"
                        + node.log_tail()
                    )
                try:
                    if node.node_id in admin.list_topics(timeout=2).brokers:
                        break
                except KafkaException as exc:
                    last = str(exc)
                if time.monotonic() > deadline:
                    raise HarnessError(
                        f"{self.name}: node {node.node_id} not ready after {timeout:.0f}s "
                        f"({last})\n{node.log_tail()}"
                    )
                time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM every node at once (a quorum stalls when members leave one by one)."""
        for node in self.members:
            if node.running:
                node.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for node in self.members:
            node.stop()
        _live.discard(self)
        if self._owns_workdir and not self.keep_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_node(self, index: int, kill: bool = False) -> None:
        """Stop one node (0-based); the data stays, so `start_node` brings it back as it was."""
        self.members[index].stop(kill=kill)

    def start_node(self, index: int, timeout: float = 120.0) -> None:
        self.members[index].start()
        self.wait_ready(timeout)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------

    def bootstrap_for(self, listener: str = "PLAINTEXT") -> str:
        return ",".join(f"127.0.0.1:{n.ports[listener]}" for n in self.members)

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_for("PLAINTEXT")

    def cluster_section(
        self, cluster_id: str | None = None, listener: str = "PLAINTEXT", **keys: Any
    ) -> dict[str, Any]:
        """A `[[kafka]]` section (Kapacitor spelling) that reaches this cluster on `listener`."""
        section: dict[str, Any] = {
            "id": cluster_id or self.name,
            "brokers": self.bootstrap_for(listener).split(","),
            "timeout": "5s",
        }
        if listener in ("SSL", "SASL_SSL"):
            section.update({"use-ssl": True, "ssl-ca": str(self.tls.ca)})
        section.update(keys)
        return section

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(
            f"--- {self.name} node {n.node_id} ({n.log_path}) ---\n{n.log_tail(lines)}"
            for n in self.members
        )

    def pids(self) -> list[int]:
        return [n.process.pid for n in self.members if n.process is not None]


_live: set[LocalCluster] = set()
_quiet = logging.getLogger("kafkaops.testing.probe")
_quiet.propagate = False


@atexit.register
def _stop_leftovers() -> None:
    for cluster in list(_live):
        with contextlib.suppress(Exception):
            cluster.stop()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
