"""The one Kafka client layer: settings from a cluster section, client factories, health checks."""

from kafkaops.kafka.clients import ClusterClients
from kafkaops.kafka.settings import client_settings, security_settings

__all__ = ["ClusterClients", "client_settings", "security_settings"]
