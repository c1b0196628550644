"""The HTTP API's paths, JSON shapes and error answers (no broker: handlers are recorded)."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kafkaops import __version__
from kafkaops.alert.api import (
    ping_routes,
    service_test_routes,
    silence_routes,
    task_routes,
    topic_routes,
)
from kafkaops.alert.event import AlertEvent
from kafkaops.alert.ingest import Ingest, write_routes
from kafkaops.alert.silences import Silences
from kafkaops.alert.tasks import TaskManager
from kafkaops.alert.topics import Topics
from kafkaops.server.store import DocumentStore

T0 = 1_700_000_000_000_000_000

TASK = """
stream
    |from()
        .measurement('cpu')
        .groupBy('host')
    |alert()
        .warn(lambda: "value" > 70)
        .crit(lambda: "value" > 80)
        .topic('ops')
"""


class Sink:
    kind = "log"

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: list[AlertEvent] = []

    def submit(self, event: AlertEvent) -> None:
        self.events.append(event)

    async def close(self, timeout: float) -> None:
        return None


class Factory:
    def __init__(self) -> None:
        self.built: dict[str, Sink] = {}
        self.tests: list[tuple[str, ...]] = []

    def build(self, name: str, _options: Any) -> Sink:
        self.built[name] = Sink(name)
        return self.built[name]

    async def send_test(self, cluster: str, topic: str, key: str, message: str, timeout: float):
        self.tests.append((cluster, topic, key, message))
        return None if topic != "broken" else "Broker: Unknown topic or partition"


class Api:
    def __init__(self, client: TestClient, factory: Factory, state: dict[str, Any]) -> None:
        self.client, self.factory, self.state = client, factory, state

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        response = await self.client.request(method, path, json=body)
        text = await response.text()
        return response.status, (await response.json() if text.strip() else None)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = DocumentStore(tmp_path / "a.sqlite")
    factory = Factory()
    silences = Silences(store, lambda: T0)
    topics = Topics(store, factory, silences, None)  # type: ignore[arg-type]
    tasks = TaskManager(store, topics, factory, clusters=["main"], registry=None)  # type: ignore[arg-type]
    state = {"accepting": True}
    app = web.Application()
    app.router.add_routes(
        write_routes(Ingest(tasks, None), lambda: state["accepting"])
        + ping_routes()
        + task_routes(tasks)
        + topic_routes(topics, ["main"])
        + silence_routes(silences, lambda: T0)
        + service_test_routes(factory, ["main"])  # type: ignore[arg-type]
    )
    async with TestClient(TestServer(app)) as client:
        yield Api(client, factory, state)


async def test_task_crud_with_kapacitors_shapes(api: Api) -> None:
    status, task = await api.call("POST", "/kapacitor/v1/tasks", {"id": "cpu", "script": TASK})
    assert status == 200
    assert task["link"] == {"rel": "self", "href": "/kapacitor/v1/tasks/cpu"}
    assert (task["type"], task["status"], task["executing"], task["dbrps"]) == (
        "stream",
        "disabled",
        False,
        [],
    )
    assert task["script"] == TASK
    status, body = await api.call("POST", "/kapacitor/v1/tasks", {"id": "cpu", "script": TASK})
    assert (status, body["error"]) == (
        409,
        "id: task 'cpu' already exists; use PATCH to change it",
    )
    status, task = await api.call(
        "PATCH",
        "/kapacitor/v1/tasks/cpu",
        {"status": "enabled", "dbrps": [{"db": "telegraf", "rp": "autogen"}]},
    )
    assert (status, task["status"], task["executing"]) == (200, "enabled", True)
    assert task["dbrps"] == [{"db": "telegraf", "rp": "autogen"}]
    assert task["stats"] == {
        "points": 0,
        "alerts": {"OK": 0, "INFO": 0, "WARNING": 0, "CRITICAL": 0},
        "errors": 0,
    }
    status, listed = await api.call("GET", "/kapacitor/v1/tasks?pattern=c*")
    assert [t["id"] for t in listed["tasks"]] == ["cpu"]
    status, listed = await api.call("GET", "/kapacitor/v1/tasks?pattern=x*")
    assert listed["tasks"] == []
    assert (await api.call("DELETE", "/kapacitor/v1/tasks/cpu"))[0] == 204
    assert (await api.call("GET", "/kapacitor/v1/tasks/cpu"))[0] == 404
    assert (await api.call("DELETE", "/kapacitor/v1/tasks/cpu"))[0] == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"script": TASK}, "id: required"),
        ({"id": "x"}, "script: required"),
        ({"id": "x", "script": TASK, "type": "batch"}, "type: only stream"),
        ({"id": "x", "script": TASK, "vars": {"a": 1}}, "template tasks"),
        ({"id": "x", "script": TASK, "status": "on"}, "status: must be enabled or disabled"),
        ({"id": "x", "script": TASK, "dbrps": ["telegraf.autogen"]}, "dbrps: expected a list"),
        ({"id": "x", "script": TASK, "colour": 1}, "unknown task field(s): colour"),
        ({"id": "x", "script": "stream|from()\n|alert().crit(lambda: 1 +)"}, "script: line 2"),
    ],
)
async def test_task_errors_are_400_naming_the_field(api: Api, body: dict, message: str) -> None:
    status, answer = await api.call("POST", "/kapacitor/v1/tasks", body)
    assert status == 400
    assert message in answer["error"]


async def test_script_errors_carry_line_and_column(api: Api) -> None:
    status, answer = await api.call(
        "POST", "/kapacitor/v1/tasks", {"id": "x", "script": "stream\n  |from()\n  |nope()"}
    )
    assert (status, answer["line"], answer["column"]) == (400, 3, 4)
    response = await api.client.post("/kapacitor/v1/tasks", data=b"{not json")
    assert response.status == 400
    assert (await response.json())["error"].startswith("invalid JSON body")


async def test_write_topics_events_and_handlers(api: Api) -> None:
    await api.call(
        "POST", "/kapacitor/v1/tasks", {"id": "cpu", "script": TASK, "status": "enabled"}
    )
    status, handler = await api.call(
        "POST",
        "/kapacitor/v1/alerts/topics/ops/handlers",
        {"id": "log", "kind": "log", "match": "changed()", "options": {"path": "/tmp/a.log"}},
    )
    assert status == 200
    assert handler == {
        "link": {"rel": "self", "href": "/kapacitor/v1/alerts/topics/ops/handlers/log"},
        "id": "log",
        "kind": "log",
        "options": {"path": "/tmp/a.log"},
        "match": "changed()",
    }
    body = f"cpu,host=a value=75 {T0}\ncpu,host=a value=90 {T0 + 300_000_000_000}"
    response = await api.client.post("/kapacitor/v1/write?db=telegraf", data=body)
    assert response.status == 204
    assert [e.level.name for e in api.factory.built["ops:log"].events] == ["WARNING", "CRITICAL"]
    status, topics = await api.call("GET", "/kapacitor/v1/alerts/topics?min-level=crit")
    assert topics["topics"] == [
        {
            "link": {"rel": "self", "href": "/kapacitor/v1/alerts/topics/ops"},
            "id": "ops",
            "level": "CRITICAL",
            "collected": 2,
            "events-link": {"rel": "events", "href": "/kapacitor/v1/alerts/topics/ops/events"},
            "handlers-link": {
                "rel": "handlers",
                "href": "/kapacitor/v1/alerts/topics/ops/handlers",
            },
        }
    ]
    status, events = await api.call("GET", "/kapacitor/v1/alerts/topics/ops/events")
    (only,) = events["events"]
    assert only["id"] == "cpu:host=a"
    assert only["state"]["duration"] == "5m0s"
    assert only["state"]["time"] == "2023-11-14T22:18:20Z"
    status, one = await api.call("GET", "/kapacitor/v1/alerts/topics/ops/events/cpu:host=a")
    assert (status, one["state"]["level"]) == (200, "CRITICAL")
    assert (await api.call("GET", "/kapacitor/v1/alerts/topics/nope"))[0] == 404
    assert (await api.call("GET", "/kapacitor/v1/alerts/topics?min-level=loud"))[0] == 400
    status, _ = await api.call(
        "POST",
        "/kapacitor/v1/alerts/topics/ops/handlers",
        {"id": "log", "kind": "log", "options": {"path": "/tmp/a.log"}},
    )
    assert status == 409
    status, replaced = await api.call(
        "PUT",
        "/kapacitor/v1/alerts/topics/ops/handlers/log",
        {"kind": "log", "options": {"path": "/tmp/b.log"}},
    )
    assert (status, replaced["options"], replaced["match"]) == (200, {"path": "/tmp/b.log"}, "")
    status, answer = await api.call(
        "PUT", "/kapacitor/v1/alerts/topics/ops/handlers/other", {"kind": "log"}
    )
    assert status == 404
    status, answer = await api.call(
        "POST", "/kapacitor/v1/alerts/topics/ops/handlers", {"id": "x", "kind": "smtp"}
    )
    assert (status, "unsupported handler kind 'smtp'" in answer["error"]) == (400, True)
    assert (await api.call("DELETE", "/kapacitor/v1/alerts/topics/ops/handlers/log"))[0] == 204
    assert (await api.call("DELETE", "/kapacitor/v1/alerts/topics/ops"))[0] == 204
    status, events = await api.call("GET", "/kapacitor/v1/alerts/topics/ops/events")
    assert status == 404


async def test_patch_a_topic_handler_with_json_patch(api: Api) -> None:
    path = "/kapacitor/v1/alerts/topics/ops/handlers/log"
    await api.call(
        "POST",
        "/kapacitor/v1/alerts/topics/ops/handlers",
        {"id": "log", "kind": "log", "options": {"path": "/tmp/a.log"}},
    )
    status, patched = await api.call(
        "PATCH",
        path,
        [
            {"op": "replace", "path": "/options/path", "value": "/tmp/b.log"},
            {"op": "add", "path": "/match", "value": "changed()"},
        ],
    )
    assert (status, patched["options"], patched["match"]) == (
        200,
        {"path": "/tmp/b.log"},
        "changed()",
    )
    assert (await api.call("GET", path))[1]["options"] == {"path": "/tmp/b.log"}
    status, answer = await api.call(
        "PATCH", path, [{"op": "replace", "path": "/options/nope/deeper", "value": 1}]
    )
    assert status == 400
    assert answer["error"].startswith("patch: ")
    status, answer = await api.call("PATCH", path, [{"op": "replace", "path": "/id", "value": "x"}])
    assert (status, answer["error"]) == (400, "id: the body says 'x', the path 'log'")
    status, answer = await api.call(
        "PATCH", path, [{"op": "replace", "path": "/kind", "value": "smtp"}]
    )
    assert status == 400
    assert "unsupported handler kind 'smtp'" in answer["error"]
    status, answer = await api.call("PATCH", path, {"op": "replace"})
    assert (status, answer["error"]) == (400, "the body must be a JSON array (RFC 6902 JSON Patch)")
    status, _ = await api.call("PATCH", "/kapacitor/v1/alerts/topics/ops/handlers/none", [])
    assert status == 404
    # Refused patches changed nothing.
    assert (await api.call("GET", path))[1]["options"] == {"path": "/tmp/b.log"}


async def test_write_answers(api: Api) -> None:
    await api.call(
        "POST", "/kapacitor/v1/tasks", {"id": "cpu", "script": TASK, "status": "enabled"}
    )
    response = await api.client.post(
        "/write",
        data=gzip.compress(b"cpu,host=z value=99 1700000000"),
        headers={"Content-Encoding": "gzip"},
        params={"precision": "s"},
    )
    assert response.status == 204
    # No handler on ops: the event is still collected.
    _, events = await api.call("GET", "/kapacitor/v1/alerts/topics/ops/events")
    assert events["events"][0]["state"]["time"] == "2023-11-14T22:13:20Z"
    response = await api.client.post("/write", data="cpu,host=a value=1\nbad line here\n")
    answer = await response.json()
    assert (response.status, answer["accepted"]) == (400, 1)
    assert answer["errors"][0]["line"] == 2
    api.state["accepting"] = False
    response = await api.client.post("/write", data="cpu,host=a value=1")
    assert response.status == 503


async def test_silences_service_tests_and_ping(api: Api) -> None:
    status, silence = await api.call(
        "POST", "/kapacitor/v1/alerts/silences", {"match": "level() > OK", "duration": "2h"}
    )
    assert (status, silence["state"], silence["ends-at"]) == (200, "active", "2023-11-15T00:13:20Z")
    for body, message in (
        ({"duration": "2h"}, "match: required"),
        ({"match": "TRUE"}, "duration: required"),
        ({"match": "TRUE", "duration": "soon"}, "duration: not a duration"),
        ({"match": "level( >", "duration": "1h"}, "match: line 1"),
    ):
        status, answer = await api.call("POST", "/kapacitor/v1/alerts/silences", body)
        assert (status, message in answer["error"]) == (400, True), answer
    status, listed = await api.call("GET", "/kapacitor/v1/alerts/silences")
    assert [s["id"] for s in listed["silences"]] == [silence["id"]]
    assert (await api.call("DELETE", "/kapacitor/v1/alerts/silences/nope"))[0] == 404

    status, defaults = await api.call("GET", "/kapacitor/v1/service-tests/kafka")
    assert defaults["options"] == {
        "cluster": "main",
        "topic": "test",
        "key": "key",
        "message": "test kafka message",
    }
    status, result = await api.call("POST", "/kapacitor/v1/service-tests/kafka", {})
    assert result == {"success": True, "message": ""}
    assert api.factory.tests == [("main", "test", "key", "test kafka message")]
    status, result = await api.call(
        "POST", "/kapacitor/v1/service-tests/kafka", {"topic": "broken"}
    )
    assert (status, result["success"]) == (200, False)
    status, result = await api.call("POST", "/kapacitor/v1/service-tests/kafka", {"colour": "x"})
    assert status == 400

    response = await api.client.head("/kapacitor/v1/ping")
    assert response.status == 204
    assert response.headers["X-Kapacitor-Version"] == f"kafkaops-{__version__}"
