"""What filter patterns see of a record: metadata plus the data, parsed when it is JSON."""

from hub.filtering import FilterSet
from hub.records import data_view

META = {"messageId": "m1", "attributes": {"ApproximateReceiveCount": "1"}}


def test_json_data_is_parsed_under_the_data_key() -> None:
    view = data_view(META, "body", b'{"kind": "order", "total": 12.5}')
    assert view["body"] == {"kind": "order", "total": 12.5}
    assert view["messageId"] == "m1"


def test_plain_string_data_matches_string_patterns_only() -> None:
    view = data_view(META, "body", "hello")
    assert view["body"] == "hello"
    assert FilterSet.compile([{"body": ["hello"]}]).matches(view)
    assert not FilterSet.compile([{"body": {"kind": ["order"]}}]).matches(view)
    assert FilterSet.compile([{"messageId": ["m1"]}]).matches(view)  # metadata patterns still apply


def test_json_data_does_not_match_a_string_pattern() -> None:
    view = data_view(META, "body", '{"kind": "order"}')
    assert not FilterSet.compile([{"body": ['{"kind": "order"}']}]).matches(view)
    assert FilterSet.compile([{"body": {"kind": ["order"]}}]).matches(view)


def test_binary_data_is_left_out_and_metadata_still_filters() -> None:
    view = data_view(META, "data", b"\xff\xfe\x00binary")
    assert "data" not in view
    assert not FilterSet.compile([{"data": {"kind": ["order"]}}]).matches(view)
    assert FilterSet.compile([{"attributes": {"ApproximateReceiveCount": ["1"]}}]).matches(view)
