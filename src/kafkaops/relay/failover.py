"""Which source cluster the relay reads: kaf-relay's failover, compared per partition.

kaf-relay weighs each source by the *sum* of its end offsets and switches only to a source whose
sum is strictly greater, so a source missing records on one partition can hide behind extra
records on another, and on an idle topic a dead source is never replaced (nobody gets ahead).
Here, after every health check (`evaluate`) or reported failure (`failed`):

- A source *lags* when some partition's end offset is more than `offset_lag_threshold` behind
  the most advanced healthy source on that partition (or behind where the relay already is, when
  the I/O layer passes its position and offsets are comparable). A source missing a partition
  that another one has lags without limit.
- The current source stays while it is healthy and does not lag: no flapping.
- It is replaced when it fails or lags. The replacement is the first source in preference order
  that is healthy and does not lag; a source exactly as far as the others qualifies. A lagging
  source is never chosen while a non-lagging one exists; only when every healthy source lags on
  some partition does the least lagging one get picked, rather than stopping the relay.
- The replaced source goes to the back of the preference order, so when it recovers it is used
  again only once the rules above pick it.
- Consecutive failures (the current source failing, or no usable source at a check) are
  attempts. They back off between `backoff_min` and `backoff_max` with jitter, and past
  `max_retries` (-1: never) the decision is terminal. `working()` resets the count.

Decisions carry a delay instead of sleeping, and the jitter comes from an injected
`random.Random`, so tests control both.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from kafkaops.config.durations import format_duration
from kafkaops.relay.topicmap import SourceKey

DISABLED_BACKOFF = timedelta(seconds=1)
"""The wait between attempts when backoff is off: kaf-relay's floor against a busy loop."""


def backoff_delay(
    attempt: int,
    minimum: timedelta,
    maximum: timedelta,
    rng: random.Random,
    *,
    enabled: bool = True,
) -> timedelta:
    """kaf-relay's (franz-go's) retry backoff: min * 2^(attempt-1), jittered by
    a factor in [0.8, 1.2), capped.

    Attempt 0 or less waits `minimum`; past the tenth attempt it waits `maximum` without jitter.
    """
    if not enabled:
        return DISABLED_BACKOFF
    if attempt <= 0:
        return minimum
    if attempt > 10:
        return maximum
    delay = minimum * (2 ** (attempt - 1)) * (0.8 + 0.4 * rng.random())
    return min(delay, maximum)


@dataclass(frozen=True)
class SourceHealth:
    """One health check of one source: its end offsets, or why they could not be read."""

    name: str
    end_offsets: Mapping[SourceKey, int] | None = None
    error: str | None = None

    @property
    def healthy(self) -> bool:
        return self.end_offsets is not None and self.error is None


class Action(StrEnum):
    KEEP = "keep"
    SWITCH = "switch"
    WAIT = "wait"
    GIVE_UP = "give-up"


@dataclass(frozen=True)
class Decision:
    action: Action
    source: str | None
    """The source to read after this decision (None: none usable)."""
    previous: str | None
    reason: str
    delay: timedelta = timedelta(0)
    """How long to wait before connecting (SWITCH) or checking again (WAIT)."""
    attempt: int = 0
    ahead: tuple[str, ...] = ()
    """Sources ahead of the replaced one by more than the threshold (the lag metric's label)."""

    @property
    def terminal(self) -> bool:
        return self.action is Action.GIVE_UP

    def __str__(self) -> str:
        """For logs: "switch to b in 2s: a failed: timeout; switching to b"."""
        when = f" in {format_duration(self.delay)}" if self.delay else ""
        target = f" to {self.source}" if self.source else ""
        return f"{self.action.value}{target}{when}: {self.reason}"


@dataclass(frozen=True, slots=True)
class _Lag:
    behind: float
    """The largest shortfall over partitions; inf when a partition is missing."""
    partition: SourceKey | None

    def describe(self) -> str:
        if self.partition is None:
            return "not behind"
        topic, p = self.partition
        if math.isinf(self.behind):
            return f"has no {topic}[{p}]"
        return f"{int(self.behind)} behind on {topic}[{p}]"


class SourceSelector:
    """The failover policy of one relay: feed it health checks, act on its decisions."""

    def __init__(
        self,
        sources: Sequence[str],
        *,
        offset_lag_threshold: int,
        backoff_min: timedelta,
        backoff_max: timedelta,
        backoff_enable: bool = True,
        max_retries: int = -1,
        rng: random.Random | None = None,
        randomize_initial: bool = False,
    ) -> None:
        if not sources:
            raise ValueError("a relay needs at least one source")
        if len(set(sources)) != len(sources):
            raise ValueError(f"sources listed twice: {list(sources)}")
        if offset_lag_threshold < 0:
            raise ValueError(f"offset_lag_threshold must be ≥ 0, got {offset_lag_threshold}")
        if max_retries < -1:
            raise ValueError(f"max_retries must be -1 (forever) or ≥ 0, got {max_retries}")
        self._rng = rng or random.Random()
        self._order = list(sources)
        if randomize_initial:
            self._rng.shuffle(self._order)
        self.threshold = offset_lag_threshold
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.backoff_enable = backoff_enable
        self.max_retries = max_retries
        self.current: str | None = None
        self.attempt = 0
        self._last: dict[str, SourceHealth] = {}
        self._floor: Mapping[SourceKey, int] | None = None

    @property
    def order(self) -> tuple[str, ...]:
        """Preference order: configured order, replaced sources moved to the back."""
        return tuple(self._order)

    def working(self) -> None:
        """Records arrived from the current source: failures so far are forgiven."""
        self.attempt = 0

    def evaluate(
        self, health: Iterable[SourceHealth], floor: Mapping[SourceKey, int] | None = None
    ) -> Decision:
        """Decide after a health check of the sources (one missing from `health` counts as failed).

        `floor`: the relay's next offsets on the current source, when sources share offsets; a
        source that ends further back than the threshold would only be read after a wait.
        """
        statuses = {h.name: h for h in health}
        self._last = {
            n: statuses.get(n, SourceHealth(n, error="no health result")) for n in self._order
        }
        self._floor = floor
        return self._decide()

    def failed(self, name: str, error: str) -> Decision:
        """Connecting to or reading from `name` failed between health checks."""
        self._last[name] = SourceHealth(name, error=error)
        return self._decide()

    def _decide(self) -> Decision:
        healthy = [n for n in self._order if self._last.get(n, SourceHealth(n)).healthy]
        lag = self._lags(healthy)
        eligible = [n for n in healthy if lag[n].behind <= self.threshold]
        cur = self.current

        if cur is not None and cur in lag:
            if lag[cur].behind <= self.threshold:
                return Decision(
                    Action.KEEP, cur, cur, "healthy and not lagging", attempt=self.attempt
                )
            better = [n for n in eligible if n != cur] or [
                n for n in healthy if n != cur and lag[n].behind < lag[cur].behind
            ]
            if not better:
                return Decision(
                    Action.KEEP,
                    cur,
                    cur,
                    f"{lag[cur].describe()}, but no other source is less behind",
                    attempt=self.attempt,
                )
            ahead = tuple(n for n in healthy if n != cur and self._lead(n, cur) > self.threshold)
            return self._switch(
                better[0],
                cur,
                f"{cur} {lag[cur].describe()} (threshold {self.threshold})",
                failure=False,
                ahead=ahead,
            )

        previous = cur
        if cur is not None:
            self.attempt += 1
            why = self._last[cur].error or "failed"
            reason = f"{cur} failed: {why}"
        else:
            reason = "no source selected yet"
        pick = eligible[0] if eligible else min(healthy, key=lambda n: lag[n].behind, default=None)
        if pick is not None:
            if self._exhausted():
                return self._give_up(previous)
            return self._switch(pick, previous, reason, failure=cur is not None)
        if cur is None:
            self.attempt += 1
        else:
            self._demote(cur)
            self.current = None
        if self._exhausted():
            return self._give_up(previous)
        return Decision(
            Action.WAIT,
            None,
            previous,
            f"{reason}; no healthy source ({self._errors()})",
            delay=self._backoff(self.attempt),
            attempt=self.attempt,
        )

    def _switch(
        self,
        pick: str,
        previous: str | None,
        reason: str,
        *,
        failure: bool,
        ahead: tuple[str, ...] = (),
    ) -> Decision:
        if previous is not None:
            self._demote(previous)
        self.current = pick
        delay = self._backoff(self.attempt - 1) if failure and self.attempt > 1 else timedelta(0)
        return Decision(
            Action.SWITCH,
            pick,
            previous,
            f"{reason}; switching to {pick}",
            delay=delay,
            attempt=self.attempt,
            ahead=ahead,
        )

    def _give_up(self, previous: str | None) -> Decision:
        self.current = None
        return Decision(
            Action.GIVE_UP,
            None,
            previous,
            f"gave up after {self.attempt} failed attempts (max_retries = {self.max_retries}): "
            f"{self._errors()}",
            attempt=self.attempt,
        )

    def _exhausted(self) -> bool:
        return self.max_retries >= 0 and self.attempt > self.max_retries

    def _backoff(self, attempt: int) -> timedelta:
        return backoff_delay(
            attempt, self.backoff_min, self.backoff_max, self._rng, enabled=self.backoff_enable
        )

    def _demote(self, name: str) -> None:
        self._order.remove(name)
        self._order.append(name)

    def _lags(self, healthy: list[str]) -> dict[str, _Lag]:
        ends = {n: self._last[n].end_offsets or {} for n in healthy}
        best: dict[SourceKey, int] = dict(self._floor or {})
        for offsets in ends.values():
            for key, end in offsets.items():
                if end > best.get(key, -1):
                    best[key] = end
        out: dict[str, _Lag] = {}
        for n in healthy:
            worst = _Lag(0, None)
            for key, top in best.items():
                have = ends[n].get(key)
                behind = math.inf if have is None else top - have
                if behind > worst.behind:
                    worst = _Lag(behind, key)
            out[n] = worst
        return out

    def _lead(self, name: str, other: str) -> float:
        """How far `name` is ahead of `other` on its most-ahead partition."""
        mine = self._last[name].end_offsets or {}
        theirs = self._last[other].end_offsets or {}
        return max(
            (end - theirs[k] if k in theirs else math.inf for k, end in mine.items()),
            default=0,
        )

    def _errors(self) -> str:
        healthy = [n for n in self._order if self._last.get(n, SourceHealth(n)).healthy]
        lag = self._lags(healthy)
        parts = []
        for n in self._order:
            status = self._last.get(n)
            if status is None or not status.healthy:
                parts.append(f"{n}: {status.error if status else 'not checked yet'}")
            else:
                parts.append(f"{n}: {lag[n].describe()}")
        return "; ".join(parts)
