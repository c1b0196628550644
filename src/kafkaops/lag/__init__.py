"""Consumer-group lag monitor: lag in offsets and seconds, Burrow-style status, remote write.

The modules here are pure logic (data in, data out, time passed in); the Kafka, Redis and HTTP
layers call them.
"""
