"""One HTTP server and the runtime that jobs register routes, metrics and tasks on."""

from kafkaops.server.runtime import Health, Job, Runtime

__all__ = ["Health", "Job", "Runtime"]
