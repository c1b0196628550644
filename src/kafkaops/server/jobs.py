"""Every job `kafkaops run` knows; each decides from the config whether it runs."""

from kafkaops.alert.job import AlertJob
from kafkaops.eventbus.job import EventbusJob
from kafkaops.lag.job import LagJob
from kafkaops.relay.job import RelayJob
from kafkaops.server.connectivity import ConnectivityJob
from kafkaops.server.runtime import Job


def all_jobs() -> list[Job]:
    return [ConnectivityJob(), LagJob(), AlertJob(), EventbusJob(), RelayJob()]
