"""Relay: copy topics from one of several source clusters to a target cluster (kaf-relay's job).

The modules here are the pure core, one per pipeline stage: `config` (settings, kaf-relay's
config.toml), `topicmap` (where each record goes), `filters` (which records go), `position`
(the headers that let a restart resume exactly, and the ack frontier behind them) and
`failover` (which source to read). The Kafka I/O layer drives them; none of them does I/O.
"""
