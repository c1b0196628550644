"""kafkaops: one tool for the people who run Apache Kafka."""

__version__ = "0.1.0"
