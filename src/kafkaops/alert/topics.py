"""Alert topics: the last event per alert ID, and the handlers subscribed to each topic.

As in Kapacitor, every event is collected into its task's anonymous topic
(`main:{task}:alert2`, which carries the TICKscript handlers) and into the `.topic()` it names,
if any. Collecting gives the event its `previousLevel` for that topic; then active silences are
checked and the topic's handlers whose `match` accepts the event receive it. Topic state and
handler specs live in the alert store, so previous levels and handlers survive restarts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from kafkaops.alert.event import AlertEvent
from kafkaops.alert.expr import CompiledExpr, EvalError, MatchScope
from kafkaops.alert.handlers import HandlerFactory, RateLimitedLog, Sink
from kafkaops.alert.handlerspec import TopicHandler
from kafkaops.alert.silences import Silences
from kafkaops.alert.state import EventState, Level, TopicState
from kafkaops.alert.tickscript import compile_match
from kafkaops.server.store import DocumentStore

log = logging.getLogger("kafkaops.alert.topics")

TOPIC_KIND = "topic"
HANDLER_KIND = "handler"


@dataclass
class BoundHandler:
    """A topic handler with its compiled `match` and the running handler behind it."""

    handler: TopicHandler
    match: CompiledExpr | None
    sink: Sink


class Topics:
    def __init__(
        self,
        store: DocumentStore,
        factory: HandlerFactory,
        silences: Silences,
        registry: CollectorRegistry | None,
    ) -> None:
        self._store = store
        self._factory = factory
        self.silences = silences
        self.states: dict[str, TopicState] = {}
        self.handlers: dict[str, dict[str, BoundHandler]] = {}
        self.anonymous: dict[str, list[Sink]] = {}
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()
        self._log = RateLimitedLog(log)
        self._silenced = Counter(
            "kafkaops_alert_events_silenced",
            "Events collected but not handed to handlers because a silence matched.",
            ["topic"],
            registry=registry,
        )
        self._match_errors = Counter(
            "kafkaops_alert_match_errors",
            "Topic handler match expressions that could not be evaluated (handler skipped).",
            ["topic", "handler"],
            registry=registry,
        )
        for name, body in store.list(TOPIC_KIND).items():
            try:
                self.states[name] = TopicState.from_dict(body)
            except ValueError as exc:
                log.error(
                    "ignoring unreadable topic state", extra={"topic": name, "error": str(exc)}
                )

    # events -----------------------------------------------------------------------------------

    def event_state(self, topic: str, alert_id: str) -> EventState | None:
        state = self.states.get(topic)
        return state.get(alert_id) if state is not None else None

    def publish(self, topic: str, event: AlertEvent) -> AlertEvent:
        """Collect `event` into `topic` and hand it to the topic's handlers; returns the event
        with this topic's previousLevel."""
        state = self.states.get(topic)
        if state is None:
            state = self.states[topic] = TopicState(topic)
            self._deleted.discard(topic)
        event = event.with_previous_level(state.collect(event.state()))
        self._dirty.add(topic)
        sinks = self.anonymous.get(topic, ())
        bound = self.handlers.get(topic)
        if not sinks and not bound:
            return event
        scope = MatchScope(
            tags=event.tags,
            level=int(event.level),
            previous_level=int(event.previous_level),
            name=event.name,
            task_name=event.task_name,
            duration=event.duration_ns,
        )
        silence = self.silences.matching(scope)
        if silence is not None:
            self._silenced.labels(topic).inc()
            log.info(
                "event silenced",
                extra={"topic": topic, "alert_id": event.id, "silence": silence.id},
            )
            return event
        for sink in sinks:
            sink.submit(event)
        if bound:
            for handler_id, h in bound.items():
                if h.match is None or self._matches(topic, handler_id, h.match, scope):
                    h.sink.submit(event)
        return event

    def _matches(self, topic: str, handler_id: str, match: CompiledExpr, scope: MatchScope) -> bool:
        result = match.evaluate_bool(scope)
        if isinstance(result, EvalError):
            self._match_errors.labels(topic, handler_id).inc()
            self._log.log(
                f"match:{topic}:{handler_id}",
                "topic handler match failed; handler skipped",
                topic=topic,
                handler=handler_id,
                error=result.message,
            )
            return False
        return result

    def events(self, topic: str, min_level: Level = Level.OK) -> list[EventState]:
        state = self.states.get(topic)
        return state.events(min_level) if state is not None else []

    def delete_topic(self, topic: str) -> bool:
        """Forget the topic's events (Kapacitor's DELETE /alerts/topics/{t}); its handlers stay.
        False when there is no such topic."""
        if topic not in self.names():
            return False
        if self.states.pop(topic, None) is not None:
            self._dirty.discard(topic)
            self._deleted.add(topic)
        return True

    def names(self) -> set[str]:
        return set(self.states) | set(self.handlers) | set(self.anonymous)

    # handlers ---------------------------------------------------------------------------------

    def put_handler(self, handler: TopicHandler, persist: bool = True) -> BoundHandler:
        """Add or replace a topic handler (its match must compile: TickError otherwise)."""
        match = compile_match(handler.spec.match) if handler.spec.match.strip() else None
        sink = self._factory.build(f"{handler.topic}:{handler.id}", handler.options)
        bound = BoundHandler(handler, match, sink)
        old = self.handlers.setdefault(handler.topic, {}).get(handler.id)
        self.handlers[handler.topic][handler.id] = bound
        if persist:
            self._store.put(
                HANDLER_KIND, _handler_key(handler.topic, handler.id), handler.spec.to_dict()
            )
        if old is not None:
            close_later(old.sink)
        return bound

    def get_handler(self, topic: str, handler_id: str) -> BoundHandler | None:
        return self.handlers.get(topic, {}).get(handler_id)

    def delete_handler(self, topic: str, handler_id: str) -> bool:
        bound = self.handlers.get(topic, {}).pop(handler_id, None)
        if bound is None:
            return False
        if not self.handlers[topic]:
            del self.handlers[topic]
        self._store.delete(HANDLER_KIND, _handler_key(topic, handler_id))
        close_later(bound.sink)
        return True

    def stored_handlers(self) -> dict[str, dict[str, object]]:
        return self._store.list(HANDLER_KIND)

    def set_anonymous(self, topic: str, sinks: list[Sink]) -> None:
        """The TICKscript handlers of a task's anonymous topic."""
        self.anonymous[topic] = sinks

    def drop_anonymous(self, topic: str, forget_events: bool) -> list[Sink]:
        """Detach a stopped task's handlers; a deleted task's topic also loses its events."""
        sinks = self.anonymous.pop(topic, [])
        if forget_events and self.states.pop(topic, None) is not None:
            self._dirty.discard(topic)
            self._deleted.add(topic)
        return sinks

    def all_sinks(self) -> Iterable[Sink]:
        for sinks in self.anonymous.values():
            yield from sinks
        for bound in self.handlers.values():
            for h in bound.values():
                yield h.sink

    # persistence ------------------------------------------------------------------------------

    def take_dirty(self) -> tuple[dict[str, object], set[str]]:
        """Topic states changed since the last call (as JSON-ready dicts), and deleted topics."""
        changed: dict[str, object] = {
            name: self.states[name].to_dict() for name in self._dirty if name in self.states
        }
        deleted = set(self._deleted)
        self._dirty.clear()
        self._deleted.clear()
        return changed, deleted


def _handler_key(topic: str, handler_id: str) -> str:
    # Neither a topic nor a handler ID may contain "/".
    return f"{topic}/{handler_id}"


_closing: set[object] = set()


def close_later(sink: Sink, timeout: float = 30.0) -> None:
    """A replaced or deleted handler finishes what it has queued in the background."""
    task = asyncio.get_running_loop().create_task(sink.close(timeout))
    _closing.add(task)
    task.add_done_callback(_closing.discard)
