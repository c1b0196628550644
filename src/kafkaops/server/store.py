"""The embedded store in `data_dir`: JSON documents by (kind, name), shared by CLI and daemon.

SQLite in WAL mode lets a CLI command write while the daemon reads; `generation()` changes on
every write by any process, so the daemon can notice edits without a notification channel.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER);
INSERT OR IGNORE INTO generation VALUES (1, 0);
"""


class DocumentStore:
    """A small durable map; every write is one transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    @classmethod
    def in_data_dir(cls, data_dir: Path, name: str) -> DocumentStore:
        return cls(data_dir / f"{name}.sqlite")

    def put(self, kind: str, name: str, body: Any) -> None:
        self.put_many(kind, {name: body})

    def put_many(self, kind: str, bodies: dict[str, Any]) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO documents(kind, name, body, updated) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(kind, name) DO UPDATE SET body = excluded.body, "
                    "updated = excluded.updated",
                    [
                        (kind, n, json.dumps(b, separators=(",", ":")), now)
                        for n, b in bodies.items()
                    ],
                )
                self._bump()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def get(self, kind: str, name: str) -> Any | None:
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM documents WHERE kind = ? AND name = ?", (kind, name)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def list(self, kind: str) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, body FROM documents WHERE kind = ? ORDER BY name", (kind,)
            ).fetchall()
        return {name: json.loads(body) for name, body in rows}

    def delete(self, kind: str, name: str) -> bool:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute(
                "DELETE FROM documents WHERE kind = ? AND name = ?", (kind, name)
            )
            if cursor.rowcount:
                self._bump()
            self._db.execute("COMMIT")
        return bool(cursor.rowcount)

    def generation(self) -> int:
        with self._lock:
            return self._db.execute("SELECT value FROM generation WHERE id = 1").fetchone()[0]

    def _bump(self) -> None:
        self._db.execute("UPDATE generation SET value = value + 1 WHERE id = 1")

    def close(self) -> None:
        with self._lock:
            self._db.close()
