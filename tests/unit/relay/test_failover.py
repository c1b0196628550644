from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.relay.failover import (
    DISABLED_BACKOFF,
    Action,
    SourceHealth,
    SourceSelector,
    backoff_delay,
)

S = timedelta(seconds=1)
P0, P1 = ("t", 0), ("t", 1)


def up(name, p0=100, p1=100):
    return SourceHealth(name, {P0: p0, P1: p1})


def down(name, error="timeout"):
    return SourceHealth(name, error=error)


def selector(sources=("a", "b", "c"), **kw):
    kw.setdefault("offset_lag_threshold", 10)
    kw.setdefault("backoff_min", 2 * S)
    kw.setdefault("backoff_max", 10 * S)
    kw.setdefault("rng", random.Random(7))
    return SourceSelector(list(sources), **kw)


# --- backoff: kaf-relay's formula -----------------------------------------------------------------


class FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [
        (0, 0.5, 2 * S),  # no failure yet: min
        (1, 0.5, 2 * S),  # min * 2^0 * 1.0
        (2, 0.5, 4 * S),
        (3, 0.0, 6.4 * S),  # 8s * 0.8
        (3, 0.99, 9.568 * S),  # 8s * 1.196
        (4, 0.0, 10 * S),  # 16s * 0.8 capped at max
        (11, 0.0, 10 * S),  # past ten attempts: max, no jitter
    ],
)
def test_backoff_vectors(attempt, jitter, expected):
    assert backoff_delay(attempt, 2 * S, 10 * S, FixedRandom(jitter)) == expected


def test_backoff_disabled_is_a_flat_second():
    assert backoff_delay(5, 2 * S, 10 * S, random.Random(), enabled=False) == DISABLED_BACKOFF == S


@given(attempt=st.integers(1, 10), seed=st.integers())
def test_backoff_stays_in_its_jitter_band(attempt, seed):
    base = 0.1 * 2 ** (attempt - 1)
    delay = backoff_delay(attempt, 0.1 * S, 1000 * S, random.Random(seed)).total_seconds()
    assert 0.8 * base - 1e-9 <= delay < 1.2 * base + 1e-9


def test_jitter_is_reproducible_with_a_seeded_rng():
    a = [backoff_delay(n, S, 60 * S, random.Random(3)) for n in range(1, 8)]
    b = [backoff_delay(n, S, 60 * S, random.Random(3)) for n in range(1, 8)]
    assert a == b


# --- selection -----------------------------------------------------------------------------------


def test_first_healthy_source_in_order_is_chosen_at_start():
    sel = selector()
    d = sel.evaluate([up("a"), up("b"), up("c")])
    assert (d.action, d.source, d.previous) == (Action.SWITCH, "a", None)
    assert sel.evaluate([up("a"), up("b"), up("c")]).action is Action.KEEP


def test_a_lagging_source_is_never_chosen_at_start():
    d = selector().evaluate([up("a", p1=50), up("b"), up("c")])
    assert d.source == "b"


def test_failed_current_is_replaced_immediately_and_demoted():
    sel = selector()
    sel.evaluate([up("a"), up("b"), up("c")])
    d = sel.evaluate([down("a"), up("b"), up("c")])
    assert (d.action, d.source, d.previous, d.delay) == (Action.SWITCH, "b", "a", timedelta(0))
    assert "a failed: timeout" in d.reason
    assert sel.order == ("b", "c", "a")


def test_equally_advanced_source_takes_over_on_an_idle_topic():
    # kaf-relay needs a strictly higher summed end offset, so an idle topic never fails over.
    sel = selector(("a", "b"))
    sel.evaluate([up("a"), up("b")])
    assert sel.evaluate([down("a"), up("b")]).source == "b"


def test_lag_is_per_partition_not_a_sum():
    # The summed end offsets differ by 5 (kaf-relay would stay), but a misses 50 records of
    # t[0] that b has, while b misses only 45 of t[1].
    sel = selector(("a", "b"), offset_lag_threshold=10)
    sel.evaluate([up("a", 100, 100), up("b", 100, 100)])
    d = sel.evaluate([up("a", 100, 100), up("b", 150, 55)])
    assert (d.action, d.source, d.ahead) == (Action.SWITCH, "b", ("b",))
    assert "a 50 behind on t[0] (threshold 10)" in d.reason
    again = sel.evaluate([up("a", 100, 100), up("b", 150, 55)])
    assert again.action is Action.KEEP, "a is no better than b: no flapping back"


def test_a_source_ahead_on_one_partition_but_behind_on_another_is_not_taken_for_it():
    sel = selector(("a", "b", "c"), offset_lag_threshold=10)
    sel.evaluate([up("a"), up("b"), up("c")])
    d = sel.evaluate([up("a", 100, 100), up("b", 300, 0), up("c", 300, 100)])
    assert d.source == "c", "b has the highest sum but lags on t[1]"


def test_lag_within_threshold_keeps_the_current_source():
    sel = selector(("a", "b"), offset_lag_threshold=10)
    sel.evaluate([up("a"), up("b")])
    assert sel.evaluate([up("a", 100, 100), up("b", 110, 100)]).action is Action.KEEP


def test_a_source_missing_a_partition_lags_without_limit():
    sel = selector(("a", "b"))
    d = sel.evaluate([SourceHealth("a", {P0: 100}), up("b")])
    assert d.source == "b"


def test_recovered_source_is_used_again_only_by_the_rules():
    sel = selector(("a", "b"))
    sel.evaluate([up("a"), up("b")])
    sel.evaluate([down("a"), up("b")])
    assert sel.evaluate([up("a"), up("b")]).action is Action.KEEP
    assert sel.current == "b"
    d = sel.evaluate([up("a"), down("b")])
    assert (d.action, d.source) == (Action.SWITCH, "a")


def test_floor_keeps_a_source_behind_the_relay_from_being_chosen():
    sel = selector(("a", "b", "c"))
    sel.evaluate([up("a", 200, 200), up("b", 100, 100), up("c", 195, 200)])
    d = sel.evaluate([down("a"), up("b", 100, 100), up("c", 195, 200)], floor={P0: 200, P1: 200})
    assert d.source == "c"


def test_when_every_source_lags_somewhere_the_least_lagging_is_taken():
    sel = selector(("a", "b", "c"))
    sel.evaluate([up("a"), up("b"), up("c")])
    d = sel.evaluate([down("a"), up("c", 100, 150), up("b", 200, 100)])
    assert d.source == "b", "b is at worst 50 behind (on t[1]), c 100 (on t[0])"


def test_no_healthy_source_waits_with_backoff_then_gives_up():
    sel = selector(("a", "b"), max_retries=2, rng=FixedRandom(0.5))
    sel.evaluate([up("a"), up("b")])
    d1 = sel.evaluate([down("a"), down("b", "connection refused")])
    assert (d1.action, d1.attempt, d1.delay) == (Action.WAIT, 1, 2 * S)
    assert "b: connection refused" in d1.reason
    d2 = sel.evaluate([down("a"), down("b")])
    assert (d2.action, d2.attempt, d2.delay) == (Action.WAIT, 2, 4 * S)
    d3 = sel.evaluate([down("a"), down("b")])
    assert d3.terminal
    assert "gave up after 3 failed attempts (max_retries = 2)" in d3.reason


def test_forever_never_gives_up():
    sel = selector(("a",), max_retries=-1)
    for _ in range(50):
        assert sel.evaluate([down("a")]).action is Action.WAIT


def test_working_source_resets_the_attempt_count():
    sel = selector(("a", "b"), max_retries=1)
    sel.evaluate([up("a"), up("b")])
    assert sel.failed("a", "fetch error").source == "b"
    sel.working()
    sel.evaluate([up("a"), up("b")])
    assert sel.failed("b", "fetch error").source == "a"
    sel.evaluate([up("a"), up("b")])
    d = sel.failed("a", "fetch error")
    assert d.terminal, "two failures in a row without records in between"


def test_a_failure_stands_until_the_next_health_check():
    sel = selector(("a", "b"))
    sel.evaluate([up("a"), up("b")])
    sel.failed("a", "fetch error")
    d = sel.failed("b", "fetch error")
    assert (d.action, d.source) == (Action.WAIT, None)


def test_repeated_failures_between_sources_back_off():
    sel = selector(("a", "b"), rng=FixedRandom(0.5))
    sel.evaluate([up("a"), up("b")])
    first = sel.failed("a", "fetch error")
    sel.evaluate([up("a"), up("b")])
    second = sel.failed("b", "fetch error")
    assert first.delay == timedelta(0)
    assert (second.source, second.delay, second.attempt) == ("a", 2 * S, 2)


def test_a_source_missing_from_the_health_check_counts_as_failed():
    sel = selector(("a", "b"))
    sel.evaluate([up("a"), up("b")])
    d = sel.evaluate([up("b")])
    assert (d.source, d.previous) == ("b", "a")
    assert "no health result" in d.reason


def test_randomize_initial_is_seeded():
    orders = {selector(randomize_initial=True, rng=random.Random(s)).order for s in range(20)}
    assert len(orders) > 1
    assert (
        selector(randomize_initial=True, rng=random.Random(1)).order
        == selector(randomize_initial=True, rng=random.Random(1)).order
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sources": []}, "at least one source"),
        ({"sources": ["a", "a"]}, "listed twice"),
        ({"offset_lag_threshold": -1}, "offset_lag_threshold"),
        ({"max_retries": -2}, "max_retries"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    sources = kwargs.pop("sources", ["a"])
    with pytest.raises(ValueError, match=message):
        selector(sources, **kwargs)


def test_decision_renders_for_logs():
    sel = selector(("a", "b"), rng=FixedRandom(0.5))
    sel.evaluate([up("a"), up("b")])
    d = sel.evaluate([down("a"), down("b")])
    assert str(d).startswith("wait in 2s: a failed: timeout")
