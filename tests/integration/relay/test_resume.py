"""Resume from run tokens on a real target: a run cut short, another writer's records between.

The target is laid out by hand as a crashed relay leaves it, so the cut is exactly where the test
says (kill -9 in test_crash.py cuts at random): the first 7 records of a 10-record run landed,
with another writer's records, plain and with another run's token, between and after them.
"""

from __future__ import annotations

from confluent_kafka import Producer

from kafkaops.relay.position import (
    RUN_HEADER,
    RUN_START_HEADER,
    SOURCE_HEADER,
    Mark,
    Stamp,
    encode_stamp,
)
from kafkaops.testing import LocalCluster, wait_for
from kafkaops.testing.sequence import SequenceGenerator

from .conftest import Feed, clients, load, read_all, relay_config, running, topic, verify


def _send(
    p: Producer, name: str, value: bytes, key: bytes | None, *, ts: int, headers: list
) -> None:
    p.produce(name, value, key, partition=0, timestamp=ts, headers=headers)


def test_a_run_cut_short_resumes_after_its_last_landed_record(
    src: LocalCluster, dst: LocalCluster, unique: str
) -> None:
    name = topic(src, unique, 1)
    topic(dst, name, 1)
    feed = Feed([src], name, streams=1)
    feed.send(30)
    landed = [m for m in read_all(src, name) if m.offset() < 7]
    other = SequenceGenerator(run_id=99, size=50)
    token = b"\x5a\x11\xc0\xde"
    p = clients(dst).producer(**{"enable.idempotence": True})
    for m in landed:
        if m.offset() == 0:
            stamp = encode_stamp(Stamp("a", name, 0, Mark(1, 0), 0))
            ours = [(SOURCE_HEADER, stamp), (RUN_START_HEADER, token)]
        else:
            ours = [(RUN_HEADER, token)]
        _send(p, name, m.value(), m.key(), ts=m.timestamp()[1], headers=ours)
        if m.offset() in (2, 6):
            _send(p, name, other.value(0, m.offset()), None, ts=1, headers=[])
            _send(p, name, other.value(1, m.offset()), None, ts=1, headers=[(RUN_HEADER, b"x")])
    assert p.flush(30) == 0

    config = load(relay_config({"a": src, "b": dst}, {"sources": ["a"], "target": "b",
                                                      "topics": [f"{name}:{name}"]}))  # fmt: skip
    with running(config) as relay:
        wait_for(lambda: relay.stats.lag == {(name, 0): 0}, 60, what="lag 0")
        acked = relay.stats.acked
    report = verify(dst, name, feed.expected)
    assert acked == 23, "resumed at offset 7: the 7 landed records counted, the others' not"
    assert report.foreign == 4
    assert (report.missing, report.duplicated, report.out_of_order) == (0, 0, 0), report
    assert report.received == 30
