"""The EventBridge pattern matcher (hub/filtering.py): each operator, validation, FilterSet, and the fast
closures checked against the literal event-ruler matcher on random patterns and events."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from hub.filtering import FilterSet, Pattern, PatternError, compile_pattern
from hub.filtering import _Fallback as Fallback
from hub.filtering import _slow_match as slow_match


def match(pattern: Any, event: Any) -> bool:
    return compile_pattern(pattern).matches(event)


def error(pattern: Any) -> str:
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern)
    return str(caught.value)


# ---- exact values ------------------------------------------------------------------------------------------


def test_exact_strings_match_character_for_character() -> None:
    assert match({"source": ["aws.ec2", "aws.s3"]}, {"source": "aws.s3"})
    assert not match({"source": ["aws.ec2"]}, {"source": "AWS.EC2"})
    assert not match({"source": ["aws.ec2"]}, {"source": "aws.ec2 "})
    assert not match({"source": ["aws.ec2"]}, {"other": "aws.ec2"})


def test_numbers_compare_by_value_but_never_equal_strings_or_booleans() -> None:
    assert match({"n": [300]}, {"n": 300.0})
    assert match({"n": [3.0e2]}, {"n": 300})
    assert not match({"n": [300]}, {"n": "300"})
    assert not match({"n": ["300"]}, {"n": 300})
    assert not match({"n": [1]}, {"n": True})
    assert not match({"n": [True]}, {"n": 1})
    assert not match({"n": [0]}, {"n": False})


def test_numbers_beyond_the_numeric_range_compare_as_ints_or_floats() -> None:
    account = 123456789012
    assert match({"account": [account]}, {"account": account})
    assert not match({"account": [account]}, {"account": float(account)})  # AWS compares the text here


def test_booleans_null_and_empty_string() -> None:
    assert match({"b": [False]}, {"b": False})
    assert not match({"b": [False]}, {"b": True})
    assert match({"v": [None]}, {"v": None})
    assert not match({"v": [None]}, {"v": "null"})
    assert not match({"v": [None]}, {})
    assert match({"v": [""]}, {"v": ""})
    assert not match({"v": [""]}, {"v": None})


def test_an_array_in_the_event_matches_when_any_element_does() -> None:
    assert match({"r": ["b", "z"]}, {"r": ["a", "b"]})
    assert not match({"r": ["z"]}, {"r": ["a", "b"]})
    assert match({"r": ["b"]}, {"r": [["a"], ["b"]]})
    assert not match({"r": [None]}, {"r": []})


def test_arrays_of_objects_match_element_by_element() -> None:
    people = {"people": [{"first": "John", "last": "Doe"}, {"first": "Anna", "last": "Smith"}]}
    assert match({"people": {"first": ["Anna"]}}, people)
    assert match({"people": {"first": ["Anna"], "last": ["Smith"]}}, people)
    assert not match({"people": {"first": ["Anna"], "last": ["Doe"]}}, people)  # two different elements
    nested = {"a": [[{"b": 1, "c": 2}], [{"b": 3, "c": 4}]]}
    assert match({"a": {"b": [3], "c": [4]}}, nested)
    assert not match({"a": {"b": [1], "c": [4]}}, nested)


def test_nested_objects_and_key_case() -> None:
    event = {"detail": {"state": {"name": "running"}}, "Detail": "x"}
    assert match({"detail": {"state": {"name": ["running"]}}}, event)
    assert not match({"detail": {"state": ["running"]}}, event)  # an object is not a value
    assert not match({"detail": {"state": {"name": {"x": ["running"]}}}}, event)
    assert not match({"DETAIL": {"state": {"name": ["running"]}}}, event)


def test_dots_in_keys_join_like_nesting_on_both_sides() -> None:
    assert match({"a.b": ["x"]}, {"a": {"b": "x"}})
    assert match({"a": {"b": ["x"]}}, {"a.b": "x"})
    assert match({"a": {"b": ["x"], "c": ["y"]}}, {"a": {"b": "x"}, "a.c": "y"})
    assert match({"a": {"b": {"c": ["x"]}}}, {"a": {"b.c": "x"}})
    assert not match({"a": {"b": ["x"]}}, {"a.b": {"b": "x"}})


def test_an_event_that_is_not_an_object_matches_nothing() -> None:
    assert not match({"a": [{"exists": False}]}, ["a"])
    assert not match({"a": ["x"]}, "x")
    assert not match({"a": ["x"]}, None)


def test_a_string_that_is_an_ip_address_matches_the_address_however_written() -> None:
    assert match({"ip": ["2001:db8::1"]}, {"ip": "2001:0db8:0000:0000:0000:0000:0000:0001"})
    assert match({"ip": ["10.0.0.1"]}, {"ip": "::ffff:a00:1"})
    assert not match({"ip": ["10.0.0.1"]}, {"ip": "10.0.0.2"})
    assert match({"ip": [{"exactly": "10.0.0.1"}]}, {"ip": "10.0.0.1"})
    assert not match({"ip": [{"exactly": "10.0.0.1"}]}, {"ip": "::ffff:a00:1"})


# ---- string operators --------------------------------------------------------------------------------------


def test_prefix_and_suffix_apply_to_strings_only() -> None:
    assert match({"t": [{"prefix": "2024-"}]}, {"t": "2024-01-02"})
    assert not match({"t": [{"prefix": "2024-"}]}, {"t": "x2024-"})
    assert match({"t": [{"prefix": ""}]}, {"t": "anything"})
    assert not match({"t": [{"prefix": "1"}]}, {"t": 123})
    assert match({"f": [{"suffix": ".png"}]}, {"f": "a.png"})
    assert not match({"f": [{"suffix": ".png"}]}, {"f": "a.PNG"})
    assert not match({"f": [{"suffix": ""}]}, {"f": None})


def test_prefix_and_suffix_ignoring_case() -> None:
    assert match({"s": [{"prefix": {"equals-ignore-case": "EventB"}}]}, {"s": "eVENTbridge"})
    assert not match({"s": [{"prefix": {"equals-ignore-case": "EventB"}}]}, {"s": "Even"})
    assert match({"f": [{"suffix": {"equals-ignore-case": ".png"}}]}, {"f": "IMAGE.PnG"})
    assert not match({"f": [{"suffix": {"equals-ignore-case": ".png"}}]}, {"f": "image.jpg"})
    assert match({"f": [{"suffix": {"equals-ignore-case": "straße"}}]}, {"f": "HAUPTSTRASSE"})


def test_equals_ignore_case() -> None:
    assert match({"d": [{"equals-ignore-case": "ec2 instance"}]}, {"d": "EC2 Instance"})
    assert not match({"d": [{"equals-ignore-case": "ec2"}]}, {"d": "ec2 "})
    assert not match({"d": [{"equals-ignore-case": "ec2"}]}, {"d": ["x", 2]})
    assert match({"d": [{"equals-ignore-case": ""}]}, {"d": ""})
    # each pattern character matches its lower or upper case (as Java folds it); the event is not folded
    assert match({"d": [{"equals-ignore-case": "ß"}]}, {"d": "SS"})
    assert match({"d": [{"equals-ignore-case": "Éte"}]}, {"d": "éTE"})
    assert not match({"d": [{"equals-ignore-case": "k"}]}, {"d": "\u212a"})  # KELVIN SIGN folds to k, but no


def test_wildcards() -> None:
    assert match({"f": [{"wildcard": "*.png"}]}, {"f": "dir/a.png"})
    assert match({"f": [{"wildcard": "/Users/*/doc.txt"}]}, {"f": "/Users/me/a/b/doc.txt"})
    assert not match({"f": [{"wildcard": "/Users/*/doc.txt"}]}, {"f": "/Users/me/doc.txt.bak"})
    assert match({"f": [{"wildcard": "a*b*c"}]}, {"f": "abc"})
    assert not match({"f": [{"wildcard": "a*a"}]}, {"f": "a"})
    assert match({"f": [{"wildcard": "*"}]}, {"f": ""})
    assert match({"f": [{"wildcard": ""}]}, {"f": ""})
    assert not match({"f": [{"wildcard": ""}]}, {"f": "x"})
    assert not match({"f": [{"wildcard": "*"}]}, {"f": 1})


def test_wildcard_escapes() -> None:
    assert match({"f": [{"wildcard": "a\\*b"}]}, {"f": "a*b"})
    assert not match({"f": [{"wildcard": "a\\*b"}]}, {"f": "axb"})
    assert match({"f": [{"wildcard": "a\\\\*"}]}, {"f": "a\\anything"})
    assert "invalid escape" in error({"f": [{"wildcard": "a\\b"}]})
    assert "invalid escape" in error({"f": [{"wildcard": "a\\"}]})
    assert "consecutive wildcard" in error({"f": [{"wildcard": "a**"}]})
    assert match({"f": [{"wildcard": "\\**"}]}, {"f": "*x"})  # an escaped star, then a wildcard


def test_wildcard_complexity_is_limited_as_aws_limits_it() -> None:
    assert match({"arn": [{"wildcard": "arn:aws:events:*:*:event-bus/*"}]}, {"arn": "arn:aws:events:a:1:event-bus/b"})
    assert "too complex" in error({"arn": [{"wildcard": "*:*:*:*:*:event-bus/*"}]})
    three = [{"wildcard": f"*:stack/{name}/*"} for name in ("Shared", "Tracker", "Driver")]
    compile_pattern({"id": three})  # AWS accepts three of these ...
    assert "too complex" in error({"id": [*three, {"wildcard": "*:stack/Worker/*"}]})  # ... and refuses four
    assert "too complex" in error(
        {"$or": [{"id": three}, {"id": [{"wildcard": "*:stack/Worker/*"}], "x": ["y"]}]}
    )  # wildcards of one field add up across $or alternatives


# ---- anything-but ------------------------------------------------------------------------------------------


def test_anything_but_values_and_lists() -> None:
    assert match({"s": [{"anything-but": "init"}]}, {"s": "run"})
    assert not match({"s": [{"anything-but": "init"}]}, {"s": "init"})
    assert match({"s": [{"anything-but": ["a", "b"]}]}, {"s": "c"})
    assert not match({"s": [{"anything-but": ["a", "b"]}]}, {"s": "b"})
    assert match({"n": [{"anything-but": [100, 200]}]}, {"n": 150})
    assert not match({"n": [{"anything-but": [100, 200]}]}, {"n": 200.0})


def test_anything_but_matches_any_present_value_of_another_type_but_not_absence() -> None:
    assert match({"s": [{"anything-but": "init"}]}, {"s": None})
    assert match({"s": [{"anything-but": "init"}]}, {"s": 5})
    assert match({"n": [{"anything-but": 100}]}, {"n": "100"})
    assert match({"n": [{"anything-but": 1}]}, {"n": True})
    assert not match({"s": [{"anything-but": "init"}]}, {})
    assert not match({"s": [{"anything-but": "init"}]}, {"s": {"x": 1}})
    assert match({"s": [{"anything-but": "a"}]}, {"s": ["a", "b"]})  # one element is not "a"
    assert not match({"s": [{"anything-but": "a"}]}, {"s": ["a"]})


def test_anything_but_operators() -> None:
    assert match({"s": [{"anything-but": {"prefix": "init"}}]}, {"s": "post-init"})
    assert not match({"s": [{"anything-but": {"prefix": ["init", "post"]}}]}, {"s": "post-init"})
    assert match({"s": [{"anything-but": {"suffix": ".txt"}}]}, {"s": "a.txt.bak"})
    assert not match({"s": [{"anything-but": {"suffix": [".txt", ".jpg"]}}]}, {"s": "a.jpg"})
    assert match({"s": [{"anything-but": {"equals-ignore-case": "Init"}}]}, {"s": "run"})
    assert not match({"s": [{"anything-but": {"equals-ignore-case": ["x", "init"]}}]}, {"s": "INIT"})
    assert match({"s": [{"anything-but": {"wildcard": "*/lib/*"}}]}, {"s": "a/bin/b"})
    assert not match({"s": [{"anything-but": {"wildcard": ["*/lib/*", "*.so"]}}]}, {"s": "x.so"})
    assert match({"s": [{"anything-but": {"prefix": "init"}}]}, {"s": 12})
    assert match({"s": [{"anything-but": {"prefix": []}}]}, {"s": "anything"})  # event-ruler accepts []


def test_anything_but_validation() -> None:
    assert "anything-but" in error({"s": [{"anything-but": None}]})
    assert "only strings or only numbers" in error({"s": [{"anything-but": ["a", 1]}]})
    assert "only strings or only numbers" in error({"s": [{"anything-but": []}]})
    assert "must be strings or numbers" in error({"s": [{"anything-but": ["a", None]}]})
    assert "empty anything-but prefix" in error({"s": [{"anything-but": {"prefix": ""}}]})
    assert "empty anything-but suffix" in error({"s": [{"anything-but": {"suffix": [""]}}]})
    assert "must be strings" in error({"s": [{"anything-but": {"prefix": 123}}]})
    assert "must be strings" in error({"s": [{"anything-but": {"equals-ignore-case": [1]}}]})
    assert "unsupported anything-but pattern 'exists'" in error({"s": [{"anything-but": {"exists": True}}]})
    assert "string or an array" in error({"s": [{"anything-but": {"prefix": {"equals-ignore-case": "x"}}}]})
    assert "out of range" in error({"s": [{"anything-but": 1e10}]})


# ---- numeric -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "inside", "outside"),
    [
        (["=", 5], [5, 5.0], [4.999, 6]),
        (["<", 5], [4.99, -5e9], [5, 6, -5e9 - 1]),
        (["<=", 5], [5, -1], [5.001]),
        ([">", 5], [5.5, 5e9], [5, 4, 5e9 + 1]),
        ([">=", 5], [5, 6], [4.9]),
        ([">", 0, "<=", 5], [0.1, 5], [0, 5.1]),
        ([">=", 0, "<", 5], [0, 4.9], [-0.1, 5]),
        ([">", -1.5, "<", 1.5], [-1.4, 0, 1.4], [-1.5, 1.5]),
    ],
)
def test_numeric(expression: list[Any], inside: list[float], outside: list[float]) -> None:
    compiled = compile_pattern({"n": [{"numeric": expression}]})
    for value in inside:
        assert compiled.matches({"n": value}), value
    for value in outside:
        assert not compiled.matches({"n": value}), value


def test_numeric_only_matches_numbers() -> None:
    compiled = compile_pattern({"n": [{"numeric": [">", 0]}]})
    assert not compiled.matches({"n": "5"})
    assert not compiled.matches({"n": True})
    assert not compiled.matches({"n": None})
    assert not compiled.matches({})
    assert compiled.matches({"n": [-1, 3]})


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (10, "must be an array"),
        ([], "must start with an operator"),
        ([5, ">"], "must start with an operator"),
        (["!=", 5], "unrecognized numeric operator '!='"),
        ([">"], "value of > must be a number"),
        ([">", "5"], "value of > must be a number"),
        (["=", True], "value of = must be a number"),
        (["=", 5, "<", 6], "too many elements"),
        (["<", 5, ">", 1], "too many elements"),
        ([">", 0, ">", 0], "bad numeric range operator '>'"),
        ([">", 0, "<"], "value of < must be a number"),
        ([">", 0, "<", 5, 6], "too many terms"),
        ([">", 5, "<", 5], "bottom must be less than top"),
        ([">=", 6, "<=", 5], "bottom must be less than top"),
        ([">", 5e9 + 1], "out of range"),
        (["<", -1e10], "out of range"),
        (["=", 0.1234567], "too many decimals"),
    ],
)
def test_numeric_validation(expression: Any, message: str) -> None:
    text = error({"detail": {"price": [{"numeric": expression}]}})
    assert text.startswith("detail.price[0].numeric")
    assert message in text


def test_numeric_operators_are_case_sensitive() -> None:
    assert "unrecognized match type 'NUMERIC'" in error({"n": [{"NUMERIC": [">", 1]}]})


# ---- exists ------------------------------------------------------------------------------------------------


def test_exists_true_needs_a_leaf_value() -> None:
    assert match({"a": [{"exists": True}]}, {"a": None})
    assert match({"a": [{"exists": True}]}, {"a": [1]})
    assert not match({"a": [{"exists": True}]}, {"a": []})
    assert not match({"a": [{"exists": True}]}, {"a": {"b": 1}})
    assert not match({"a": [{"exists": True}]}, {})


def test_exists_false_matches_absence() -> None:
    assert match({"a": [{"exists": False}]}, {})
    assert match({"a": [{"exists": False}]}, {"a": []})
    assert match({"a": [{"exists": False}]}, {"a": {"b": 1}})  # not a leaf
    assert not match({"a": [{"exists": False}]}, {"a": None})
    assert match({"x": {"y": {"z": [{"exists": False}]}}}, {"x": "string"})
    assert match({"a": [{"exists": False}, "v"]}, {"a": "v"})  # values of a field are ORed
    assert not match({"a": [{"exists": False}, "v"]}, {"a": "w"})


def test_exists_false_below_an_array_follows_event_ruler() -> None:
    event = {"a": [{"b": 1, "c": 3}, {"c": 2}]}
    # event-ruler checks fields in name order: a.b's absence is checked before a.c picks an element, so the
    # a.b of element 0 counts ...
    assert not match({"a": {"b": [{"exists": False}], "c": [2]}}, event)
    # ... while a.z is checked after a.c chose element 1, where it is absent
    assert match({"a": {"z": [{"exists": False}], "c": [2]}}, {"a": [{"z": 1, "c": 3}, {"c": 2}]})
    assert not match({"a": {"b": [{"exists": False}]}}, event)
    assert match({"a": {"d": [{"exists": False}]}}, event)


def test_exists_must_be_a_boolean() -> None:
    assert "either true or false" in error({"a": [{"exists": "yes"}]})
    assert "unrecognized match type 'EXISTS'" in error({"a": [{"EXISTS": True}]})


# ---- cidr --------------------------------------------------------------------------------------------------


def test_cidr() -> None:
    v4 = compile_pattern({"ip": [{"cidr": "10.0.0.0/24"}]})
    assert v4.matches({"ip": "10.0.0.255"})
    assert not v4.matches({"ip": "10.0.1.0"})
    assert not v4.matches({"ip": "10.0.0.256"})
    assert not v4.matches({"ip": 10})
    assert v4.matches({"ip": "::ffff:10.0.0.7"}) is False  # dotted IPv6 is no address to event-ruler
    assert v4.matches({"ip": "::ffff:a00:7"})  # an IPv4-mapped address is IPv4
    v6 = compile_pattern({"ip": [{"cidr": "2001:db8:1234:1a00::/64"}]})
    assert v6.matches({"ip": "2001:0db8:1234:1a00:0000:0000:0000:0001"})
    assert not v6.matches({"ip": "2001:db8:1234:1a01::"})
    assert not v6.matches({"ip": "10.0.0.1"})


def test_cidr_starts_at_the_address_as_written() -> None:
    block = compile_pattern({"ip": [{"cidr": "10.0.0.5/24"}]})  # as event-ruler: host bits are kept
    assert block.matches({"ip": "10.0.0.5"})
    assert block.matches({"ip": "10.0.0.255"})
    assert not block.matches({"ip": "10.0.0.4"})


@pytest.mark.parametrize(
    ("cidr", "message"),
    [
        ("bad-filter", "one '/' is required"),
        ("10.0.0.0", "one '/' is required"),
        ("1/2/3", "one '/' is required"),
        ("10.0.0.0/x", "must be an integer"),
        ("10.0.0.0/-1", "must not be negative"),
        ("10.0.0.0/32", "IPv4 mask bits must be < 32"),
        ("::/128", "IPv6 mask bits must be < 128"),
        ("xx.11.xx/8", "not an IP address"),
        ("10.0.0.256/8", "invalid IP address"),
        ("2001:db8::g/64", "not an IP address"),
    ],
)
def test_cidr_validation(cidr: str, message: str) -> None:
    assert message in error({"ip": [{"cidr": cidr}]})


def test_cidr_must_be_a_string() -> None:
    assert "cidr match pattern must be a string" in error({"ip": [{"cidr": ["10.0.0.0/8"]}]})


# ---- $or ---------------------------------------------------------------------------------------------------


def test_or() -> None:
    pattern = {"source": ["a"], "$or": [{"x": [1]}, {"y": [2], "z": [3]}]}
    assert match(pattern, {"source": "a", "x": 1})
    assert match(pattern, {"source": "a", "y": 2, "z": 3})
    assert not match(pattern, {"source": "a", "y": 2})
    assert not match(pattern, {"source": "b", "x": 1})


def test_nested_and_parallel_or() -> None:
    pattern = {
        "$or": [{"a": [1]}, {"b": [1]}],
        "detail": {"$or": [{"c": [1]}, {"d": [1], "$or": [{"e": [1]}, {"f": [1]}]}]},
    }
    assert match(pattern, {"a": 1, "detail": {"c": 1}})
    assert match(pattern, {"b": 1, "detail": {"d": 1, "f": 1}})
    assert not match(pattern, {"b": 1, "detail": {"d": 1}})
    assert not match(pattern, {"detail": {"c": 1}})


def test_a_path_written_twice_keeps_the_last_value() -> None:
    assert match({"a": ["x"], "$or": [{"a": ["y"]}, {"b": [1]}]}, {"a": "y"})
    assert match({"a": ["x"], "$or": [{"a": ["y"]}, {"b": [1]}]}, {"a": "x", "b": 1})
    assert not match({"a": ["x"], "$or": [{"a": ["y"]}, {"b": [1]}]}, {"a": "x"})
    assert match({"a": {"b": ["1"]}, "a.b": ["2"]}, {"a": {"b": "2"}})
    assert not match({"a": {"b": ["1"]}, "a.b": ["2"]}, {"a": {"b": "1"}})


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ({"$or": {"a": [1]}}, "$or must be an array"),
        ({"$or": [{"a": [1]}]}, "at least two objects"),
        ({"$or": []}, "at least two objects"),
        ({"$or": [{"a": [1]}, "b"]}, "only objects"),
        ({"$or": [{"a": [1]}, {}]}, "empty objects"),
        ({"$or": [{"numeric": [1]}, {"b": [2]}]}, "'numeric' is a reserved word"),
        ({"$or": [{"a": {"prefix": ["x"]}}, {"b": [2]}]}, "'prefix' is a reserved word"),
    ],
)
def test_or_validation(pattern: Any, message: str) -> None:
    assert message in error(pattern)


def test_reserved_words_are_field_names_outside_or() -> None:
    assert match({"a": {"prefix": ["x"]}}, {"a": {"prefix": "x"}})


# ---- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "message"),
    [
        ([1], "(root)", "must be a JSON object"),
        ("[1]", "(root)", "must be a JSON object"),
        ("{", "(root)", "invalid JSON"),
        ('{"a": [NaN]}', "(root)", "invalid JSON"),
        ({}, "(root)", "empty objects"),
        ({"a": {}}, "a", "empty objects"),
        ({"a": "x"}, "a", "must be an object or an array"),
        ({"a": 42}, "a", "must be an object or an array"),
        ({"a": []}, "a", "empty arrays"),
        ({"a": [["x"]]}, "a[0]", "a value must be a string, number"),
        ({"a": [{}]}, "a[0]", "empty match expression"),
        ({"a": [{"prefix": "x", "suffix": "y"}]}, "a[0]", "only one key"),
        ({"a": [{"exists": True, "x": 1}]}, "a[0]", "only one key"),
        ({"a": [{"regex": "x"}]}, "a[0].regex", "unrecognized match type 'regex'"),
        ({"a": [{"prefix": 1}]}, "a[0].prefix", "prefix match pattern must be a string"),
        ({"a": [{"prefix": ["x"]}]}, "a[0].prefix", "prefix match pattern must be a string"),
        ({"a": [{"suffix": None}]}, "a[0].suffix", "suffix match pattern must be a string"),
        ({"a": [{"prefix": {"suffix": "x"}}]}, "a[0].prefix.suffix", "only equals-ignore-case"),
        (
            {"a": [{"prefix": {"equals-ignore-case": 1}}]},
            "a[0].prefix.equals-ignore-case",
            "must be a string",
        ),
        ({"a": [{"equals-ignore-case": ["x"]}]}, "a[0].equals-ignore-case", "must be a string"),
        ({"a": [{"wildcard": 1}]}, "a[0].wildcard", "wildcard match pattern must be a string"),
        ({"a": [{"exactly": 1}]}, "a[0].exactly", "must be a string"),
        ({"detail": {"x": [1, {"numeric": "5"}]}}, "detail.x[1].numeric", "must be an array"),
        ({"d": {"$or": [{"a": [1]}, {"b": {"c": []}}]}}, "d.$or[1].b.c", "empty arrays"),
    ],
)
def test_validation_says_where_and_what(pattern: Any, path: str, message: str) -> None:
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern)
    assert caught.value.path == path
    assert message in caught.value.reason
    assert str(caught.value) == f"{path}: {caught.value.reason}"


def test_json_text_patterns_validate_every_duplicate_key() -> None:
    assert match('{"a": ["x"], "a": ["y"]}', {"a": "y"})
    assert not match('{"a": ["x"], "a": ["y"]}', {"a": "x"})
    assert "must be an object or an array" in error('{"a": 5, "a": ["y"]}')


def test_limits() -> None:
    assert "too long" in error({"a": ["x" * 5000]})
    many = {f"f{i}": [i] for i in range(257)}
    assert "too many fields" in error({"$or": [many, {"x": [1]}]})
    ors = {f"k{i}": {"$or": [{"a": [1]}, {"b": [1]}]} for i in range(11)}
    assert "more than 1024 alternatives" in error(ors)


def test_pattern_keeps_its_source() -> None:
    text = '{"a": ["x"]}'
    compiled = compile_pattern(text)
    assert isinstance(compiled, Pattern)
    assert compiled.source == text
    assert compile_pattern(json.loads(text)).source == {"a": ["x"]}


# ---- FilterSet ---------------------------------------------------------------------------------------------


def test_filter_set_ors_its_patterns() -> None:
    filters = FilterSet.compile([{"a": ["1"]}, '{"b": [{"prefix": "x"}]}'])
    assert len(filters) == 2
    assert filters.matches({"a": "1"})
    assert filters.matches({"b": "xy"})
    assert not filters.matches({"a": "2", "b": "y"})
    assert not filters.matches("not an object")


def test_an_empty_filter_set_matches_everything() -> None:
    filters = FilterSet.compile([])
    assert len(filters) == 0
    assert filters.matches({"anything": 1})
    assert filters.matches({})


def test_filter_set_errors_name_the_filter() -> None:
    with pytest.raises(PatternError) as caught:
        FilterSet.compile([{"a": ["1"]}, {"b": ["2"]}, {"detail": {"price": [{"numeric": [">", "x"]}]}}])
    assert str(caught.value).startswith("filter 2: detail.price[0].numeric[1]: ")
    assert caught.value.index == 2
    with pytest.raises(PatternError):
        FilterSet.compile('{"a": ["1"]}')


# ---- the fast closures against the literal matcher ---------------------------------------------------------

LEAVES: list[Any] = [
    ["x"],
    [1],
    ["x", 2],
    [None],
    [{"exists": True}],
    [{"exists": False}],
    [{"exists": False}, "x"],
    [{"anything-but": "x"}],
    [{"anything-but": [1, 2]}],
    [{"prefix": "x"}],
    [{"numeric": [">", 1]}],
    [{"equals-ignore-case": "X"}],
]
KEYS = ["a", "b", "c"]
VALUES: list[Any] = ["x", "y", "X", 1, 2, 3.0, None, True]


def random_pattern(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    pattern: dict[str, Any] = {}
    for key in rng.sample(KEYS, rng.randint(1, 2)):
        if depth < 2 and rng.random() < 0.4:
            pattern[key] = random_pattern(rng, depth + 1)
        else:
            pattern[key] = rng.choice(LEAVES)
    if depth == 0 and rng.random() < 0.2:
        pattern["$or"] = [random_pattern(rng, 1), random_pattern(rng, 1)]
    return pattern


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 3 and roll < 0.35:
        return {key: random_value(rng, depth + 1) for key in rng.sample(KEYS, rng.randint(0, 3))}
    if depth < 3 and roll < 0.65:  # arrays, mostly of objects: where array consistency and absence get subtle
        return [random_value(rng, depth + 1 if rng.random() < 0.3 else depth) for _ in range(rng.randint(0, 3))]
    return rng.choice(VALUES)


def array_case(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """An object pattern with several fields over an array of small objects: where fields must come from one
    element (array consistency) and where exists:false is decided by event-ruler's order."""
    simple: list[Any] = [["x"], [1], [{"exists": True}], [{"exists": False}], [{"anything-but": "x"}]]
    inner = {key: rng.choice(simple) for key in rng.sample(KEYS, rng.randint(2, 3))}
    pattern: dict[str, Any] = {"a": inner if rng.random() < 0.7 else {"b": inner}}

    def element() -> Any:
        if rng.random() < 0.15:
            return [element() for _ in range(rng.randint(0, 2))]
        return {key: rng.choice(["x", "y", 1]) for key in rng.sample(KEYS, rng.randint(0, 3))}

    elements = [element() for _ in range(rng.randint(0, 3))]
    event = {"a": elements if "b" not in pattern["a"] or rng.random() < 0.3 else {"b": elements}}
    return pattern, event


def test_the_fast_closures_agree_with_the_literal_matcher() -> None:
    rng = random.Random(20240601)
    compared = fallbacks = matched = 0
    for _ in range(600):
        if rng.random() < 0.5:
            pattern, first_event = array_case(rng)
            events = [first_event] + [array_case(rng)[1] for _ in range(24)]
        else:
            pattern = random_pattern(rng)
            events = [{key: random_value(rng) for key in rng.sample(KEYS, rng.randint(0, 3))} for _ in range(25)]
        compiled = compile_pattern(pattern)
        for event in events:
            if rng.random() < 0.1:
                event["a.b"] = rng.choice(VALUES)
            for alternative in compiled._alternatives:
                try:
                    fast = alternative.fast(event)
                except Fallback:
                    fallbacks += 1
                    continue
                compared += 1
                matched += fast
                assert fast == slow_match(alternative, event), (compiled.source, event)
    assert compared > 5000 and matched > 500 and fallbacks > 50
