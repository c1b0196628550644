from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.eventbus.cloudevents import CloudEvent
from kafkaops.eventbus.paths import (
    JqError,
    ParameterError,
    PathError,
    apply_parameters,
    compile_jq,
    compile_path,
    construct_payload,
    format_number,
    get,
    parse_go_bool,
    parse_go_float,
    resolve_source,
    set_path,
)
from kafkaops.eventbus.spec import Parameter, ParameterSource

# The document gjson's README and sjson's tests use for their path examples.
EXAMPLE = json.loads("""{
  "name": {"first": "Tom", "last": "Anderson"},
  "age": 37,
  "children": ["Sara", "Alex", "Jack"],
  "fav.movie": "Deer Hunter",
  "friends": [
    {"first": "Dale", "last": "Murphy", "age": 44, "nets": ["ig", "fb", "tw"]},
    {"first": "Roger", "last": "Craig", "age": 68, "nets": ["fb", "tw"]},
    {"first": "Jane", "last": "Murphy", "age": 47, "nets": ["ig", "tw"]}
  ]
}""")


# --------------------------------------------------------------------------- gjson


@pytest.mark.parametrize(
    ("path", "expected"),
    [  # gjson README path-syntax vectors
        ("name.last", "Anderson"),
        ("age", 37),
        ("children", ["Sara", "Alex", "Jack"]),
        ("children.#", 3),
        ("children.1", "Alex"),
        ("child*.2", "Jack"),
        ("c?ildren.0", "Sara"),
        ("fav\\.movie", "Deer Hunter"),
        ("friends.#.first", ["Dale", "Roger", "Jane"]),
        ("friends.1.last", "Craig"),
        ("friends.#.nets.#", [3, 2, 2]),
    ],
)
def test_gjson_readme_vectors(path, expected):
    found = get(EXAMPLE, path)
    assert found.exists
    assert found.value == expected


@pytest.mark.parametrize("path", ["name.middle", "children.3", "children.x", "age.x", "#"])
def test_missing_paths_do_not_exist(path):
    found = get(EXAMPLE, path)
    assert not found.exists
    assert found.string() == ""
    assert found.raw() == ""


def test_count_then_key_keeps_only_what_exists():
    assert get(EXAMPLE, "friends.#.missing").value == []
    assert get({"l": [{"a": 1}, {}, {"a": 3}]}, "l.#.a").value == [1, 3]


def test_numeric_key_reads_an_object_key_too():
    assert get({"1": "one"}, "1").value == "one"
    assert get({"a": {"b.c": 1}}, "a.b\\.c").value == 1
    assert get({"#": 5}, "\\#").value == 5


@pytest.mark.parametrize(
    ("value", "text", "kind"),
    [
        (1.0, "1", "Number"),
        (1000.0, "1000", "Number"),
        (1.5e-07, "0.00000015", "Number"),
        (1e21, "1000000000000000000000", "Number"),
        (12345678901234567890, "12345678901234567890", "Number"),
        (-2.5, "-2.5", "Number"),
        (True, "true", "True"),
        (False, "false", "False"),
        (None, "", "Null"),
        ("text", "text", "String"),
        ({"a": [1, "é"]}, '{"a":[1,"é"]}', "JSON"),
    ],
)
def test_result_string_follows_gjson(value, text, kind):
    found = get({"v": value}, "v")
    assert found.string() == text
    assert found.kind == kind


@pytest.mark.parametrize(
    ("value", "boolean", "number"),
    [
        ("true", True, 0.0),
        ("TRUE", True, 0.0),
        ("t", True, 0.0),
        ("1", True, 1.0),
        ("0", False, 0.0),
        ("12.5", False, 12.5),
        ("yes", False, 0.0),
        (2, True, 2.0),
        (0, False, 0.0),
        (True, True, 1.0),
        (None, False, 0.0),
        ([1], False, 0.0),
    ],
)
def test_result_bool_and_float_follow_gjson(value, boolean, number):
    found = get({"v": value}, "v")
    assert found.boolean() is boolean
    assert found.number() == number


@pytest.mark.parametrize(
    ("path", "message", "position"),
    [
        ("", "empty path", 1),
        ("a..b", "empty path component", 3),
        ("a.", "path ends with '.'", 2),
        ("a|b", "pipes", 2),
        ('friends.#(last=="Murphy").first', "queries", 9),
        ("@reverse", "modifier '@reverse'", 1),
        ("[name,age]", "multipaths", 1),
        ("!true", "literals", 1),
        ("a\\", "dangling escape", 2),
    ],
)
def test_unsupported_gjson_syntax_fails_at_compile_time(path, message, position):
    with pytest.raises(PathError) as err:
        compile_path(path)
    assert message in err.value.message
    assert err.value.position == position


def test_at_sign_keys_that_are_not_modifiers_are_plain_keys():
    assert get({"@context": {"@vocab": 1}}, "@context.@vocab").value == 1


# --------------------------------------------------------------------------- sjson

FRIENDS = {"friends": ["Andy", "Carol"]}


@pytest.mark.parametrize(
    ("doc", "path", "value", "expected"),
    [  # sjson README and test vectors
        ({"name": {"first": "Janet", "last": "Prichard"}, "age": 47}, "name.last", "Anderson",
         {"name": {"first": "Janet", "last": "Anderson"}, "age": 47}),
        (None, "name", "Tom", {"name": "Tom"}),
        (None, "name.last", "Anderson", {"name": {"last": "Anderson"}}),
        (FRIENDS, "friends.2", "Sara", {"friends": ["Andy", "Carol", "Sara"]}),
        (FRIENDS, "friends.1", "Sara", {"friends": ["Andy", "Sara"]}),
        (FRIENDS, "friends.-1", "Sara", {"friends": ["Andy", "Carol", "Sara"]}),
        (FRIENDS, "friends.4", "Sara", {"friends": ["Andy", "Carol", None, None, "Sara"]}),
        (None, "0", True, [True]),
        (None, "1", True, [None, True]),
        ([1], "2", True, [1, None, True]),
        (None, "b.this.4", 4, {"b": {"this": [None, None, None, None, 4]}}),
        (None, "1.this.4", 4, [None, {"this": [None, None, None, None, 4]}]),
        (None, ":1.this.4", 4, {"1": {"this": [None, None, None, None, 4]}}),
        (None, "\\:1.this.4", 4, {":1": {"this": [None, None, None, None, 4]}}),
        ({"app.token": "abc"}, "app\\.token", "cde", {"app.token": "cde"}),
        ({"arr": [1]}, "arr.-1", 1, {"arr": [1, 1]}),
        ({"a": 1}, "a.b", 2, {"a": {"b": 2}}),
    ],
)  # fmt: skip
def test_sjson_vectors(doc, path, value, expected):
    before = json.dumps(doc)
    assert set_path(doc, path, value) == expected
    assert json.dumps(doc) == before  # the input is never modified


@pytest.mark.parametrize(
    ("path", "message"), [("a.#(b=1)", "queries"), ("a.*", "'*'"), ("", "empty")]
)
def test_sjson_rejects_what_it_cannot_write(path, message):
    with pytest.raises(PathError, match=message):
        set_path({}, path, 1)


def test_sjson_cannot_put_a_named_key_inside_an_array():
    with pytest.raises(PathError, match="inside an array"):
        set_path({"a": [1]}, "a.b", 2)


_KEYS = st.text(alphabet="abcxyz", min_size=1, max_size=4)


@given(st.lists(_KEYS, min_size=1, max_size=4), st.integers() | st.text(max_size=5) | st.none())
def test_what_is_set_can_be_read_back(keys, value):
    path = ".".join(keys)
    doc = set_path(None, path, value)
    found = get(doc, path)
    assert found.exists
    assert found.value == value


# --------------------------------------------------------------------------- Go scalars


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", 1.0), ("-2.5", -2.5), ("1e3", 1000.0), (".5", 0.5), ("+Inf", math.inf),
     ("infinity", math.inf), ("0x1p-2", 0.25)],
)  # fmt: skip
def test_parse_go_float(text, value):
    assert parse_go_float(text) == value


@pytest.mark.parametrize("text", ["", " 1", "1_000", "1e", "abc", "1,5"])
def test_parse_go_float_rejects_what_go_rejects(text):
    with pytest.raises(ValueError, match="invalid number"):
        parse_go_float(text)


def test_parse_go_bool():
    assert [parse_go_bool(t) for t in ("1", "t", "TRUE", "True", "0", "f", "false")] == [
        True, True, True, True, False, False, False,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="invalid boolean"):
        parse_go_bool("yes")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_format_number_round_trips(x):
    text = format_number(x)
    assert "e" not in text.lower()
    assert float(text) == x


# --------------------------------------------------------------------------- jq


@pytest.mark.parametrize(
    ("program", "value", "expected"),
    [
        (".", {"a": 1}, {"a": 1}),
        (".a.b", {"a": {"b": 2}}, 2),
        (".a.missing", {"a": {}}, None),
        (".a.b.c", {}, None),  # null propagates
        (".list[0]", {"list": [5, 6]}, 5),
        (".list[-1]", {"list": [5, 6]}, 6),
        (".list[7]", {"list": [5, 6]}, None),
        ('."a-b"', {"a-b": 3}, 3),
        ('.["a b"].c', {"a b": {"c": 4}}, 4),
        (".[1]", [7, 8], 8),
        (".a | .b", {"a": {"b": 9}}, 9),
        ("{id: .body.id, name}", {"body": {"id": 1}, "name": "n"}, {"id": 1, "name": "n"}),
        ('{"k-1": .a, nested: {x: .b}}', {"a": 1, "b": 2}, {"k-1": 1, "nested": {"x": 2}}),
        ("(.a)", {"a": 1}, 1),
        (" .a ", {"a": 1}, 1),
    ],
)
def test_jq_selection(program, value, expected):
    assert compile_jq(program).run(value) == (True, expected)


def test_jq_optional_swallows_type_errors():
    assert compile_jq(".a.b?").run({"a": 5}) == (False, None)
    with pytest.raises(JqError, match='Cannot index number with "b"'):
        compile_jq(".a.b").run({"a": 5})
    with pytest.raises(JqError, match="Cannot index object with number"):
        compile_jq(".[0]").run({"a": 5})


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ("a", "expected '.', '{' or '('"),
        (".a[]", "no slices or iteration"),
        (".a[1:2]", "expected ']'"),
        (".a.", "expected a key after '.'"),
        ("{a: 1}", "expected a path"),
        ("{a .b}", "expected ',' or '}'"),
        (".a | map(.b)", "expected '.', '{' or '('"),
        ('."open', "unterminated string"),
        (".a .b", "unexpected text"),
    ],
)
def test_jq_outside_the_subset_fails_with_a_position(program, message):
    with pytest.raises(JqError, match="at position") as err:
        compile_jq(program)
    assert message in str(err.value)


# --------------------------------------------------------------------------- parameters

WHEN = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
EVENT = CloudEvent(
    "id-1",
    "webhook",
    "webhook",
    subject="example",
    time=WHEN,
    data={"body": {"n": 1.0, "s": "x", "o": {"k": [1, 2]}, "nil": None, "ok": True}},
)


def src(**kwargs):
    return ParameterSource.model_validate({"dependencyName": "dep", **kwargs})


def param(dest="", operation="", **kwargs):
    return Parameter.model_validate(
        {"src": {"dependencyName": "dep", **kwargs}, "dest": dest, "operation": operation}
    )


@pytest.mark.parametrize(
    ("key", "text", "kind"),
    [
        ("body.n", "1", "Number"),
        ("body.s", "x", "String"),
        ("body.o", '{"k":[1,2]}', "JSON"),
        ("body.nil", "null", "Null"),
        ("body.ok", "true", "True"),
        ("body.o.k.#", "2", "Number"),
    ],
)
def test_data_key_resolves_like_argo(key, text, kind):
    resolved = resolve_source(src(dataKey=key), {"dep": EVENT})
    assert resolved is not None
    assert (resolved.text, resolved.kind) == (text, kind)


def test_context_key_reads_the_event_context():
    resolved = resolve_source(src(contextKey="time"), {"dep": EVENT})
    assert resolved is not None and resolved.text == "2024-05-06T07:08:09Z"
    resolved = resolve_source(src(contextKey="subject"), {"dep": EVENT})
    assert resolved is not None and resolved.text == "example"


def test_value_is_the_fallback_and_the_default():
    assert resolve_source(src(dataKey="body.nope", value="d"), {"dep": EVENT}).text == "d"
    assert resolve_source(src(value="d"), {"dep": EVENT}).text == "d"
    assert resolve_source(src(dataKey="x", value="d"), {}).text == "d"
    assert resolve_source(src(dataKey="x"), {}) is None  # missing dependency under ||


def test_unresolvable_key_without_default_is_an_error():
    with pytest.raises(ParameterError, match=r"key 'body\.nope' does not exist"):
        resolve_source(src(dataKey="body.nope"), {"dep": EVENT})
    binary = CloudEvent("i", "s", "t", datacontenttype="application/octet-stream", data=b"\x00")
    with pytest.raises(ParameterError, match="unsupported event content type"):
        resolve_source(src(dataKey="a"), {"dep": binary})


def test_no_key_means_the_whole_event():
    resolved = resolve_source(src(), {"dep": EVENT})
    whole = json.loads(resolved.text)
    assert whole["context"]["id"] == "id-1"
    assert whole["data"] == EVENT.data


def test_construct_payload_strings_unless_raw():
    params = [
        param("a", dataKey="body.n"),
        param("b", dataKey="body.n", useRawData=True),
        param("c.d", dataKey="body.o", useRawData=True),
        param("e", dataKey="body.o"),
        param("f", dataKey="body.s", useRawData=True),
    ]
    body = json.loads(construct_payload(params, {"dep": EVENT}))
    assert body == {"a": "1", "b": 1, "c": {"d": {"k": [1, 2]}}, "e": '{"k":[1,2]}', "f": "x"}


def test_construct_payload_empty_dest_is_the_whole_body():
    assert construct_payload([param("", dataKey="body.s")], {"dep": EVENT}) == b"x"
    assert construct_payload([param("a", dataKey="x")], {}) == b""


def test_apply_parameters_overwrites_appends_and_prepends():
    doc = {"topic": "t", "args": ["x"]}
    out = apply_parameters(
        doc,
        [
            param("topic", operation="append", dataKey="body.s"),
            param("name", operation="prepend", value="new"),
            param("args.-1", dataKey="body.n"),
            param("key", operation="overwrite", dataKey="body.s"),
            param("topic", operation="prepend", value="p-"),
        ],
        {"dep": EVENT},
    )
    assert out == {"topic": "p-tx", "args": ["x", "1"], "name": "new", "key": "x"}
    assert doc == {"topic": "t", "args": ["x"]}
