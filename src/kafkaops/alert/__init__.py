"""Alerting: Kapacitor-compatible alert tasks whose events can be delivered to Kafka."""
