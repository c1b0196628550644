"""The embedded document store: durable, shared between processes, change-detectable."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafkaops.server.store import DocumentStore


def test_put_get_list_delete_roundtrip(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path / "s.sqlite")
    store.put("task", "cpu", {"enabled": True, "script": "stream|from()"})
    store.put("task", "mem", {"enabled": False})
    store.put("handler", "h1", ["a", 1])
    assert store.get("task", "cpu") == {"enabled": True, "script": "stream|from()"}
    assert list(store.list("task")) == ["cpu", "mem"]
    assert store.get("task", "absent") is None
    assert store.delete("task", "mem") is True
    assert store.delete("task", "mem") is False
    assert list(store.list("task")) == ["cpu"]


def test_upsert_replaces_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = DocumentStore(path)
    store.put("k", "n", 1)
    store.put("k", "n", 2)
    store.close()
    assert DocumentStore(path).get("k", "n") == 2


def test_generation_moves_on_every_write_from_any_connection(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    daemon, cli = DocumentStore(path), DocumentStore(path)
    g0 = daemon.generation()
    cli.put("k", "a", {})
    g1 = daemon.generation()
    assert g1 > g0
    cli.delete("k", "absent")
    assert daemon.generation() == g1
    cli.delete("k", "a")
    assert daemon.generation() > g1


def test_a_failed_batch_writes_nothing(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path / "s.sqlite")
    g0 = store.generation()
    with pytest.raises(TypeError):
        store.put_many("k", {"ok": 1, "bad": object()})
    assert store.list("k") == {}
    assert store.generation() == g0
