"""Alert tasks: definitions kept in the data directory, and the runners of enabled ones.

A task is checked completely when it is defined (TICKscript syntax, templates, handler options,
Kafka clusters), so a mistake is reported to whoever typed it, with line and column, and never
surfaces later as an alert that did not fire. Enabled tasks run on every point in the daemon's
event loop, in arrival order, one point at a time per task, as Kapacitor's stream tasks do.

Alert state (each group's level history) is saved in the background every
`state-flush-interval` and at shutdown. A group with no saved state is seeded from the last
event its alert ID left in the topic store, as Kapacitor's restoreEventState does, so a restart
or a redefinition does not resend a CRITICAL that was already sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter

from kafkaops.alert.event import (
    DEFAULT_ID_TEMPLATE,
    AlertTemplates,
    group_id,
    group_label,
)
from kafkaops.alert.expr import EvalError
from kafkaops.alert.gotemplate import TemplateError
from kafkaops.alert.handlers import HandlerFactory, RateLimitedLog, Sink
from kafkaops.alert.handlerspec import HandlerOptions, HandlerSpecError, validate_options
from kafkaops.alert.lineprotocol import Point
from kafkaops.alert.state import AlertOptions, AlertStateMachine, Level, LevelRules
from kafkaops.alert.tickscript import TaskSpec, TickError, parse_task
from kafkaops.alert.topics import Topics, close_later
from kafkaops.server.store import DocumentStore

log = logging.getLogger("kafkaops.alert.tasks")

TASK_KIND = "task"
STATE_KIND = "task-state"
ALERT_NODE = "alert2"
"""Kapacitor names nodes by kind and position: stream0 | from1 | alert2."""
Status = Literal["enabled", "disabled"]


class TaskError(ValueError):
    """A task that cannot be defined or changed; `line`/`column` locate script problems."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class NoSuchTask(KeyError):
    def __str__(self) -> str:
        return f"no task {self.args[0]!r}"


def valid_task_id(task_id: str) -> bool:
    """Kapacitor's `^[-\\._\\p{L}0-9]+$`."""
    return bool(task_id) and all(c.isalpha() or c in "0123456789-._" for c in task_id)


def anonymous_topic(task_id: str) -> str:
    """The topic a task's TICKscript handlers hang on, named as Kapacitor names it."""
    return f"main:{task_id}:{ALERT_NODE}"


@dataclass
class TaskRecord:
    """A task as stored: the script is the source of truth, everything else derives from it."""

    id: str
    script: str
    explicit_dbrps: list[tuple[str, str]]
    """Given with the definition (`-dbrp`, the API's `dbrps`), as opposed to the script's."""
    dbrps: list[tuple[str, str]]
    """The ones in effect: the explicit ones, else the script's `dbrp` statements."""
    status: Status = "disabled"
    created_ns: int = 0
    modified_ns: int = 0
    last_enabled_ns: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "script": self.script,
            "explicit-dbrps": [{"db": db, "rp": rp} for db, rp in self.explicit_dbrps],
            "dbrps": [{"db": db, "rp": rp} for db, rp in self.dbrps],
            "status": self.status,
            "created": self.created_ns,
            "modified": self.modified_ns,
            "last-enabled": self.last_enabled_ns,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskRecord:
        return cls(
            id=str(data["id"]),
            script=str(data["script"]),
            explicit_dbrps=_dbrps(data.get("explicit-dbrps", [])),
            dbrps=_dbrps(data.get("dbrps", [])),
            status="enabled" if data.get("status") == "enabled" else "disabled",
            created_ns=int(data.get("created", 0)),
            modified_ns=int(data.get("modified", 0)),
            last_enabled_ns=int(data.get("last-enabled", 0)),
        )


def _dbrps(items: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(str(d["db"]), str(d["rp"])) for d in items]


@dataclass
class CompiledTask:
    spec: TaskSpec
    templates: AlertTemplates
    handlers: list[HandlerOptions]
    dbrps: list[tuple[str, str]]


def compile_task(
    script: str, *, clusters: Collection[str], dbrps: Iterable[tuple[str, str]] = ()
) -> CompiledTask:
    """Everything that can be wrong with a task, found now: TickError for the script (line and
    column), TaskError for templates, handler options and clusters (with the handler's line).

    `.kafka()` without `.cluster()` uses the only configured cluster when there is exactly one
    (the documentation's examples omit it); with several it is an error naming them.
    """
    spec = parse_task(script)
    explicit = list(dbrps)
    if explicit and spec.dbrps:
        raise TaskError(
            "dbrps: give them in the script (dbrp statements) or in the request, not both"
        )
    alert = spec.alert
    try:
        templates = AlertTemplates.parse(alert.id, alert.message, alert.details)
    except TemplateError as exc:
        raise TaskError(f"invalid template: {exc}") from None
    handlers: list[HandlerOptions] = []
    for h in alert.handlers:
        options = with_default_cluster(h.kind, h.options, clusters)
        try:
            handlers.append(
                validate_options(h.kind, options, source=f".{h.kind}()", known_clusters=clusters)
            )
        except HandlerSpecError as exc:
            raise TaskError(f"line {h.line} char {h.column}: {exc}", h.line, h.column) from None
    return CompiledTask(spec, templates, handlers, explicit or list(spec.dbrps))


def with_default_cluster(
    kind: str, options: dict[str, Any], clusters: Collection[str]
) -> dict[str, Any]:
    """Kafka options naming no cluster get the only configured one. Kapacitor has no default
    cluster, yet its documented examples (TICKscript and handler file) leave `cluster` out;
    with one cluster the intent is plain, with several it stays an error naming them."""
    out = dict(options)
    if kind != "kafka" or len(clusters) != 1:
        return out
    keys = [k for k in out if str(k).lower() == "cluster"]
    if not keys or not out[keys[0]]:
        for k in keys:
            del out[k]
        out["cluster"] = next(iter(clusters))
    return out


def _ns(value: timedelta | None) -> int:
    return 0 if value is None else value // timedelta(microseconds=1) * 1000


@dataclass
class TaskStats:
    points: int = 0
    alerts: dict[str, int] = field(default_factory=lambda: {lvl.name: 0 for lvl in Level})
    errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"points": self.points, "alerts": dict(self.alerts), "errors": self.errors}


class TaskMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.points = Counter(
            "kafkaops_alert_task_points",
            "Points an enabled task evaluated (after measurement, dbrp and where).",
            ["task"],
            registry=registry,
        )
        self.alerts = Counter(
            "kafkaops_alert_alerts_triggered",
            "Alert events a task sent, by level (Kapacitor's alerts_triggered, oks/.../crits).",
            ["task", "level"],
            registry=registry,
        )
        self.errors = Counter(
            "kafkaops_alert_task_errors",
            "Expressions or templates of a task that failed on a point (each kind logged).",
            ["task", "what"],
            registry=registry,
        )


class TaskRunner:
    """One enabled task: filters, groups, the state machine and event creation."""

    def __init__(
        self,
        task_id: str,
        compiled: CompiledTask,
        topics: Topics,
        *,
        machine: AlertStateMachine,
        metrics: TaskMetrics,
        errors: RateLimitedLog,
    ) -> None:
        self.id = task_id
        self.spec = compiled.spec
        self.templates = compiled.templates
        self.dbrps = set(compiled.dbrps)
        self.topics = topics
        self.machine = machine
        self.stats = TaskStats()
        self.dirty = False
        self._errors = errors
        self._metrics = metrics
        self._points = metrics.points.labels(task_id)
        self._points_reported = 0
        self._alerts = {lvl: metrics.alerts.labels(task_id, lvl.name) for lvl in Level}
        alert = compiled.spec.alert
        self.out_topics = [anonymous_topic(task_id)] if alert.handlers else []
        if alert.topic:
            self.out_topics.append(alert.topic)
        self._default_id = alert.id == DEFAULT_ID_TEMPLATE
        group_by = compiled.spec.group_by
        self._all_tags = group_by == "*"
        self._dims = [] if group_by == "*" else sorted(group_by)

    def accepts(self, point: Point, db: str, rp: str) -> bool:
        spec = self.spec
        if spec.measurement is not None and point.measurement != spec.measurement:
            return False
        if self.dbrps and (db, rp) not in self.dbrps:
            return False
        if spec.database is not None and db != spec.database:
            return False
        return spec.rp is None or rp == spec.rp

    def process(self, point: Point) -> None:
        """Evaluate one point (already `accepts`-ed); an emitted event goes to the topics."""
        spec = self.spec
        if spec.where is not None:
            passed = spec.where.evaluate_bool(point)
            if passed is not True:
                if isinstance(passed, EvalError):
                    self.error("where", passed.message)
                return
        self.stats.points += 1
        tags = point.tags
        dims = sorted(tags) if self._all_tags else self._dims
        group = group_id(point.measurement, tags, dims, by_measurement=spec.group_by_measurement)
        try:
            if self._default_id:
                alert_id = f"{point.measurement}:{group_label(group)}"
            else:
                alert_id = self.templates.render_id(
                    name=point.measurement, task_name=self.id, group=group, tags=tags
                )
        except TemplateError as exc:
            self.error("id", str(exc))
            return
        machine = self.machine
        if not machine.has_group(group):
            self._restore(group, alert_id)
        decision = machine.process(group, point.time, point, on_error=self._expression_error)
        self.dirty = True
        if not decision.emit:
            return
        try:
            event = self.templates.event(
                alert_id=alert_id,
                name=point.measurement,
                task_name=self.id,
                group=group,
                tags=tags,
                fields=point.fields,
                level=decision.level,
                time_ns=point.time,
                duration_ns=decision.duration_ns,
                recoverable=decision.recoverable,
            )
        except TemplateError as exc:
            self.error("message", str(exc))
            return
        self.stats.alerts[decision.level.name] += 1
        self._alerts[decision.level].inc()
        for topic in self.out_topics:
            self.topics.publish(topic, event)

    def report_points(self) -> None:
        """Move the point count to the metric once per batch: a Prometheus counter increment
        per point would cost more than the rule itself."""
        new = self.stats.points - self._points_reported
        if new:
            self._points.inc(new)
            self._points_reported = self.stats.points

    def _restore(self, group: str, alert_id: str) -> None:
        """Seed a new group from the last event of its ID: the anonymous topic first, as
        Kapacitor prefers it, then the named topic."""
        for topic in self.out_topics:
            state = self.topics.event_state(topic, alert_id)
            if state is not None:
                self.machine.restore_group(group, state.level, state.time_ns)
                return

    def _expression_error(self, level: Level, is_reset: bool, exc: Exception) -> None:
        name = (
            ("infoReset", "warnReset", "critReset")[level - 1]
            if is_reset
            else (("info", "warn", "crit")[level - 1])
        )
        self.error(name, str(exc))

    def error(self, what: str, message: str) -> None:
        """Count and log (at most once a minute per kind) a failure on one point: the point is
        skipped, the task goes on, as Kapacitor does with a failing expression."""
        self.stats.errors += 1
        self._metrics.errors.labels(self.id, what).inc()
        self._errors.log(
            f"{self.id}:{what}",
            "alert task evaluation failed",
            task=self.id,
            part=what,
            error=message,
        )


class TaskManager:
    """Defines, enables, disables and deletes tasks; routes points to the enabled ones."""

    def __init__(
        self,
        store: DocumentStore,
        topics: Topics,
        factory: HandlerFactory,
        *,
        clusters: Collection[str],
        registry: CollectorRegistry | None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._store = store
        self._topics = topics
        self._factory = factory
        self._clusters = clusters
        self._clock = clock
        self._metrics = TaskMetrics(registry)
        self._errors = RateLimitedLog(log)
        self.records: dict[str, TaskRecord] = {}
        self.runners: dict[str, TaskRunner] = {}
        self.failures: dict[str, str] = {}
        """Enabled tasks that could not start (e.g. a cluster removed from the config)."""
        for name, body in store.list(TASK_KIND).items():
            try:
                self.records[name] = TaskRecord.from_dict(body)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("ignoring unreadable task", extra={"task": name, "error": str(exc)})

    def start_enabled(self) -> None:
        for record in self.records.values():
            if record.status == "enabled":
                self._start(record)

    # points -----------------------------------------------------------------------------------

    def process(self, points: Iterable[Point], db: str = "", rp: str = "") -> None:
        runners = list(self.runners.values())
        if not runners:
            return
        for point in points:
            for runner in runners:
                if runner.accepts(point, db, rp):
                    try:
                        runner.process(point)
                    except Exception as exc:
                        # A bug in one task must not stop the points of the others.
                        runner.error("internal", repr(exc))
        for runner in runners:
            runner.report_points()

    # definitions ------------------------------------------------------------------------------

    def define(
        self,
        task_id: str,
        script: str | None,
        *,
        dbrps: list[tuple[str, str]] | None = None,
        status: Status | None = None,
    ) -> TaskRecord:
        """Create or update a task (Kapacitor's POST and PATCH /tasks). A new task is
        disabled unless `status` says otherwise; an enabled task restarts with the new
        script at once. Raises TickError/TaskError before anything changes."""
        if not valid_task_id(task_id):
            raise TaskError(
                f"id: a task ID contains only letters, numbers, '-', '.' and '_' (got {task_id!r})"
            )
        existing = self.records.get(task_id)
        if script is None:
            if existing is None:
                raise TaskError("script: a new task needs a TICKscript")
            script = existing.script
        explicit = dbrps if dbrps is not None else (existing.explicit_dbrps if existing else [])
        compiled = compile_task(script, clusters=self._clusters, dbrps=explicit)
        status = status or (existing.status if existing else "disabled")
        running = task_id in self.runners
        if (
            existing is not None
            and (existing.script, existing.explicit_dbrps, existing.status)
            == (script, explicit, status)
            and running == (status == "enabled")
        ):
            return existing
        now = self._clock()
        record = TaskRecord(
            id=task_id,
            script=script,
            explicit_dbrps=explicit,
            dbrps=compiled.dbrps,
            status=status,
            created_ns=existing.created_ns if existing else now,
            modified_ns=now,
            last_enabled_ns=existing.last_enabled_ns if existing else 0,
        )
        if status == "enabled" and not running:
            record.last_enabled_ns = now
        script_changed = existing is not None and existing.script != script
        self._stop(task_id, keep_state=not script_changed)
        if script_changed:
            # New rules start from the topic store's last events, not from the old history.
            self._store.delete(STATE_KIND, task_id)
        self._store.put(TASK_KIND, task_id, record.to_dict())
        self.records[task_id] = record
        if status == "enabled":
            self._start(record, compiled)
        return record

    def set_status(self, task_id: str, status: Status) -> TaskRecord:
        if task_id not in self.records:
            raise NoSuchTask(task_id)
        return self.define(task_id, None, status=status)

    def delete(self, task_id: str) -> None:
        if task_id not in self.records:
            raise NoSuchTask(task_id)
        self._stop(task_id, keep_state=False)
        self._topics.drop_anonymous(anonymous_topic(task_id), forget_events=True)
        self._store.delete(STATE_KIND, task_id)
        self._store.delete(TASK_KIND, task_id)
        del self.records[task_id]
        self.failures.pop(task_id, None)

    # running ----------------------------------------------------------------------------------

    def _start(self, record: TaskRecord, compiled: CompiledTask | None = None) -> None:
        try:
            compiled = compiled or compile_task(
                record.script, clusters=self._clusters, dbrps=record.explicit_dbrps
            )
        except (TickError, TaskError) as exc:
            self.failures[record.id] = str(exc)
            log.error("enabled task cannot start", extra={"task": record.id, "error": str(exc)})
            return
        alert = compiled.spec.alert
        rules = LevelRules(*(
            e.as_predicate() if e is not None else None
            for e in (*alert.levels[1:], *alert.resets[1:])
        ))  # fmt: skip
        options = AlertOptions(
            history=alert.history,
            flapping=alert.flapping,
            state_changes_only=alert.state_changes_only,
            state_changes_only_max_ns=_ns(alert.state_changes_only_max),
            no_recoveries=alert.no_recoveries,
        )
        machine = AlertStateMachine(rules, options)
        saved = self._store.get(STATE_KIND, record.id)
        if saved is not None:
            try:
                machine = AlertStateMachine.from_dict(rules, options, saved)
            except ValueError as exc:
                log.error("alert state not restored", extra={"task": record.id, "error": str(exc)})
        sinks: list[Sink] = [
            self._factory.build(f"{record.id}:{options_kind(o)}{i}", o)
            for i, o in enumerate(compiled.handlers)
        ]
        runner = TaskRunner(
            record.id,
            compiled,
            self._topics,
            machine=machine,
            metrics=self._metrics,
            errors=self._errors,
        )
        if sinks:
            self._topics.set_anonymous(anonymous_topic(record.id), sinks)
        self.runners[record.id] = runner
        self.failures.pop(record.id, None)

    def _stop(self, task_id: str, keep_state: bool) -> None:
        runner = self.runners.pop(task_id, None)
        self.failures.pop(task_id, None)
        if runner is None:
            return
        if keep_state:
            self._store.put(STATE_KIND, task_id, runner.machine.to_dict())
        for sink in self._topics.drop_anonymous(anonymous_topic(task_id), forget_events=False):
            close_later(sink)

    def take_dirty(self) -> dict[str, Any]:
        """Alert states changed since the last call, as JSON-ready dicts by task."""
        out = {}
        for task_id, runner in self.runners.items():
            if runner.dirty:
                runner.dirty = False
                out[task_id] = runner.machine.to_dict()
        return out

    def executing(self, task_id: str) -> bool:
        return task_id in self.runners


def options_kind(options: HandlerOptions) -> str:
    return type(options).__name__.removesuffix("HandlerOptions").lower()
