"""Kapacitor's HTTP paths and JSON shapes, so `curl` habits and scripts carry over.

Errors are `{"error": "..."}` as in Kapacitor, with the field, line or column that is wrong in
the text (and as `line`/`column` keys for script errors). User mistakes answer 4xx; Kapacitor
answers some of them (duplicate handler, bad option) with 500, which scripts cannot tell from a
real failure, so those are 400/409 here.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Collection
from typing import Any

import jsonpatch
import jsonpointer
from aiohttp import web

from kafkaops import __version__
from kafkaops.alert.gotemplate import Time, format_go_duration
from kafkaops.alert.handlers import HandlerFactory
from kafkaops.alert.handlerspec import HandlerSpecError, validate_handler
from kafkaops.alert.silences import Silence, Silences
from kafkaops.alert.state import EventState, Level
from kafkaops.alert.tasks import (
    ALERT_NODE,
    NoSuchTask,
    TaskError,
    TaskManager,
    TaskRecord,
    with_default_cluster,
)
from kafkaops.alert.tickscript import TickError
from kafkaops.alert.topics import BoundHandler, Topics
from kafkaops.config.durations import parse_duration

BASE = "/kapacitor/v1"
TASKS = f"{BASE}/tasks"
TOPICS = f"{BASE}/alerts/topics"
SILENCES = f"{BASE}/alerts/silences"
SERVICE_TESTS = f"{BASE}/service-tests"
TEST_TIMEOUT_S = 10.0


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _link(href: str, rel: str = "self") -> dict[str, str]:
    return {"rel": rel, "href": href}


def _time(ns: int) -> str:
    return Time(ns).rfc3339nano()


async def _json_body(request: web.Request, kind: type = dict) -> Any:
    """The request's JSON body, which must be a `kind` (an object, or a list for JSON Patch)."""
    text = await request.text()
    try:
        data = json.loads(text) if text.strip() else kind()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"invalid JSON body: {exc}"}), content_type="application/json"
        ) from None
    if not isinstance(data, kind):
        name = "a JSON object" if kind is dict else "a JSON array (RFC 6902 JSON Patch)"
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"the body must be {name}"}),
            content_type="application/json",
        )
    return data


def _min_level(request: web.Request) -> Level:
    text = request.query.get("min-level", "OK")
    try:
        return Level.parse(text)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"min-level: invalid level {text!r}"}),
            content_type="application/json",
        ) from None


def _pattern(request: web.Request) -> str:
    return request.query.get("pattern", "") or "*"


def _script_error(exc: TickError | TaskError) -> web.Response:
    line = getattr(exc, "line", 0)
    column = getattr(exc, "column", 0)
    extra = {"line": line, "column": column} if line else {}
    prefix = "script: " if isinstance(exc, TickError) else ""
    return _error(400, f"{prefix}{exc}", **extra)


def _dbrps(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list) or not all(
        isinstance(d, dict) and isinstance(d.get("db"), str) and isinstance(d.get("rp"), str)
        for d in value
    ):
        raise TaskError('dbrps: expected a list of {"db": "...", "rp": "..."}')
    return [(d["db"], d["rp"]) for d in value]


def task_json(record: TaskRecord, tasks: TaskManager) -> dict[str, Any]:
    runner = tasks.runners.get(record.id)
    return {
        "link": _link(f"{TASKS}/{record.id}"),
        "id": record.id,
        "template-id": "",
        "type": "stream",
        "dbrps": [{"db": db, "rp": rp} for db, rp in record.dbrps],
        "script": record.script,
        "dot": f"digraph {record.id} {{\nstream0 -> from1;\nfrom1 -> {ALERT_NODE};\n}}",
        "status": record.status,
        "executing": runner is not None,
        "error": tasks.failures.get(record.id, ""),
        "stats": runner.stats.to_dict() if runner else {},
        "created": _time(record.created_ns),
        "modified": _time(record.modified_ns),
        "last-enabled": _time(record.last_enabled_ns) if record.last_enabled_ns else "",
        "vars": {},
    }


def task_routes(tasks: TaskManager) -> list[web.RouteDef]:
    async def list_tasks(request: web.Request) -> web.Response:
        pattern = _pattern(request)
        chosen = [r for i, r in sorted(tasks.records.items()) if fnmatch.fnmatchcase(i, pattern)]
        return web.json_response({"tasks": [task_json(r, tasks) for r in chosen]})

    async def create(request: web.Request) -> web.Response:
        body = await _json_body(request)
        task_id = body.get("id")
        if not isinstance(task_id, str):
            return _error(400, "id: required, a string")
        if task_id in tasks.records:
            return _error(409, f"id: task {task_id!r} already exists; use PATCH to change it")
        return _define(task_id, body, require_script=True)

    async def update(request: web.Request) -> web.Response:
        task_id = request.match_info["id"]
        if task_id not in tasks.records:
            return _error(404, f"no task {task_id!r}")
        return _define(task_id, await _json_body(request), require_script=False)

    def _define(task_id: str, body: dict[str, Any], require_script: bool) -> web.Response:
        unknown = set(body) - {"id", "type", "dbrps", "script", "status", "vars", "template-id"}
        if unknown:
            return _error(400, f"unknown task field(s): {', '.join(sorted(unknown))}")
        if body.get("type", "stream") != "stream":
            return _error(400, f"type: only stream tasks are supported (got {body['type']!r})")
        if body.get("vars") or body.get("template-id"):
            return _error(400, "vars/template-id: template tasks are not supported")
        script = body.get("script")
        if script is None and require_script:
            return _error(400, "script: required")
        if script is not None and not isinstance(script, str):
            return _error(400, "script: must be a string")
        status = body.get("status")
        if status is not None and status not in ("enabled", "disabled"):
            return _error(400, f"status: must be enabled or disabled (got {status!r})")
        try:
            dbrps = _dbrps(body["dbrps"]) if "dbrps" in body else None
            record = tasks.define(task_id, script, dbrps=dbrps, status=status)
        except (TickError, TaskError) as exc:
            return _script_error(exc)
        return web.json_response(task_json(record, tasks))

    async def get(request: web.Request) -> web.Response:
        record = tasks.records.get(request.match_info["id"])
        if record is None:
            return _error(404, f"no task {request.match_info['id']!r}")
        return web.json_response(task_json(record, tasks))

    async def delete(request: web.Request) -> web.Response:
        try:
            tasks.delete(request.match_info["id"])
        except NoSuchTask as exc:
            return _error(404, str(exc))
        return web.Response(status=204)

    return [
        web.get(TASKS, list_tasks),
        web.post(TASKS, create),
        web.get(TASKS + "/{id}", get),
        web.patch(TASKS + "/{id}", update),
        web.delete(TASKS + "/{id}", delete),
    ]


def topic_json(topic: str, topics: Topics) -> dict[str, Any]:
    state = topics.states.get(topic)
    href = f"{TOPICS}/{topic}"
    return {
        "link": _link(href),
        "id": topic,
        "level": (state.level if state else Level.OK).name,
        "collected": state.collected if state else 0,
        "events-link": _link(f"{href}/events", "events"),
        "handlers-link": _link(f"{href}/handlers", "handlers"),
    }


def event_json(topic: str, event: EventState) -> dict[str, Any]:
    return {
        "link": _link(f"{TOPICS}/{topic}/events/{event.id}"),
        "id": event.id,
        "state": {
            "message": event.message,
            "details": event.details,
            "time": _time(event.time_ns),
            "duration": format_go_duration(event.duration_ns),
            "level": event.level.name,
        },
    }


def handler_json(topic: str, bound: BoundHandler) -> dict[str, Any]:
    spec = bound.handler.spec
    return {
        "link": _link(f"{TOPICS}/{topic}/handlers/{spec.id}"),
        "id": spec.id,
        "kind": spec.kind,
        "options": spec.options,
        "match": spec.match,
    }


def topic_routes(topics: Topics, clusters: Collection[str]) -> list[web.RouteDef]:
    def known(topic: str) -> None:
        if topic not in topics.names():
            raise web.HTTPNotFound(
                text=json.dumps({"error": f"unknown topic: {topic!r}"}),
                content_type="application/json",
            )

    async def list_topics(request: web.Request) -> web.Response:
        pattern, min_level = _pattern(request), _min_level(request)
        chosen = [
            topic_json(t, topics)
            for t in sorted(topics.names())
            if fnmatch.fnmatchcase(t, pattern)
            and (topics.states[t].level if t in topics.states else Level.OK) >= min_level
        ]
        return web.json_response({"link": _link(TOPICS), "topics": chosen})

    async def get_topic(request: web.Request) -> web.Response:
        topic = request.match_info["topic"]
        known(topic)
        return web.json_response(topic_json(topic, topics))

    async def delete_topic(request: web.Request) -> web.Response:
        topics.delete_topic(request.match_info["topic"])
        return web.Response(status=204)

    async def list_events(request: web.Request) -> web.Response:
        topic = request.match_info["topic"]
        known(topic)
        events = [event_json(topic, e) for e in topics.events(topic, _min_level(request))]
        return web.json_response(
            {"link": _link(f"{TOPICS}/{topic}/events"), "topic": topic, "events": events}
        )

    async def get_event(request: web.Request) -> web.Response:
        topic, event_id = request.match_info["topic"], request.match_info["id"]
        state = topics.event_state(topic, event_id)
        if state is None:
            return _error(404, f"unknown event {event_id!r} in topic {topic!r}")
        return web.json_response(event_json(topic, state))

    one = TOPICS + "/{topic}"
    return [
        web.get(TOPICS, list_topics),
        web.get(one, get_topic),
        web.delete(one, delete_topic),
        web.get(one + "/events", list_events),
        web.get(one + "/events/{id:.+}", get_event),
        *_handler_routes(topics, clusters),
    ]


def _handler_routes(topics: Topics, clusters: Collection[str]) -> list[web.RouteDef]:
    async def list_handlers(request: web.Request) -> web.Response:
        topic, pattern = request.match_info["topic"], _pattern(request)
        chosen = [
            handler_json(topic, h)
            for hid, h in sorted(topics.handlers.get(topic, {}).items())
            if fnmatch.fnmatchcase(hid, pattern)
        ]
        return web.json_response(
            {"link": _link(f"{TOPICS}/{topic}/handlers"), "topic": topic, "handlers": chosen}
        )

    def _put(topic: str, body: dict[str, Any], handler_id: str | None) -> web.Response:
        if handler_id is not None:
            body = {**body, "id": body.get("id", handler_id)}
            if body["id"] != handler_id:
                return _error(400, f"id: the body says {body['id']!r}, the path {handler_id!r}")
        if isinstance(body.get("options"), dict):
            body["options"] = with_default_cluster(str(body.get("kind")), body["options"], clusters)
        try:
            handler = validate_handler(body, source="handler", topic=topic, known_clusters=clusters)
            bound = topics.put_handler(handler)
        except HandlerSpecError as exc:
            return _error(400, str(exc))
        except TickError as exc:
            return _error(400, f"match: {exc}", line=exc.line, column=exc.column)
        return web.json_response(handler_json(topic, bound))

    async def create_handler(request: web.Request) -> web.Response:
        topic = request.match_info["topic"]
        body = await _json_body(request)
        if topics.get_handler(topic, str(body.get("id"))) is not None:
            return _error(409, f"id: handler {body['id']!r} exists on topic {topic!r}; use PUT")
        return _put(topic, body, None)

    async def replace_handler(request: web.Request) -> web.Response:
        topic, handler_id = request.match_info["topic"], request.match_info["id"]
        if topics.get_handler(topic, handler_id) is None:
            return _error(404, f"unknown handler {handler_id!r} on topic {topic!r}")
        return _put(topic, await _json_body(request), handler_id)

    async def patch_handler(request: web.Request) -> web.Response:
        """Kapacitor's PATCH: an RFC 6902 JSON Patch over the handler's id, kind, match and
        options; the result is validated like a PUT body."""
        topic, handler_id = request.match_info["topic"], request.match_info["id"]
        bound = topics.get_handler(topic, handler_id)
        if bound is None:
            return _error(404, f"unknown handler {handler_id!r} on topic {topic!r}")
        operations = await _json_body(request, list)
        current = {k: v for k, v in handler_json(topic, bound).items() if k != "link"}
        try:
            patched = jsonpatch.apply_patch(current, operations)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            return _error(400, f"patch: {exc}")
        if not isinstance(patched, dict):
            return _error(400, "patch: the result must stay a JSON object")
        return _put(topic, patched, handler_id)

    async def get_handler(request: web.Request) -> web.Response:
        topic, handler_id = request.match_info["topic"], request.match_info["id"]
        bound = topics.get_handler(topic, handler_id)
        if bound is None:
            return _error(404, f"unknown handler {handler_id!r} on topic {topic!r}")
        return web.json_response(handler_json(topic, bound))

    async def delete_handler(request: web.Request) -> web.Response:
        topic, handler_id = request.match_info["topic"], request.match_info["id"]
        if not topics.delete_handler(topic, handler_id):
            return _error(404, f"unknown handler {handler_id!r} on topic {topic!r}")
        return web.Response(status=204)

    handlers = TOPICS + "/{topic}/handlers"
    return [
        web.get(handlers, list_handlers),
        web.post(handlers, create_handler),
        web.get(handlers + "/{id}", get_handler),
        web.put(handlers + "/{id}", replace_handler),
        web.patch(handlers + "/{id}", patch_handler),
        web.delete(handlers + "/{id}", delete_handler),
    ]


def silence_routes(silences: Silences, clock: Any) -> list[web.RouteDef]:
    def as_json(s: Silence) -> dict[str, Any]:
        return s.to_api(clock())

    async def list_silences(_request: web.Request) -> web.Response:
        return web.json_response(
            {"link": _link(SILENCES), "silences": [as_json(s) for s in silences.list()]}
        )

    async def create(request: web.Request) -> web.Response:
        body = await _json_body(request)
        match, duration = body.get("match"), body.get("duration")
        if not isinstance(match, str) or not match.strip():
            return _error(400, "match: required, a match expression such as level() >= WARNING")
        if not isinstance(duration, str):
            return _error(400, 'duration: required, e.g. "2h"')
        try:
            ns = round(parse_duration(duration).total_seconds() * 1e9)
        except ValueError as exc:
            return _error(400, f"duration: {exc}")
        try:
            silence = silences.add(match, ns, str(body.get("comment", "")))
        except TickError as exc:
            return _error(400, f"match: {exc}", line=exc.line, column=exc.column)
        except ValueError as exc:
            return _error(400, f"duration: {exc}")
        return web.json_response(as_json(silence))

    async def expire(request: web.Request) -> web.Response:
        try:
            silence = silences.expire(request.match_info["id"])
        except KeyError:
            return _error(404, f"unknown silence {request.match_info['id']!r}")
        return web.json_response(as_json(silence))

    return [
        web.get(SILENCES, list_silences),
        web.post(SILENCES, create),
        web.delete(SILENCES + "/{id}", expire),
    ]


def service_test_routes(factory: HandlerFactory, clusters: Collection[str]) -> list[web.RouteDef]:
    def defaults() -> dict[str, str]:
        return {
            "cluster": next(iter(sorted(clusters)), ""),
            "topic": "test",
            "key": "key",
            "message": "test kafka message",
        }

    def kafka_json() -> dict[str, Any]:
        return {"link": _link(f"{SERVICE_TESTS}/kafka"), "name": "kafka", "options": defaults()}

    async def list_tests(_request: web.Request) -> web.Response:
        return web.json_response({"link": _link(SERVICE_TESTS), "services": [kafka_json()]})

    async def get_kafka(_request: web.Request) -> web.Response:
        return web.json_response(kafka_json())

    async def test_kafka(request: web.Request) -> web.Response:
        body = await _json_body(request)
        options = defaults()
        unknown = set(body) - set(options)
        if unknown:
            return _error(400, f"unknown option(s): {', '.join(sorted(unknown))}")
        for key, value in body.items():
            if not isinstance(value, str):
                return _error(400, f"{key}: must be a string (got {value!r})")
            options[key] = value
        if options["cluster"] not in clusters:
            listed = ", ".join(sorted(clusters)) or "none configured"
            return _error(400, f"cluster: unknown cluster {options['cluster']!r} (known: {listed})")
        if not options["topic"]:
            return _error(400, "topic: must not be empty")
        error = await factory.send_test(
            options["cluster"], options["topic"], options["key"], options["message"], TEST_TIMEOUT_S
        )
        return web.json_response({"success": error is None, "message": error or ""})

    return [
        web.get(SERVICE_TESTS, list_tests),
        web.get(SERVICE_TESTS + "/kafka", get_kafka),
        web.post(SERVICE_TESTS + "/kafka", test_kafka),
    ]


def ping_routes() -> list[web.RouteDef]:
    async def ping(_request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"X-Kapacitor-Version": f"kafkaops-{__version__}"})

    return [web.get(f"{BASE}/ping", ping, allow_head=True)]
