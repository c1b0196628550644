"""One config file for every job: TOML (or YAML), `${ENV}` for secrets, one pydantic model tree.

The root model imports each job's section model, and those import `kafkaops.config.kafka`; the
root names are therefore loaded on first use (PEP 562) so that importing a job's config module
first never meets a half-initialised package.
"""

from typing import TYPE_CHECKING, Any

from kafkaops.config.kafka import Duration, KafkaCluster, Section

if TYPE_CHECKING:
    from kafkaops.config.loader import ConfigError, load_config, masked
    from kafkaops.config.model import Config

_LAZY = {
    "Config": "kafkaops.config.model",
    "ConfigError": "kafkaops.config.loader",
    "load_config": "kafkaops.config.loader",
    "masked": "kafkaops.config.loader",
}

__all__ = [
    "Config",
    "ConfigError",
    "Duration",
    "KafkaCluster",
    "Section",
    "load_config",
    "masked",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kafkaops.config' has no attribute {name!r}")
