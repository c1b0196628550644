"""Task definitions, routing of points, events to topics, and alert state across restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kafkaops.alert.event import AlertEvent, AlertTemplates
from kafkaops.alert.handlerspec import KafkaHandlerOptions, LogHandlerOptions
from kafkaops.alert.lineprotocol import Point
from kafkaops.alert.silences import Silences
from kafkaops.alert.state import Level
from kafkaops.alert.tasks import (
    STATE_KIND,
    NoSuchTask,
    TaskError,
    TaskManager,
    anonymous_topic,
    compile_task,
    with_default_cluster,
)
from kafkaops.alert.tickscript import TickError
from kafkaops.alert.topics import Topics
from kafkaops.server.store import DocumentStore

T0 = 1_700_000_000_000_000_000
MINUTE = 60_000_000_000


class RecordingSink:
    def __init__(self, kind: str, name: str, options: Any) -> None:
        self.kind, self.name, self.options = kind, name, options
        self.events: list[AlertEvent] = []
        self.closed = False

    def submit(self, event: AlertEvent) -> None:
        self.events.append(event)

    async def close(self, timeout: float) -> None:
        self.closed = True


class FakeFactory:
    """Builds recording handlers instead of real ones (Kafka is the integration tests' job)."""

    def __init__(self) -> None:
        self.built: dict[str, RecordingSink] = {}
        self.writers: dict[Any, Any] = {}

    def build(self, name: str, options: Any) -> RecordingSink:
        kind = type(options).__name__.removesuffix("HandlerOptions").lower()
        self.built[name] = RecordingSink(kind, name, options)
        return self.built[name]


class World:
    """A TaskManager over a real store in tmp_path, rebuilt by `restart()`."""

    def __init__(self, path: Path, clusters: tuple[str, ...] = ("main",)) -> None:
        self.path = path
        self.clusters = clusters
        self.restart()

    def restart(self) -> None:
        self.store = DocumentStore(self.path / "alert.sqlite")
        self.factory = FakeFactory()
        self.topics = Topics(self.store, self.factory, Silences(self.store), None)  # type: ignore[arg-type]
        self.tasks = TaskManager(
            self.store,
            self.topics,
            self.factory,  # type: ignore[arg-type]
            clusters=self.clusters,
            registry=None,
            clock=lambda: T0,
        )
        self.tasks.start_enabled()

    def save(self) -> None:
        """What the job's flush loop does."""
        self.store.put_many(STATE_KIND, self.tasks.take_dirty())
        changed, _ = self.topics.take_dirty()
        self.store.put_many("topic", changed)

    def sink(self, task: str, index: int = 0, kind: str = "kafka") -> RecordingSink:
        return self.factory.built[f"{task}:{kind}{index}"]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def crit_task(extra: str = "", source: str = ".measurement('cpu').groupBy('host')") -> str:
    return f"""
stream
    |from(){source}
    |alert()
        .crit(lambda: "value" > 80)
        {extra}
        .kafka().cluster('main').kafkaTopic('alerts')
"""


def point(value: float, host: str = "a", t: int = T0, name: str = "cpu", **tags: str) -> Point:
    return Point(name, {"host": host, **tags}, {"value": value}, t)


def levels(sink: RecordingSink) -> list[tuple[str, str]]:
    return [(e.level.name, e.previous_level.name) for e in sink.events]


async def test_a_new_task_is_disabled_until_enabled(world: World) -> None:
    record = world.tasks.define("cpu", crit_task())
    assert (record.status, world.tasks.executing("cpu")) == ("disabled", False)
    world.tasks.process([point(90)])
    assert "cpu:kafka0" not in world.factory.built
    world.tasks.set_status("cpu", "enabled")
    world.tasks.process([point(90), point(10, t=T0 + MINUTE)])
    assert levels(world.sink("cpu")) == [("CRITICAL", "OK"), ("OK", "CRITICAL")]
    assert world.tasks.runners["cpu"].stats.alerts["CRITICAL"] == 1


async def test_events_reach_the_anonymous_and_the_named_topic(world: World) -> None:
    world.tasks.define("cpu", crit_task(".topic('ops')"), status="enabled")
    world.tasks.process([point(90)])
    anon = world.topics.events(anonymous_topic("cpu"))
    named = world.topics.events("ops")
    assert [e.id for e in anon] == [e.id for e in named] == ["cpu:host=a"]
    assert anonymous_topic("cpu") == "main:cpu:alert2"


async def test_measurement_dbrp_database_and_where_select_points(world: World) -> None:
    script = """
dbrp "telegraf"."autogen"
stream
    |from()
        .measurement('cpu')
        .where(lambda: "cpu" == 'total')
    |alert()
        .crit(lambda: "value" > 80)
        .log('/tmp/never-written.log')
"""
    world.tasks.define("sel", script, status="enabled")
    world.tasks.process([point(90, cpu="total")], "other", "autogen")
    world.tasks.process([point(90, cpu="cpu0", t=T0 + 1)], "telegraf", "autogen")
    world.tasks.process([point(90, name="mem", cpu="total", t=T0 + 2)], "telegraf", "autogen")
    assert world.sink("sel", kind="log").events == []
    world.tasks.process([point(90, cpu="total", t=T0 + 3)], "telegraf", "autogen")
    assert [e.time_ns for e in world.sink("sel", kind="log").events] == [T0 + 3]
    assert world.tasks.records["sel"].dbrps == [("telegraf", "autogen")]


async def test_default_id_shortcut_equals_the_template(world: World) -> None:
    templates = AlertTemplates.parse()
    world.tasks.define("ids", crit_task(source=".groupBy('host', 'dc')"), status="enabled")
    world.tasks.define("nil", crit_task(source=""), status="enabled")
    world.tasks.process([point(90, dc="eu")])
    (grouped,) = world.sink("ids").events
    (nil,) = world.sink("nil").events
    expected = templates.render_id(name="cpu", task_name="ids", group="dc=eu,host=a", tags={})
    assert grouped.id == expected == "cpu:dc=eu,host=a"
    assert nil.id == "cpu:nil"


async def test_custom_templates_and_errors_are_counted_not_fatal(world: World) -> None:
    world.tasks.define(
        "tpl",
        crit_task(".id('{{ index .Tags \"host\" }}').message('{{ .ID }}: {{ .Nope }}')"),
        status="enabled",
    )
    world.tasks.process([point(90)])
    runner = world.tasks.runners["tpl"]
    assert world.sink("tpl").events == []
    assert runner.stats.errors == 1
    world.tasks.define("tpl2", crit_task(".id('{{ .TaskName }}-{{ .Group }}')"), status="enabled")
    world.tasks.process([point(90, t=T0 + 1)])
    assert [e.id for e in world.sink("tpl2").events] == ["tpl2-host=a"]


async def test_missing_fields_count_as_expression_errors(world: World) -> None:
    world.tasks.define("cpu", crit_task(), status="enabled")
    world.tasks.process([Point("cpu", {"host": "a"}, {"other": 1.0}, T0)])
    assert world.tasks.runners["cpu"].stats.errors == 1
    assert world.sink("cpu").events == []


async def test_definition_errors_change_nothing(world: World) -> None:
    with pytest.raises(TickError) as tick:
        world.tasks.define("bad", "stream\n  |from()\n  |alert()\n    .crit(lambda: >)\n")
    assert (tick.value.line, tick.value.column) == (4, 19)
    with pytest.raises(TaskError, match="unknown cluster 'far'") as err:
        world.tasks.define("bad", crit_task().replace("'main'", "'far'"))
    assert err.value.line == 7
    with pytest.raises(TaskError, match="task ID"):
        world.tasks.define("no/slash", crit_task())
    with pytest.raises(TaskError, match="invalid template"):
        world.tasks.define("bad", crit_task(".message('{{ .ID ')"))
    assert world.tasks.records == {}
    assert world.store.list("task") == {}


async def test_dbrps_come_from_the_script_or_the_request_not_both() -> None:
    script = 'dbrp "a"."b"\n' + crit_task()
    assert compile_task(script, clusters=["main"]).dbrps == [("a", "b")]
    assert compile_task(crit_task(), clusters=["main"], dbrps=[("x", "y")]).dbrps == [("x", "y")]
    with pytest.raises(TaskError, match="not both"):
        compile_task(script, clusters=["main"], dbrps=[("x", "y")])


async def test_kafka_cluster_defaults_only_when_unambiguous() -> None:
    script = crit_task().replace(".cluster('main')", "")
    (options,) = compile_task(script, clusters=["only"]).handlers
    assert isinstance(options, KafkaHandlerOptions)
    assert options.cluster == "only"
    with pytest.raises(TaskError, match="unknown cluster ''"):
        compile_task(script, clusters=["a", "b"])
    assert with_default_cluster("kafka", {"Cluster": ""}, ["x"]) == {"cluster": "x"}
    assert with_default_cluster("kafka", {"cluster": "y"}, ["x"]) == {"cluster": "y"}
    assert with_default_cluster("log", {}, ["x"]) == {}


async def test_handlers_of_every_kind_are_built_with_their_options(world: World) -> None:
    script = """
stream|from().measurement('cpu')
    |alert()
        .crit(lambda: "value" > 80)
        .log('/var/log/alerts.log').mode(0644)
        .kafka().kafkaTopic('t').partitionHashAlgorithm('murmur2').disablePartitionById()
        .exec('/bin/notify', 'ops')
        .tcp('localhost:9000')
        .post('http://example/hook').header('X-Team', 'ops')
"""
    world.tasks.define("all", script, status="enabled")
    kinds = sorted(n for n in world.factory.built if n.startswith("all:"))
    assert kinds == ["all:exec2", "all:kafka1", "all:log0", "all:post4", "all:tcp3"]
    log_options = world.sink("all", 0, "log").options
    assert isinstance(log_options, LogHandlerOptions)
    assert log_options.mode == 0o644
    kafka = world.sink("all", 1, "kafka").options
    assert (kafka.cluster, kafka.partition_algorithm.value, kafka.partition_by_id) == (
        "main",
        "murmur2",
        False,
    )


async def test_redefining_the_same_task_does_not_restart_it(world: World) -> None:
    world.tasks.define("cpu", crit_task(), status="enabled")
    runner = world.tasks.runners["cpu"]
    assert world.tasks.define("cpu", crit_task()) is world.tasks.records["cpu"]
    assert world.tasks.runners["cpu"] is runner
    world.tasks.define("cpu", crit_task(".stateChangesOnly()"))
    assert world.tasks.runners["cpu"] is not runner
    assert world.tasks.records["cpu"].status == "enabled"


async def test_state_survives_a_restart(world: World) -> None:
    world.tasks.define("cpu", crit_task(".stateChangesOnly()"), status="enabled")
    world.tasks.process([point(90)])
    world.save()
    world.restart()
    world.tasks.process([point(95, t=T0 + MINUTE), point(10, t=T0 + 2 * MINUTE)])
    assert levels(world.sink("cpu")) == [("OK", "CRITICAL")]
    assert world.sink("cpu").events[0].duration_ns == 2 * MINUTE


async def test_a_redefined_task_restores_groups_from_the_topic_store(world: World) -> None:
    world.tasks.define("cpu", crit_task(".stateChangesOnly()"), status="enabled")
    world.tasks.process([point(90)])
    world.tasks.define("cpu", crit_task(".stateChangesOnly().message('new')"))
    assert world.store.get(STATE_KIND, "cpu") is None
    world.tasks.process([point(91, t=T0 + MINUTE), point(1, t=T0 + 2 * MINUTE)])
    assert [(e.level, e.message) for e in world.sink("cpu").events] == [(Level.OK, "new")]


async def test_disable_keeps_state_delete_forgets_everything(world: World) -> None:
    world.tasks.define("cpu", crit_task(".stateChangesOnly()"), status="enabled")
    world.tasks.process([point(90)])
    first = world.sink("cpu")
    world.tasks.set_status("cpu", "disabled")
    assert world.store.get(STATE_KIND, "cpu") is not None
    world.tasks.set_status("cpu", "enabled")
    world.tasks.process([point(90, t=T0 + 1)])
    assert world.sink("cpu").events == []  # still CRITICAL, nothing new to say
    assert first is not world.sink("cpu")
    world.tasks.delete("cpu")
    assert world.store.get(STATE_KIND, "cpu") is None
    assert world.store.get("task", "cpu") is None
    assert anonymous_topic("cpu") not in world.topics.names()
    with pytest.raises(NoSuchTask):
        world.tasks.delete("cpu")


async def test_an_enabled_task_that_cannot_start_is_reported(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.tasks.define("cpu", crit_task(), status="enabled")
    world.store.close()
    world.clusters = ("other",)
    world.restart()
    assert not world.tasks.executing("cpu")
    assert "unknown cluster 'main'" in world.tasks.failures["cpu"]


async def test_a_failing_task_does_not_stop_the_others(world: World) -> None:
    world.tasks.define("broken", crit_task(), status="enabled")
    world.tasks.define("fine", crit_task(), status="enabled")

    def explode(*_args, **_kwargs):
        raise RuntimeError("bug")

    world.tasks.runners["broken"].machine.process = explode  # type: ignore[method-assign]
    world.tasks.process([point(90)])
    assert world.tasks.runners["broken"].stats.errors == 1
    assert [e.id for e in world.sink("fine").events] == ["cpu:host=a"]
