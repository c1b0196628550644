"""Failpoints for the test harness: crash (or fail a transaction) at a named window, on cue.

Random kills rarely land in the few milliseconds between producing a batch's output and
committing it, which is exactly where delivery bugs hide. The sensor calls `hit(window)` at each
such window; normally that does nothing. Only when the test harness starts a process with

    KAFKAOPS_EVENTBUS_CRASH_AT=<window>:<n>[:<mode>][,<window>:<n>[:<mode>]...]

does the n-th arrival at `window` in that process act: mode `kill` (the default) sends SIGKILL
to the process itself, as an OOM killer or a power cut would; mode `error` raises
`InjectedFailure` there, which the stage handles like a failed BeginTxn/CommitTxn from the
broker; mode `stop` sends SIGSTOP, freezing the process mid-transaction (a zombie) until the
harness sends SIGCONT.

Windows:

| window             | where                                                            |
|--------------------|------------------------------------------------------------------|
| `event-produced`   | event stage: records produced, transaction not yet committed     |
| `trigger-begin`    | trigger stage: about to begin the transaction of a firing batch  |
| `trigger-produced` | trigger stage: action records produced, not yet committed        |
| `action-ran`       | action stage: at-least-once actions ran, offsets not committed   |
| `action-committed` | action stage: offsets committed, at-most-once actions not yet run |
| `rebalance`        | any stage: inside the partition-assignment callback              |

Counting is per process, so a restarted process (started without the variable) runs clean.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from dataclasses import dataclass

__all__ = ["ENV", "WINDOWS", "Failpoints", "InjectedFailure", "hit"]

ENV = "KAFKAOPS_EVENTBUS_CRASH_AT"
WINDOWS = frozenset(
    {
        "event-produced",
        "trigger-begin",
        "trigger-produced",
        "action-ran",
        "action-committed",
        "rebalance",
    }
)


class InjectedFailure(RuntimeError):
    """A failure the harness asked for; stages treat it as a failed transaction."""


@dataclass(frozen=True)
class _Point:
    window: str
    count: int
    mode: str


class Failpoints:
    """Parsed `KAFKAOPS_EVENTBUS_CRASH_AT`; empty (every `hit` a no-op) when it is unset."""

    def __init__(self, spec: str = "") -> None:
        self._points: dict[str, _Point] = {}
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        for part in filter(None, (p.strip() for p in spec.split(","))):
            fields = part.split(":")
            if len(fields) not in (2, 3) or not fields[1].isdigit() or int(fields[1]) < 1:
                raise ValueError(f"{ENV}: {part!r} is not <window>:<n>[:kill|error|stop]")
            window, mode = fields[0], fields[2] if len(fields) == 3 else "kill"
            if window not in WINDOWS:
                raise ValueError(f"{ENV}: unknown window {window!r} ({', '.join(sorted(WINDOWS))})")
            if mode not in ("kill", "error", "stop"):
                raise ValueError(f"{ENV}: mode {mode!r} is not kill, error or stop")
            self._points[window] = _Point(window, int(fields[1]), mode)

    @classmethod
    def from_env(cls) -> Failpoints:
        return cls(os.environ.get(ENV, ""))

    def __bool__(self) -> bool:
        return bool(self._points)

    def hit(self, window: str) -> None:
        point = self._points.get(window)
        if point is None:
            return
        with self._lock:
            self._seen[window] += 1
            due = self._seen[window] == point.count
        if not due:
            return
        if point.mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if point.mode == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
            return
        raise InjectedFailure(f"failpoint {window}:{point.count}")


_ACTIVE = Failpoints.from_env()


def hit(window: str) -> None:
    """Mark arrival at `window`; a no-op unless the harness set the environment variable."""
    if _ACTIVE:
        _ACTIVE.hit(window)
