"""Definitions as applied: EventBus, EventSource and Sensor documents in the embedded store.

`kafkaops events apply` writes here and the daemon reads here (noticing changes through the
store's generation), so both sides validate with the same models. A definition is stored as what
its model dumps (aliases, only the fields the user set), which validates back to an equal
definition; the stored form therefore never depends on the YAML layout it came from.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from kafkaops.eventbus.spec import Definition, DefinitionError, EventBus, EventSource, Sensor
from kafkaops.server.store import DocumentStore

__all__ = ["KINDS", "Applied", "DefinitionStore", "normalise_kind"]

KINDS: dict[str, type[EventBus] | type[EventSource] | type[Sensor]] = {
    "EventBus": EventBus,
    "EventSource": EventSource,
    "Sensor": Sensor,
}
_KIND_NAMES = {k.lower(): k for k in KINDS} | {
    "eventbuses": "EventBus",
    "eventsources": "EventSource",
    "sensors": "Sensor",
}
_DOC_KIND = "eventbus.{}"


def normalise_kind(text: str) -> str:
    """`sensor`, `Sensor` or `sensors` -> `Sensor` (kubectl habits); ValueError names the kinds."""
    kind = _KIND_NAMES.get(text.strip().lower())
    if kind is None:
        raise ValueError(f"unknown kind {text!r} (one of {', '.join(KINDS)})")
    return kind


@dataclass(frozen=True)
class Applied:
    """What `apply` did with one definition."""

    definition: Definition
    action: Literal["created", "configured", "unchanged"]


def _body(definition: Definition) -> dict[str, object]:
    return definition.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


class DefinitionStore:
    """Applied definitions by (kind, namespace, name)."""

    def __init__(self, documents: DocumentStore) -> None:
        self.documents = documents

    @classmethod
    def in_data_dir(cls, data_dir: Path, name: str = "eventbus") -> DefinitionStore:
        return cls(DocumentStore.in_data_dir(data_dir, name))

    @property
    def path(self) -> Path:
        return self.documents.path

    def apply(self, definitions: Iterable[Definition]) -> list[Applied]:
        """Store every definition (one write per kind); reports created/configured/unchanged."""
        out: list[Applied] = []
        by_kind: dict[str, dict[str, object]] = {}
        for d in definitions:
            key = _key(d.namespace, d.name)
            body = _body(d)
            current = self.documents.get(_DOC_KIND.format(d.kind), key)
            action: Literal["created", "configured", "unchanged"]
            if current is None:
                action = "created"
            elif current == body:
                action = "unchanged"
            else:
                action = "configured"
            if action != "unchanged":
                by_kind.setdefault(d.kind, {})[key] = body
            out.append(Applied(d, action))
        for kind, bodies in by_kind.items():
            self.documents.put_many(_DOC_KIND.format(kind), bodies)
        return out

    def definitions(self, kind: str | None = None) -> list[Definition]:
        """Every stored definition (of `kind`), validated again; ordered by kind, then key."""
        out: list[Definition] = []
        for k, model in KINDS.items():
            if kind is not None and k != kind:
                continue
            for key, body in self.documents.list(_DOC_KIND.format(k)).items():
                try:
                    out.append(model.model_validate(body))
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(p) for p in first["loc"])
                    raise DefinitionError(
                        str(self.path),
                        [f"{self.path}: stored {k} {key!r}: {where}: {first['msg']}"],
                    ) from None
        return out

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        return self.documents.delete(_DOC_KIND.format(kind), _key(namespace, name))

    def generation(self) -> int:
        """Changes on every write by any process: the daemon reloads when it moves."""
        return self.documents.generation()

    def close(self) -> None:
        self.documents.close()
