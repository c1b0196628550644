"""Chaos: three sensor processes over three partitions, SIGKILLed and restarted while events flow,
judged against the reference model.

Kills come from two places. A seeded schedule SIGKILLs random processes at random times (some
restarted at once, some only after their session expired, which forces real rebalances); and
processes restarted with `KAFKAOPS_EVENTBUS_CRASH_AT` kill themselves at a named window:
after producing a batch but before committing it (event and trigger stages), after running
at-least-once actions but before committing, after committing but before running at-most-once
actions, and inside a partition-assignment callback (mid-rebalance). Every window must be hit.

Verdicts, from what is in Kafka afterwards (read_committed) and what the Kafka trigger wrote:
- event -> trigger topic: exactly the records routing the event log gives (exactly-once);
- each trigger saw each event partition in order;
- action topic: exactly the firings the model computes from the trigger topic (exactly-once);
- side effects: ⊇ the model for at-least-once triggers, ⊆ for at-most-once triggers.

`KAFKAOPS_SOAK=1` runs longer with more events and kills; `KAFKAOPS_CHAOS_SEED` picks the seed.
"""

from __future__ import annotations

import json
import os
import random
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from kafkaops.eventbus.cloudevents import CloudEvent, decode_trigger_record
from kafkaops.eventbus.model import (
    FiringKey,
    ObservedRecord,
    compare,
    expected_firings,
    expected_trigger_records,
    order_violations,
)
from kafkaops.eventbus.triggerstate import SensorPlan

pytestmark = pytest.mark.kafka

SOAK = os.environ.get("KAFKAOPS_SOAK") == "1"
SEED = int(os.environ.get("KAFKAOPS_CHAOS_SEED", "20261122"))
EVENTS = 20_000 if SOAK else 2_000
RATE = 150 if SOAK else 100  # events per second
DEPS = [f"d{i}" for i in range(6)]
# The windows the chaos run must kill processes at, in the order it arms them. (`trigger-begin`
# exists for injected BeginTxn failures, which test_semantics covers.)
_WINDOW_ORDER = [
    "trigger-produced",
    "event-produced",
    "action-ran",
    "action-committed",
    "rebalance",
]
NAMED_WINDOWS = frozenset(_WINDOW_ORDER)
TRIGGERS = [
    # (name, condition, at least once)
    ("and-01", "d0 && d1", True),
    ("and-23", "d2 && d3", False),
    ("mix", "(d0 && d4) || d5", True),
    ("three", "d1 && d3 && d5", False),
    ("simple-4", "d4", True),
    ("simple-25", "d2 || d5", False),
]
ALO = {name: at_least_once for name, _condition, at_least_once in TRIGGERS}


def _definitions(bus, out: str) -> str:
    deps = "\n".join(f"    - {{name: {d}, eventSourceName: src, eventName: {d}}}" for d in DEPS)
    triggers = []
    for name, condition, alo in TRIGGERS:
        used = [d for d in DEPS if d in condition.replace("(", " ").replace(")", " ").split()]
        payload = "\n".join(
            f"""          - src: {{dependencyName: {d}, contextKey: id}}
            dest: {d}"""
            for d in used
        )
        triggers.append(
            f"""  - template:
      name: {name}
      conditions: "{condition}"
      kafka:
        cluster: main
        topic: {out}
        partitioningKey: {name}
        payload:
          - src: {{dependencyName: {used[0]}, value: {name}}}
            dest: trigger
{payload}
    atLeastOnce: {str(alo).lower()}"""
        )
    sensor = textwrap.dedent(
        """\
        apiVersion: argoproj.io/v1alpha1
        kind: Sensor
        metadata: {name: chaos}
        spec:
          dependencies:
        """
    )
    return bus.bus_yaml() + "---\n" + sensor + deps + "\n  triggers:\n" + "\n".join(triggers) + "\n"


@dataclass
class Chaos:
    """The kill schedule and what happened."""

    rng: random.Random
    procs: list
    kills: int = 0
    window_deaths: Counter[str] = field(default_factory=Counter)
    armed: dict[str, str] = field(default_factory=dict)  # instance -> window it was armed for
    armed_at: dict[str, float] = field(default_factory=dict)
    late: dict[str, float] = field(default_factory=dict)  # instance -> restart time
    unexpected: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.trace.append(f"{time.monotonic():.1f} {text}")

    def reap(self) -> None:
        """Restart processes that died; a death other than SIGKILL is a failure."""
        now = time.monotonic()
        for proc in self.procs:
            if proc.alive or (proc.proc is None):
                continue
            if proc.instance in self.late and now < self.late[proc.instance]:
                continue
            code = proc.proc.returncode
            window = self.armed.pop(proc.instance, None)
            self.armed_at.pop(proc.instance, None)
            if proc.instance in self.late:
                del self.late[proc.instance]
            elif code == -9 and window is not None:
                self.window_deaths[window] += 1
                self.note(f"{proc.instance} died at {window}")
            elif code != -9:
                self.unexpected.append(f"{proc.instance} exited {code}:\n{proc.output()[-3000:]}")
            proc.start()

    def step(self) -> None:
        """One chaos action: arm the next window nobody has died at yet, else a random kill."""
        now = time.monotonic()
        for instance, since in list(self.armed_at.items()):
            if instance in self.armed and now - since > 6.0:
                # Its partitions never led it to the window; try another process instead.
                proc = next(p for p in self.procs if p.instance == instance)
                del self.armed[instance], self.armed_at[instance]
                self.note(f"{instance} disarmed")
                if proc.alive:
                    proc.kill()
                    self.kills += 1
                    proc.start()
        live = [p for p in self.procs if p.alive and p.instance not in self.armed]
        if not live:
            return
        proc = self.rng.choice(live)
        done = set(self.window_deaths) | set(self.armed.values())
        missing = [w for w in _WINDOW_ORDER if w not in done]
        if SOAK and not missing and not self.armed and self.rng.random() < 0.3:
            missing = [self.rng.choice(_WINDOW_ORDER)]  # the soak keeps aiming at windows
        if missing and not self.armed:
            window = missing[0]
            count = 1 if window == "rebalance" else self.rng.randint(1, 2)
            proc.kill()
            self.kills += 1
            self.armed[proc.instance] = window
            self.armed_at[proc.instance] = now
            proc.start(env={"KAFKAOPS_EVENTBUS_CRASH_AT": f"{window}:{count}"})
            self.note(f"{proc.instance} armed {window}:{count}")
        elif self.rng.random() < 0.8:
            proc.kill()
            self.kills += 1
            proc.start()
        else:
            # Down past the session timeout: the group rebalances without it, then with it.
            proc.kill()
            self.kills += 1
            self.late[proc.instance] = now + 7.0


def _observed(records) -> dict[int, list[ObservedRecord]]:
    out: dict[int, list[ObservedRecord]] = {}
    for msg in records:
        trigger, item = decode_trigger_record(msg.key(), msg.value())
        out.setdefault(msg.partition(), []).append(
            ObservedRecord(
                partition=msg.partition(),
                offset=msg.offset(),
                trigger=trigger,
                dependency=item.dependency,
                event_id=item.event.id,
                timestamp=datetime.fromtimestamp(msg.timestamp()[1] / 1000, UTC),
            )
        )
    return out


def _produce(bus, sent: threading.Event, enough: Callable[[], bool]) -> None:
    """The load: random dependencies at RATE per second; at least EVENTS events, and more (up
    to three times as many) until the chaos schedule has killed at every window."""
    rng = random.Random(SEED + 1)
    n = 0
    while n < EVENTS or (n < 3 * EVENTS and not enough()):
        dep = rng.choice(DEPS)
        event = bus.event(dep, f"{dep}-{n}")
        bus.producer.produce(bus.event_topic, event.to_json(), event.key.encode())
        bus.producer.poll(0)
        n += 1
        time.sleep(1 / RATE)  # pacing the load generator, not synchronisation
    bus.producer.flush(30)
    sent.set()


def _run(chaos: Chaos, sent: threading.Event) -> None:
    """Kill on schedule until the load is sent, then let every process come back."""
    rng = chaos.rng
    next_kill = time.monotonic() + rng.uniform(0.5, 1.5)
    deadline = time.monotonic() + EVENTS / RATE * 4 + 120
    while not sent.is_set() or chaos.armed or chaos.late:
        assert time.monotonic() < deadline, "the chaos run did not finish"
        chaos.reap()
        if not sent.is_set() and time.monotonic() >= next_kill:
            chaos.step()
            next_kill = time.monotonic() + rng.uniform(0.4, 1.2)
        if sent.is_set() and chaos.armed:
            # Events stopped: disarm what has not fired yet so the run can settle.
            for proc in chaos.procs:
                if proc.instance in chaos.armed and proc.alive:
                    del chaos.armed[proc.instance]
                    proc.kill()
                    chaos.kills += 1
                    proc.start()
        sent.wait(0.1)
    chaos.reap()


def _side_effects(bus, out: str) -> dict[bool, list[FiringKey]]:
    """What the Kafka trigger wrote, split by at-least-once (True) / at-most-once (False)."""
    effects: dict[bool, list[FiringKey]] = {True: [], False: []}
    for record in bus.output(out):
        trigger = record.pop("trigger")
        effects[ALO[trigger]].append(FiringKey(trigger, tuple(sorted(record.items()))))
    return effects


def test_chaos_matches_the_reference_model(bus, record_property) -> None:
    out = f"{bus.name}-out"
    bus.topics(partitions=3, output=[out])
    _bus, sensor = bus.apply(_definitions(bus, out))
    plan = SensorPlan(sensor)
    chaos = Chaos(random.Random(SEED), [bus.process(f"p{i}").start() for i in range(3)])
    sent = threading.Event()
    producer = threading.Thread(
        target=_produce,
        args=(bus, sent, lambda: set(chaos.window_deaths) >= NAMED_WINDOWS),
        daemon=True,
    )
    producer.start()
    _run(chaos, sent)
    producer.join(30)
    assert not chaos.unexpected, "\n".join(chaos.unexpected)

    topics = bus.settle("chaos", timeout=180)
    event_log: dict[int, list[CloudEvent]] = {}
    for msg in bus.read(bus.event_topic):
        event_log.setdefault(msg.partition(), []).append(CloudEvent.from_json(msg.value()))
    trigger_log = _observed(topics["trigger"])
    seen = Counter((r.trigger, r.dependency, r.event_id) for rs in trigger_log.values() for r in rs)
    assert seen == expected_trigger_records(plan, event_log), "event->trigger not exactly-once"
    assert order_violations(event_log, trigger_log) == []

    expected = expected_firings(plan, event_log, trigger_log)
    actions = [FiringKey(t, events) for t, events in bus.firings(topics["action"])]
    verdict = compare(actions, expected, "exactly-once")
    assert verdict.ok, verdict.describe()

    effects = _side_effects(bus, out)
    for flag, guarantee in ((True, "at-least-once"), (False, "at-most-once")):
        wanted = Counter({k: v for k, v in expected.items() if ALO[k.trigger] == flag})
        verdict = compare(effects[flag], wanted, guarantee)  # type: ignore[arg-type]
        assert verdict.ok, verdict.describe()

    expected_alo = sum(v for k, v in expected.items() if ALO[k.trigger])
    summary = {
        "seed": SEED,
        "events": sum(len(v) for v in event_log.values()),
        "firings": sum(expected.values()),
        "kills": chaos.kills + sum(chaos.window_deaths.values()),
        "window_deaths": dict(chaos.window_deaths),
        "at_least_once_repeats": len(effects[True]) - expected_alo,
        "at_most_once_lost": sum(expected.values()) - expected_alo - len(effects[False]),
    }
    record_property("chaos", json.dumps(summary))
    print(f"\nchaos summary: {json.dumps(summary)}")
    trace = "\n".join(chaos.trace)
    assert set(chaos.window_deaths) >= NAMED_WINDOWS, f"windows never reached: {summary}\n{trace}"
    for proc in chaos.procs:
        assert proc.stop() == 0, proc.output()[-3000:]
