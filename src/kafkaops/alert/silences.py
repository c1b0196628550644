"""Silences: "stop telling me about this for two hours", which Kapacitor never had.

A silence is a topic-handler `match` expression (the same language: tags by `"name"`,
`level()`, `changed()`, `name()`, `taskName()`, `alertDuration()`) with an end time. While it
is active, matching events are still collected (topic state, `previousLevel` and durations stay
right, so the first event after the silence is correct) but no handler receives them; each one
is counted. Silences are kept in the data directory and expire by themselves or on request;
expired ones stay listed for a day so "what was silenced last night" has an answer.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafkaops.alert.expr import CompiledExpr, EvalError, MatchScope
from kafkaops.alert.gotemplate import Time
from kafkaops.alert.tickscript import compile_match
from kafkaops.server.store import DocumentStore

log = logging.getLogger("kafkaops.alert.silences")

KIND = "silence"
KEEP_EXPIRED_NS = 24 * 3600 * 1_000_000_000


@dataclass
class Silence:
    id: str
    match: str
    starts_ns: int
    ends_ns: int
    comment: str
    compiled: CompiledExpr

    def active(self, now_ns: int) -> bool:
        return self.starts_ns <= now_ns < self.ends_ns

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "match": self.match,
            "starts": self.starts_ns,
            "ends": self.ends_ns,
            "comment": self.comment,
        }

    def to_api(self, now_ns: int) -> dict[str, Any]:
        return {
            "link": {"rel": "self", "href": f"/kapacitor/v1/alerts/silences/{self.id}"},
            "id": self.id,
            "match": self.match,
            "starts-at": Time(self.starts_ns).rfc3339nano(),
            "ends-at": Time(self.ends_ns).rfc3339nano(),
            "comment": self.comment,
            "state": "active" if self.active(now_ns) else "expired",
        }


class Silences:
    """The silences of one daemon, persisted in the alert store."""

    def __init__(self, store: DocumentStore, clock: Callable[[], int] = time.time_ns) -> None:
        self._store = store
        self._clock = clock
        self._silences: dict[str, Silence] = {}
        for name, body in store.list(KIND).items():
            try:
                self._silences[name] = _load(body)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("ignoring unreadable silence", extra={"id": name, "error": str(exc)})

    def add(self, match: str, duration_ns: int, comment: str = "") -> Silence:
        """Raises TickError (line/column) for a bad expression, ValueError for a bad duration."""
        if duration_ns <= 0:
            raise ValueError(f"duration must be positive, got {duration_ns}ns")
        compiled = compile_match(match)
        now = self._clock()
        silence = Silence(uuid.uuid4().hex[:12], match, now, now + duration_ns, comment, compiled)
        self._store.put(KIND, silence.id, silence.to_dict())
        self._silences[silence.id] = silence
        return silence

    def expire(self, silence_id: str) -> Silence:
        """End a silence now; KeyError if there is no such silence."""
        silence = self._silences[silence_id]
        silence.ends_ns = min(silence.ends_ns, self._clock())
        self._store.put(KIND, silence.id, silence.to_dict())
        return silence

    def list(self) -> list[Silence]:
        """Active silences and those expired within a day, newest first."""
        now = self._clock()
        for old in [s for s in self._silences.values() if s.ends_ns < now - KEEP_EXPIRED_NS]:
            del self._silences[old.id]
            self._store.delete(KIND, old.id)
        return sorted(self._silences.values(), key=lambda s: -s.starts_ns)

    def matching(self, scope: MatchScope) -> Silence | None:
        """The first active silence whose expression is true for the event, if any. An
        expression that cannot be evaluated (a tag the event lacks) does not match."""
        if not self._silences:
            return None
        now = self._clock()
        for silence in self._silences.values():
            if silence.active(now):
                result = silence.compiled.evaluate_bool(scope)
                if result is True:
                    return silence
                if isinstance(result, EvalError):
                    continue
        return None


def _load(body: dict[str, Any]) -> Silence:
    return Silence(
        id=str(body["id"]),
        match=str(body["match"]),
        starts_ns=int(body["starts"]),
        ends_ns=int(body["ends"]),
        comment=str(body.get("comment", "")),
        compiled=compile_match(str(body["match"])),
    )
