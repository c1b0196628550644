"""Silences: matching, expiry, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafkaops.alert.expr import MatchScope
from kafkaops.alert.silences import KEEP_EXPIRED_NS, Silences
from kafkaops.alert.tickscript import TickError
from kafkaops.server.store import DocumentStore

HOUR = 3600 * 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000_000_000

    def __call__(self) -> int:
        return self.now


def scope(level: int = 3, **tags: str) -> MatchScope:
    return MatchScope(
        tags=tags, level=level, previous_level=0, name="cpu", task_name="t", duration=0
    )


def test_active_silences_match_by_tags_and_level(tmp_path: Path) -> None:
    clock = Clock()
    silences = Silences(DocumentStore(tmp_path / "a.sqlite"), clock)
    silence = silences.add("\"host\" == 'a' AND level() >= WARNING", 2 * HOUR, "deploy")
    assert silences.matching(scope(host="a")) is silence
    assert silences.matching(scope(level=1, host="a")) is None
    assert silences.matching(scope(host="b")) is None
    assert silences.matching(scope()) is None  # no host tag: cannot match, not an error
    clock.now += 2 * HOUR
    assert silences.matching(scope(host="a")) is None
    assert silence.to_api(clock.now)["state"] == "expired"


def test_expire_persists_and_old_silences_are_purged(tmp_path: Path) -> None:
    clock = Clock()
    store = DocumentStore(tmp_path / "a.sqlite")
    silences = Silences(store, clock)
    silence = silences.add("level() == CRITICAL", HOUR, "")
    api = silence.to_api(clock.now)
    assert (api["state"], api["starts-at"]) == ("active", "2023-11-14T22:13:20Z")
    assert api["ends-at"] == "2023-11-14T23:13:20Z"
    clock.now += 60_000_000_000
    silences.expire(silence.id)
    reloaded = Silences(store, clock)
    assert reloaded.matching(scope()) is None
    assert [s.id for s in reloaded.list()] == [silence.id]
    clock.now += KEEP_EXPIRED_NS + 1
    assert reloaded.list() == []
    assert store.list("silence") == {}
    with pytest.raises(KeyError):
        reloaded.expire(silence.id)


def test_bad_silences_are_refused(tmp_path: Path) -> None:
    silences = Silences(DocumentStore(tmp_path / "a.sqlite"))
    with pytest.raises(TickError) as err:
        silences.add("level() >=", HOUR)
    assert err.value.line == 1
    with pytest.raises(ValueError, match="positive"):
        silences.add("TRUE", 0)
    assert silences.list() == []
