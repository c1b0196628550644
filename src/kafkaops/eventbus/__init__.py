"""Event bus: Argo Events' Kafka EventBus model (sources -> event topic -> sensors -> triggers).

This package holds the pure core: definitions, conditions, paths, filters, CloudEvents, per-trigger
state, the offset+metadata restart protocol and the reference model the chaos test checks against.
The Kafka, HTTP and CLI layers call into it and own every side effect.
"""
