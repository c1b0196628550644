"""One config file for every job: TOML (or YAML), `${ENV}` for secrets, one pydantic model tree."""

from kafkaops.config.kafka import Duration, KafkaCluster, Section
from kafkaops.config.loader import ConfigError, load_config, masked
from kafkaops.config.model import Config

__all__ = [
    "Config",
    "ConfigError",
    "Duration",
    "KafkaCluster",
    "Section",
    "load_config",
    "masked",
]
