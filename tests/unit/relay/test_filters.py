from __future__ import annotations

import json
import textwrap

import pytest
from confluent_kafka import Message

from kafkaops.relay.config import FilterSettings
from kafkaops.relay.filters import (
    ENTRY_POINT_GROUP,
    FilterChain,
    FilterError,
    FilterLoadError,
    build_chain,
    load_filter,
    resolve_factory,
)
from kafkaops.relay.filters_builtin import HeaderMatch, JsonField


def msg(value=None, key=None, headers=None, offset=0):
    return Message(topic="t", partition=2, offset=offset, key=key, value=value, headers=headers)


def allows(path: str, config: dict, record) -> bool:
    return load_filter("f", path, json.dumps(config)).allow(record)


# --- bundled filters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "headers", "expected"),
    [
        ({"name": "env"}, [("env", b"x")], True),
        ({"name": "env"}, [("other", b"x")], False),
        ({"name": "env"}, None, False),
        ({"name": "env", "value": "prod"}, [("env", b"dev"), ("env", b"prod")], True),
        ({"name": "env", "value": "prod"}, [("env", b"dev")], False),
        ({"name": "env", "values": ["a", "b"]}, [("env", b"b")], True),
        ({"name": "env", "value": "prod", "negate": True}, [("env", b"prod")], False),
        ({"name": "env", "negate": True}, [], True),
    ],
)
def test_header_match(config, headers, expected):
    assert allows("header-match", config, msg(b"v", headers=headers)) is expected


@pytest.mark.parametrize(
    ("config", "key", "expected"),
    [
        ({"equals": "user-1"}, b"user-1", True),
        ({"equals": "user-1"}, b"user-10", False),
        ({"prefix": "user-"}, b"user-10", True),
        ({"regex": r"^u\w+-\d$"}, b"user-1", True),
        ({"regex": r"^u\w+-\d$"}, b"user-10", False),
        ({"prefix": "user-"}, None, False),
        ({"prefix": "user-", "negate": True}, None, True),
    ],
)
def test_key_match(config, key, expected):
    assert allows("key-match", config, msg(b"v", key=key)) is expected


@pytest.mark.parametrize(
    ("config", "value", "expected"),
    [
        ({"pattern": "ERROR"}, b"x ERROR y", True),
        ({"pattern": "ERROR"}, b"x error y", False),
        ({"pattern": "ERROR", "ignore_case": True}, b"x error y", True),
        ({"pattern": r"\d{3}"}, b"\xff\x00123", True),
        ({"pattern": "x"}, None, False),
        ({"pattern": "debug", "negate": True}, b"debug line", False),
    ],
)
def test_value_regex(config, value, expected):
    assert allows("value-regex", config, msg(value)) is expected


DOC = json.dumps(
    {"level": "error", "code": 503, "ok": False, "tags": ["a", "b"], "user": {"id": 7}}
).encode()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"field": "level", "op": "eq", "value": "error"}, True),
        ({"field": "level", "op": "ne", "value": "error"}, False),
        ({"field": "code", "op": "ge", "value": 500}, True),
        ({"field": "code", "op": "lt", "value": 500}, False),
        ({"field": "code", "op": "gt", "value": 502.5}, True),
        ({"field": "code", "op": "le", "value": "600"}, False),
        ({"field": "code", "op": "in", "value": [500, 503]}, True),
        ({"field": "ok", "op": "eq", "value": False}, True),
        ({"field": "ok", "op": "eq", "value": 0}, False),
        ({"field": "code", "op": "eq", "value": True}, False),
        ({"field": "tags.1", "op": "eq", "value": "b"}, True),
        ({"field": "tags.5"}, False),
        ({"field": "user.id", "op": "exists"}, True),
        ({"field": "user.name"}, False),
        ({"field": "level", "op": "regex", "value": "^err"}, True),
        ({"field": "code", "op": "regex", "value": "5"}, False),
        ({"field": "level", "op": "eq", "value": "error", "negate": True}, False),
    ],
)
def test_json_field(config, expected):
    assert allows("json-field", config, msg(DOC)) is expected


@pytest.mark.parametrize("value", [b"not json", b"\xff", None, b"[1, 2]", b'"text"'])
def test_json_field_on_values_without_the_field_is_no_match(value):
    assert not allows("json-field", {"field": "level", "op": "exists"}, msg(value))
    assert allows("json-field", {"field": "level", "negate": True}, msg(value))


@pytest.mark.parametrize(
    ("path", "config", "message"),
    [
        ("header-match", {}, "missing option"),
        ("header-match", {"name": "a", "value": "x", "values": ["y"]}, "not both"),
        ("header-match", {"name": "a", "values": []}, "non-empty list"),
        ("header-match", {"name": "a", "value": 3}, "must be strings"),
        ("key-match", {"equals": "a", "prefix": "b"}, "exactly one of"),
        ("key-match", {"regex": "("}, "not a valid regular expression"),
        ("value-regex", {"pattern": "x", "flags": 1}, "unknown option"),
        ("value-regex", {"pattern": "x", "negate": "yes"}, "negate must be true or false"),
        ("value-regex", {"pattern": "x", "ignore_case": 1}, "ignore_case must be"),
        ("json-field", {"field": "a", "op": "like", "value": 1}, "op 'like' is not one of"),
        ("json-field", {"field": "a", "op": "eq"}, "needs a value"),
        ("json-field", {"field": "a", "op": "in", "value": 3}, "needs a list"),
        ("json-field", {"field": "a", "op": "gt", "value": [1]}, "number or string"),
        ("json-field", {"field": "a", "op": "regex", "value": 1}, "string value"),
        ("json-field", {"field": ""}, "must not be empty"),
    ],
)
def test_bad_builtin_configs_name_filter_and_problem(path, config, message):
    with pytest.raises(FilterLoadError, match=message) as err:
        load_filter("my-filter", path, json.dumps(config))
    assert "filter 'my-filter'" in str(err.value)


def test_builtin_config_must_be_a_json_object():
    with pytest.raises(FilterLoadError, match="not a JSON object"):
        load_filter("f", "header-match", "name=env")
    with pytest.raises(FilterLoadError, match="must be a JSON object"):
        load_filter("f", "header-match", "[1]")


# --- loading -------------------------------------------------------------------------------------


def test_dotted_path_loads_a_class():
    assert resolve_factory("kafkaops.relay.filters_builtin:HeaderMatch") is HeaderMatch
    assert resolve_factory("json-field") is JsonField


PLUGIN = textwrap.dedent(
    """
    class DropOdd:
        def __init__(self, config):
            self.modulus = int(config or 2)

        def allow(self, record):
            return record.offset() % self.modulus == 0


    def not_a_filter(config):
        return object()


    NOT_CALLABLE = 3
    """
)


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    (tmp_path / "relay_plugin_example.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_plugin_from_a_module_gets_its_config_string(plugin_module):
    f = load_filter("odd", "relay_plugin_example:DropOdd", "3")
    assert [f.allow(msg(b"v", offset=o)) for o in range(4)] == [True, False, False, True]


def test_plugin_from_an_entry_point(plugin_module):
    dist = plugin_module / "relay_plugin_example-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: relay-plugin-example\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\ndrop-odd = relay_plugin_example:DropOdd\n"
    )
    f = load_filter("odd", "drop-odd", "")
    assert not f.allow(msg(b"v", offset=1))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_such_module_xyz:F", "cannot import 'no_such_module_xyz'"),
        ("relay_plugin_example:Missing", "has no 'Missing'"),
        ("relay_plugin_example:NOT_CALLABLE", "is not callable"),
        ("relay_plugin_example:not_a_filter", "has no allow\\(record\\) method"),
        ("no-such-filter", "no entry point of that name"),
    ],
)
def test_load_errors_name_the_filter_and_path(plugin_module, path, message):
    with pytest.raises(FilterLoadError, match=message) as err:
        load_filter("mine", path, "")
    assert "filter 'mine'" in str(err.value)


def test_a_plugin_rejecting_its_config_is_reported(plugin_module):
    with pytest.raises(FilterLoadError, match="rejected its config: invalid literal"):
        load_filter("odd", "relay_plugin_example:DropOdd", "three")


# --- chain ---------------------------------------------------------------------------------------


class Refuse:
    def __init__(self, offsets):
        self.offsets = offsets

    def allow(self, record):
        return record.offset() not in self.offsets


class Boom:
    def allow(self, record):
        raise KeyError("field")


def test_chain_counts_each_drop_once_for_the_first_filter_that_refused():
    chain = FilterChain([("one", Refuse({1, 2})), ("two", Refuse({2, 3}))])
    results = [chain.rejected_by(msg(b"v", offset=o)) for o in range(5)]
    assert results == [None, "one", "one", "two", None]
    assert chain.filtered == {"one": 2, "two": 1}
    assert chain.ids == ("one", "two")
    assert chain
    assert not FilterChain()


def test_a_filter_that_raises_stops_the_relay_with_the_record_position():
    chain = FilterChain([("boom", Boom())])
    with pytest.raises(FilterError, match=r"filter 'boom' failed on t\[2\] offset 9: KeyError"):
        chain.rejected_by(msg(b"v", offset=9))


def test_build_chain_keeps_config_order_and_skips_disabled():
    specs = {
        "prod": FilterSettings(path="header-match", config={"name": "env", "value": "prod"}),
        "off": FilterSettings(enabled=False, path="no-such-filter"),
        "errors": FilterSettings(path="value-regex", config='{"pattern": "ERR"}'),
    }
    chain = build_chain(specs)
    assert chain.ids == ("prod", "errors")
    assert chain.rejected_by(msg(b"ERR", headers=[("env", b"prod")])) is None
    assert chain.rejected_by(msg(b"ok", headers=[("env", b"prod")])) == "errors"
