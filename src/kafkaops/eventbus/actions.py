"""Trigger actions: HTTP, Kafka, log and command, with retries, rate limits and dead letters.

An `ActionRunner` belongs to one action-stage thread and runs its actions in record order. A
firing renders into a request (`Trigger.render`), which then runs up to `retryStrategy.steps`
times, waiting the strategy's delays in between; when every attempt fails the trigger's
`dlqTrigger` runs with the same events. A request that cannot even be rendered (a parameter
that resolves to nothing usable) fails at once: rendering again would fail the same way.

Kafka actions of a batch are produced together and awaited once, because waiting for each
record's acknowledgement in turn would cap a sensor at one firing per round trip; the idempotent
producer keeps their order per partition. Other actions run one after the other.

Waits are interruptible: when the process is stopping, a retry wait ends with `Interrupted`, so
an at-least-once action that has not succeeded is not committed and runs again after restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from confluent_kafka import KafkaError, Producer

from kafkaops.eventbus.bus import PRODUCER_SETTINGS, BusConnections
from kafkaops.eventbus.cloudevents import CloudEvent
from kafkaops.eventbus.paths import ParameterError
from kafkaops.eventbus.spec import (
    ActionRequest,
    CommandRequest,
    HttpRequest,
    KafkaRequest,
    LogRequest,
    RateLimit,
    Trigger,
)

__all__ = ["ActionRunner", "Interrupted", "Outcome"]

log = logging.getLogger("kafkaops.eventbus.actions")

_UNIT_SECONDS = {"Second": 1.0, "Minute": 60.0, "Hour": 3600.0}


class Interrupted(Exception):
    """The process is stopping while an action waits to be retried."""


@dataclass
class Outcome:
    """How one firing's action went."""

    trigger: str
    ok: bool
    attempts: int = 0
    error: str = ""
    dead_lettered: bool = False


@dataclass
class _Delivery:
    """The delivery report of one Kafka action record."""

    delivered: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def error(self) -> str:
        if self.delivered:
            return ""
        return self.errors[0] if self.errors else "not delivered"


@dataclass
class _Pending:
    """A Kafka action waiting for its delivery report."""

    trigger: Trigger
    events: Mapping[str, CloudEvent]
    request: KafkaRequest
    outcome: Outcome
    delivery: _Delivery


class ActionRunner:
    """Runs the actions of one action stage, from that stage's thread."""

    def __init__(
        self,
        connections: BusConnections,
        *,
        stop: threading.Event,
        timeout: float = 30.0,
        rand: Callable[[], float] = random.random,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.connections = connections
        self.stop = stop
        self.timeout = timeout
        self.rand = rand
        self.on_outcome = on_outcome
        self._producers: dict[tuple[str, int | None, bool], Producer] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._last_log: dict[str, float] = {}
        self._next_slot: dict[str, float] = {}

    # ------------------------------------------------------------------ public

    def run_many(
        self, firings: Sequence[tuple[Trigger, Mapping[str, CloudEvent]]]
    ) -> list[Outcome]:
        """Run firings in order; Kafka actions are produced together and awaited once."""
        outcomes: list[Outcome] = []
        pending: list[_Pending] = []
        for trigger, events in firings:
            outcome = Outcome(trigger.name, ok=False)
            outcomes.append(outcome)
            self._pace(trigger.name, trigger.rate_limit)
            try:
                request = trigger.render(events)
            except (ParameterError, ValueError) as exc:
                self._failed(trigger, events, outcome, f"render: {exc}")
                continue
            if isinstance(request, KafkaRequest):
                outcome.attempts = 1
                pending.append(_Pending(trigger, events, request, outcome, self._send(request)))
            else:
                self._attempts(trigger, events, request, outcome)
        if pending:
            self._await_kafka(pending)
        return outcomes

    def run(self, trigger: Trigger, events: Mapping[str, CloudEvent]) -> Outcome:
        return self.run_many([(trigger, events)])[0]

    def close(self) -> None:
        for producer in self._producers.values():
            producer.flush(self.timeout)
        self._producers.clear()
        if self._loop is not None:
            if self._session is not None:
                self._loop.run_until_complete(self._session.close())
            self._loop.close()
            self._loop = None
            self._session = None

    # ------------------------------------------------------------------ retries

    def _attempts(
        self,
        trigger: Trigger,
        events: Mapping[str, CloudEvent],
        request: ActionRequest,
        outcome: Outcome,
    ) -> None:
        delays = trigger.retry.delays(self.rand)
        for attempt in range(trigger.retry.attempts):
            if attempt:
                self._wait(delays[attempt - 1].total_seconds())
            outcome.attempts = attempt + 1
            error = self._execute(request)
            if not error:
                self._succeeded(outcome)
                return
            outcome.error = error
            log.warning(
                "trigger action failed",
                extra={"trigger": trigger.name, "attempt": attempt + 1, "error": error},
            )
        self._failed(trigger, events, outcome, outcome.error)

    def _await_kafka(self, pending: list[_Pending]) -> None:
        self._flush()
        for item in pending:
            if item.delivery.delivered:
                self._succeeded(item.outcome)
                continue
            error = item.delivery.error
            log.warning(
                "trigger action failed",
                extra={"trigger": item.trigger.name, "attempt": 1, "error": error},
            )
            retry = item.trigger.retry
            if retry.attempts <= 1:
                self._failed(item.trigger, item.events, item.outcome, error)
                continue
            # Later attempts one by one, with the strategy's delays (the first one is spent).
            delays = retry.delays(self.rand)
            for attempt in range(1, retry.attempts):
                self._wait(delays[attempt - 1].total_seconds())
                item.outcome.attempts = attempt + 1
                error = self._execute(item.request)
                if not error:
                    self._succeeded(item.outcome)
                    break
                log.warning(
                    "trigger action failed",
                    extra={"trigger": item.trigger.name, "attempt": attempt + 1, "error": error},
                )
            else:
                self._failed(item.trigger, item.events, item.outcome, error)

    def _succeeded(self, outcome: Outcome) -> None:
        outcome.ok = True
        outcome.error = ""
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def _failed(
        self, trigger: Trigger, events: Mapping[str, CloudEvent], outcome: Outcome, error: str
    ) -> None:
        outcome.ok = False
        outcome.error = error
        log.error(
            "trigger action gave up",
            extra={"trigger": trigger.name, "attempts": outcome.attempts, "error": error},
        )
        if trigger.dlq_trigger is not None:
            dead = self.run(trigger.dlq_trigger, events)
            outcome.dead_lettered = dead.ok
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def _wait(self, seconds: float) -> None:
        if seconds > 0 and self.stop.wait(seconds):
            raise Interrupted
        if self.stop.is_set():
            raise Interrupted

    def _pace(self, trigger: str, limit: RateLimit | None) -> None:
        """`rateLimit`: at most `requestsPerUnit` actions of this trigger per unit, evenly."""
        if limit is None:
            return
        gap = _UNIT_SECONDS[limit.unit] / limit.requests_per_unit
        now = time.monotonic()
        slot = max(now, self._next_slot.get(trigger, now))
        self._next_slot[trigger] = slot + gap
        self._wait(slot - now)

    # ------------------------------------------------------------------ one attempt

    def _execute(self, request: ActionRequest) -> str:
        """Run one attempt; returns "" on success, else what went wrong."""
        try:
            if isinstance(request, KafkaRequest):
                delivery = self._send(request)
                self._flush()
                return delivery.error
            if isinstance(request, HttpRequest):
                return self._http(request)
            if isinstance(request, CommandRequest):
                return self._command(request)
            return self._log(request)
        except Exception as exc:  # an action's failure must not kill the stage
            return f"{type(exc).__name__}: {exc}"

    def _producer(self, request: KafkaRequest) -> Producer:
        clients = self.connections.for_ref(request)
        key = (clients.id, request.required_acks, request.compress)
        producer = self._producers.get(key)
        if producer is None:
            overrides = dict(PRODUCER_SETTINGS)
            if request.required_acks is not None and request.required_acks != -1:
                # Argo's requiredAcks: 0 none, 1 leader; idempotence needs all.
                overrides["acks"] = request.required_acks
                overrides["enable.idempotence"] = False
            if request.compress:
                overrides["compression.type"] = "snappy"
            producer = clients.producer(**overrides)
            self._producers[key] = producer
        return producer

    def _send(self, req: KafkaRequest) -> _Delivery:
        delivery = _Delivery()

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            if err is None:
                delivery.delivered = True
            else:
                delivery.errors.append(err.str())

        producer = self._producer(req)
        kwargs: dict[str, Any] = {"on_delivery": delivered}
        if req.headers:
            kwargs["headers"] = list(req.headers)
        while True:
            try:
                producer.produce(req.topic, req.value, req.key, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
            except Exception as exc:  # unknown topic names etc. fail this action only
                delivery.errors.append(f"{type(exc).__name__}: {exc}")
                break
        producer.poll(0)
        return delivery

    def _flush(self) -> None:
        for producer in self._producers.values():
            producer.flush(self.timeout)

    def _http(self, request: HttpRequest) -> str:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        status = self._loop.run_until_complete(self._http_call(request))
        if request.succeeded(status):
            return ""
        return f"HTTP {request.method} {request.url}: status {status}"

    async def _http_call(self, request: HttpRequest) -> int:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = dict(request.headers)
        if request.body and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=request.timeout.total_seconds())
        async with self._session.request(
            request.method, request.url, data=request.body, headers=headers, timeout=timeout
        ) as response:
            await response.read()
            return response.status

    def _command(self, request: CommandRequest) -> str:
        timeout = request.timeout.total_seconds() if request.timeout else None
        try:
            done = subprocess.run(
                list(request.argv),
                input=request.stdin,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"command {request.argv[0]!r} timed out after {timeout}s"
        if done.returncode == 0:
            return ""
        tail = done.stderr.decode(errors="replace").strip()[-200:]
        return f"command {request.argv[0]!r} exited with {done.returncode}" + (
            f": {tail}" if tail else ""
        )

    def _log(self, request: LogRequest) -> str:
        interval = request.interval.total_seconds()
        now = time.monotonic()
        last = self._last_log.get(request.trigger)
        if interval and last is not None and now - last < interval:
            return ""
        self._last_log[request.trigger] = now
        events = {dep: event.to_dict() for dep, event in request.events}
        log.info(
            "trigger fired",
            extra={"trigger": request.trigger, "events": json.dumps(events, default=str)},
        )
        return ""
