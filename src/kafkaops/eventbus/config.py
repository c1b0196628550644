"""The `[eventbus]` section of the kafkaops config file.

Definitions (EventBus, EventSource, Sensor) live in the embedded store, not here: this section
only says how this process runs them. Its presence makes `kafkaops run` start the event bus.

```toml
[eventbus]
instance-id = "node-1"        # stable per process: transactional ids and static group members
batch-size = 100              # records per partition in one transaction (Argo: 100)
batch-timeout = "1s"          # a batch stays open at most this long (Argo: 1s)
```
"""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator

from kafkaops.config.kafka import Duration, Section

__all__ = ["EventbusSection"]

_INSTANCE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def _default_instance() -> str:
    """The host name: stable across restarts, which is what fencing a dead incarnation needs."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:100] or "kafkaops"


class EventbusSection(Section):
    """How this process runs the stored event bus definitions."""

    instance_id: str = Field(default_factory=_default_instance, alias="instance-id")
    batch_size: int = Field(default=100, ge=1, le=100_000, alias="batch-size")
    batch_timeout: Duration = Field(default=timedelta(seconds=1), alias="batch-timeout")
    store: str = "eventbus"
    transaction_timeout: Duration = Field(
        default=timedelta(seconds=60), alias="transaction-timeout"
    )
    session_timeout: Duration = Field(default=timedelta(seconds=10), alias="session-timeout")
    rebalance_strategy: Literal["range", "roundrobin", "cooperative-sticky"] | None = Field(
        default=None,
        alias="rebalance-strategy",
        description="Overrides the EventBus consumerGroup.rebalanceStrategy.",
    )
    reload_interval: Duration = Field(default=timedelta(seconds=2), alias="reload-interval")

    @field_validator("instance_id")
    @classmethod
    def _instance(cls, v: str) -> str:
        if not _INSTANCE.match(v):
            raise ValueError(
                f"instance-id {v!r} may only use letters, digits, '.', '_' and '-' (1-100)"
            )
        return v

    @field_validator("store")
    @classmethod
    def _store(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", v):
            raise ValueError(f"store {v!r} must be a plain file name (letters, digits, '_', '-')")
        return v

    @field_validator("batch_timeout", "session_timeout", "transaction_timeout", "reload_interval")
    @classmethod
    def _positive(cls, v: timedelta, info) -> timedelta:
        if v <= timedelta(0):
            raise ValueError(f"{info.field_name.replace('_', '-')} must be positive")
        return v

    @field_validator("session_timeout")
    @classmethod
    def _session(cls, v: timedelta) -> timedelta:
        # The broker's default group.min.session.timeout.ms is 6 s; below it joins are refused.
        if v < timedelta(seconds=6):
            raise ValueError("session-timeout below 6s is refused by brokers with default settings")
        return v
