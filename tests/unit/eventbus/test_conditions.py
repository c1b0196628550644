from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kafkaops.eventbus.conditions import (
    EvaluationError,
    ExpressionError,
    compile_condition,
    compile_expression,
)

DEPS = ["a", "b", "c", "dep-x", "dep_y"]


def subsets(names):
    return [set(c) for n in range(len(names) + 1) for c in itertools.combinations(names, n)]


# --------------------------------------------------------------------------- conditions


@pytest.mark.parametrize("text", [None, "", "   "])
def test_no_condition_means_all_dependencies_anded(text):
    cond = compile_condition(text, ["a", "b", "c"])
    assert cond.dependencies == ("a", "b", "c")
    assert cond.evaluate({"a", "b", "c"})
    assert not cond.evaluate({"a", "b"})


@pytest.mark.parametrize(
    ("text", "true_for", "false_for"),
    [
        ("a", [{"a"}], [set(), {"b"}]),
        ("a && b", [{"a", "b"}], [{"a"}, {"b"}]),
        ("(a && b) || c", [{"c"}, {"a", "b"}], [{"a"}, {"b"}]),
        ("a || b && c", [{"a"}, {"b", "c"}], [{"b"}, {"c"}]),  # && binds tighter
        ("a && (b || c)", [{"a", "b"}, {"a", "c"}], [{"a"}, {"b", "c"}]),
        ("((a))", [{"a"}], [{"b"}]),
    ],
)
def test_condition_truth(text, true_for, false_for):
    cond = compile_condition(text, DEPS)
    for present in true_for:
        assert cond.evaluate(present), present
    for present in false_for:
        assert not cond.evaluate(present), present


def test_names_keep_dashes_and_underscores_and_match_either_spelling():
    cond = compile_condition("dep-x && dep-y", DEPS)
    # 'dep-y' is written with a dash but the dependency is 'dep_y': Argo maps - to _.
    assert cond.dependencies == ("dep-x", "dep_y")
    assert cond.evaluate({"dep-x", "dep_y"})
    assert compile_condition("dep_x", DEPS).dependencies == ("dep-x",)


def test_exact_name_wins_over_normalised_match():
    cond = compile_condition("a-b", ["a-b", "a_b"])
    assert cond.dependencies == ("a-b",)


def test_normalised_name_matching_two_dependencies_is_ambiguous():
    with pytest.raises(ExpressionError, match="ambiguous") as err:
        compile_condition("x && a_b_c", ["x", "a-b-c", "a_b-c"])
    assert err.value.position == 6


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("a &&", "expected a dependency name, got end of text", 5),
        ("a && && b", "expected a dependency name, got '&&'", 6),
        ("(a || b", "expected ')'", 8),
        ("a || b)", "unbalanced ')'", 7),
        ("a b", "expected '&&' or '||', got 'b'", 3),
        ("a & b", "unexpected character '&'", 3),
        ("a && zz", "unknown dependency 'zz' (dependencies: a, b)", 6),
    ],
)
def test_condition_errors_name_the_position(text, message, position):
    with pytest.raises(ExpressionError) as err:
        compile_condition(text, ["a", "b"])
    assert message in err.value.message
    assert err.value.position == position
    assert f"at position {position}" in str(err.value)


def test_a_sensor_without_dependencies_has_no_condition():
    with pytest.raises(ExpressionError, match="at least one dependency"):
        compile_condition("a", [])


@pytest.mark.parametrize(
    ("text", "simple"),
    [
        ("a", True),
        ("a || b", True),
        ("a && b", False),
        ("a || (b && c)", False),
        ("(a || b) && (b || a)", True),
        (None, False),
    ],
)
def test_simple_means_no_event_is_ever_held(text, simple):
    assert compile_condition(text, ["a", "b", "c"] if text else ["a", "b"]).simple is simple


def _expr_strategy():
    leaves = st.sampled_from(["a", "b", "c", "d"]).map(lambda n: (n, n))

    def combine(children):
        pair = st.tuples(children, children, st.sampled_from(["&&", "||"]))
        return pair.map(lambda t: (f"({t[0][0]} {t[2]} {t[1][0]})", (t[2], t[0][1], t[1][1])))

    return st.recursive(leaves, combine, max_leaves=8)


def _truth(tree, present):
    if isinstance(tree, str):
        return tree in present
    op, left, right = tree
    if op == "&&":
        return _truth(left, present) and _truth(right, present)
    return _truth(left, present) or _truth(right, present)


@given(_expr_strategy())
def test_compiled_condition_agrees_with_its_tree_on_every_subset(case):
    text, tree = case
    cond = compile_condition(text, ["a", "b", "c", "d"])
    for present in subsets(["a", "b", "c", "d"]):
        assert cond.evaluate(present) == _truth(tree, present)
    # `simple` is exactly "every named dependency alone satisfies it".
    assert cond.simple == all(_truth(tree, {d}) for d in cond.dependencies)


# --------------------------------------------------------------------------- expressions


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("a == 'x'", {"a": "x"}, True),
        ('a != "x"', {"a": "x"}, False),
        ("n > 3 && n <= 10", {"n": 5}, True),
        ("n >= 5.5", {"n": 5}, False),
        ("1 + 2 * 3 == 7", {}, True),
        ("(1 + 2) * 3", {}, 9.0),
        ("2 ** 3 ** 2", {}, 512.0),
        ("-n + 1", {"n": 3}, -2.0),
        ("10 % 4", {}, 2.0),
        ("!(a == 'x') || b", {"a": "y", "b": False}, True),
        ("name =~ '^bu'", {"name": "build"}, True),
        ("name !~ 'x$'", {"name": "box"}, False),
        ("s + 1", {"s": "v"}, "v1"),
        ("s + 1.5", {"s": "v"}, "v1.5"),
        ("t in ('a', 'b')", {"t": "b"}, True),
        ("n in (1, 2)", {"n": 3}, False),
        ("flag == true", {"flag": True}, True),
        ("flag == 1", {"flag": True}, False),  # no coercion: true is not 1
        ("obj == obj2", {"obj": {"k": [1]}, "obj2": {"k": [1.0]}}, True),
        ("a < b", {"a": "apple", "b": "banana"}, True),
        ("1 / 0", {}, math.inf),
        ("[my field] > 1", {"my field": 2}, True),
    ],
)
def test_expression_values(text, values, expected):
    assert compile_expression(text).evaluate(values) == expected


def test_expression_short_circuits_like_govaluate():
    expr = compile_expression("a == 1 && b > 2")
    assert expr.evaluate({"a": 2, "b": "not a number"}) is False


def test_expression_reports_its_variables():
    assert compile_expression("x > 1 && [y z] =~ 'q' || w in (x, 2)").variables == {
        "x",
        "y z",
        "w",
    }


@pytest.mark.parametrize(
    ("text", "values", "message"),
    [
        ("a && b", {"a": 1, "b": True}, "'&&' needs booleans"),
        ("a > 1", {"a": "x"}, "compares two numbers or two strings"),
        ("a - 1", {"a": "x"}, "'-' needs numbers"),
        ("!a", {"a": 1}, "'!' needs a boolean"),
        ("-a", {"a": "x"}, "'-' needs a number"),
        ("a =~ b", {"a": 1, "b": "x"}, "needs strings"),
        ("a =~ b", {"a": "x", "b": "("}, "bad regular expression"),
        ("missing > 1", {}, "no parameter 'missing'"),
    ],
)
def test_expression_type_errors(text, values, message):
    with pytest.raises(EvaluationError, match=message):
        compile_expression(text).evaluate(values)


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("a >", "expected a value", 4),
        ("a ? 1 : 2", "ternary operator is not supported", 3),
        ("a ?? b", "'??' is not supported", 3),
        ("'open", "unterminated string", 1),
        ("a =~ '('", "bad regular expression", 3),
        ("a =~ 1", "needs a string pattern", 3),
        ("(a > 1", "expected ')'", 7),
        ("a > 1)", "unbalanced ')'", 6),
        ("a in 1", "'in' needs a list", 3),
        ("a $ b", "unexpected character '$'", 3),
        ("[a", "unclosed '['", 1),
        ("   ", "empty expression", 1),
    ],
)
def test_expression_syntax_errors_name_the_position(text, message, position):
    with pytest.raises(ExpressionError) as err:
        compile_expression(text)
    assert message in err.value.message
    assert err.value.position == position


@given(st.integers(-1000, 1000), st.integers(-1000, 1000))
def test_integer_comparisons_match_python(x, y):
    for op in ("<", "<=", ">", ">=", "==", "!="):
        got = compile_expression(f"x {op} y").evaluate({"x": x, "y": y})
        assert got == eval(f"{x} {op} {y}")  # Python itself is the oracle
