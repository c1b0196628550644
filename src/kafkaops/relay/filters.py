"""Filter plugins: decide per record whether it is relayed.

The interface is deliberately small. A plugin is any callable that takes the `config` string of
its `[relay.filters.<id>]` table and returns an object with one method:

    allow(record) -> bool      # True: relay it; False: drop it (counted as filtered)

`record` is the consumed `confluent_kafka.Message` itself (no copy): `topic()`, `partition()`,
`offset()`, `key()`, `value()`, `headers()` and `timestamp()` are what a filter may read.

A filter is named by `path`, looked up in this order:
1. `package.module:Name`: imported directly;
2. a bundled filter's name (`header-match`, `key-match`, `value-regex`, `json-field`);
3. an entry point of that name in the `kafkaops.relay.filters` group, so an installed package
   can ship filters without users knowing its module layout.

A filter that raises stops the relay (`FilterError`) instead of guessing: passing or dropping
the record silently would both change what the target holds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

ENTRY_POINT_GROUP = "kafkaops.relay.filters"

Headers = list[tuple[str, bytes | None]]


class RelayRecord(Protocol):
    """The read-only view of a consumed record that filters get (`confluent_kafka.Message`)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Headers | None: ...
    def timestamp(self) -> tuple[int, int]: ...


@runtime_checkable
class RelayFilter(Protocol):
    def allow(self, record: RelayRecord) -> bool: ...


FilterFactory = Callable[[str], RelayFilter]


class FilterSpec(Protocol):
    """What a filter's config table provides (`kafkaops.relay.config.FilterSettings`)."""

    enabled: bool
    path: str
    config: str


class FilterLoadError(ValueError):
    """A filter could not be found or configured; the message names the filter and its path."""


class FilterError(RuntimeError):
    """A filter raised while deciding on a record."""


def resolve_factory(path: str) -> FilterFactory:
    """Find the plugin factory `path` names (see the module doc for the lookup order)."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise FilterLoadError(f"path {path!r}: cannot import {module_name!r}: {exc}") from None
        factory = module
        for part in attr.split("."):
            factory = getattr(factory, part, None)
            if factory is None:
                raise FilterLoadError(f"path {path!r}: {module_name!r} has no {attr!r}")
        return _callable(factory, path)

    from kafkaops.relay.filters_builtin import BUILTIN_FILTERS

    if path in BUILTIN_FILTERS:
        return BUILTIN_FILTERS[path]
    found = entry_points(group=ENTRY_POINT_GROUP, name=path)
    if not found:
        raise FilterLoadError(
            f"path {path!r}: not 'module:Name', not a bundled filter "
            f"({', '.join(sorted(BUILTIN_FILTERS))}) and no entry point of that name in group "
            f"{ENTRY_POINT_GROUP!r}"
        )
    entry = next(iter(found))
    try:
        return _callable(entry.load(), path)
    except ImportError as exc:
        raise FilterLoadError(f"path {path!r}: entry point {entry.value!r}: {exc}") from None


def _callable(obj: object, path: str) -> FilterFactory:
    if not callable(obj):
        raise FilterLoadError(f"path {path!r}: {obj!r} is not callable")
    return obj  # type: ignore[return-value]


def load_filter(filter_id: str, path: str, config: str) -> RelayFilter:
    """Build one configured filter; every failure names the filter id."""
    try:
        factory = resolve_factory(path)
    except FilterLoadError as exc:
        raise FilterLoadError(f"filter {filter_id!r}: {exc}") from None
    try:
        instance = factory(config)
    except Exception as exc:
        raise FilterLoadError(
            f"filter {filter_id!r} (path {path!r}) rejected its config: {exc}"
        ) from exc
    if not isinstance(instance, RelayFilter):
        raise FilterLoadError(
            f"filter {filter_id!r} (path {path!r}) returned {type(instance).__name__}, "
            "which has no allow(record) method"
        )
    return instance


@dataclass(frozen=True, slots=True)
class _Step:
    id: str
    allow: Callable[[RelayRecord], bool]


class FilterChain:
    """Filters in config order; a record is relayed only if every filter allows it.

    `filtered` counts drops per filter id (the first filter that refused a record owns it), the
    numbers behind `messages_filtered_total{filter=...}`.
    """

    def __init__(self, filters: Iterable[tuple[str, RelayFilter]] = ()) -> None:
        self._steps = tuple(_Step(fid, f.allow) for fid, f in filters)
        self.filtered: dict[str, int] = {step.id: 0 for step in self._steps}

    def __bool__(self) -> bool:
        return bool(self._steps)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(step.id for step in self._steps)

    def rejected_by(self, record: RelayRecord) -> str | None:
        """The id of the filter that drops `record`, or None when it is relayed."""
        for step in self._steps:
            try:
                allowed = step.allow(record)
            except Exception as exc:
                raise FilterError(
                    f"filter {step.id!r} failed on {record.topic()}[{record.partition()}] "
                    f"offset {record.offset()}: {exc!r}"
                ) from exc
            if not allowed:
                self.filtered[step.id] += 1
                return step.id
        return None


def build_chain(specs: Mapping[str, FilterSpec]) -> FilterChain:
    """Load the enabled filters of a relay, in config order."""
    return FilterChain(
        (fid, load_filter(fid, spec.path, spec.config))
        for fid, spec in specs.items()
        if spec.enabled
    )
