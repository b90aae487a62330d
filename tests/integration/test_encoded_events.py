"""Records a source gives as their JSON already (`msgspec.Raw`, see hub.records.plain) reach the handler as the
objects they encode, in every runtime, and everything else that takes events gets them decoded."""

from __future__ import annotations

import json

import msgspec
import pytest

from hub.config import FunctionConfig
from hub.functions import Function
from hub.records import plain

RECORDS = [msgspec.Raw(b'{"a":1,"nested":{"l":[1.5,null,true]}}'), msgspec.Raw('{"b":"é \\" \\u2028"}'.encode())]
DECODED = [{"a": 1, "nested": {"l": [1.5, None, True]}}, {"b": 'é " \u2028'}]


def test_plain_decodes_raw_records_and_leaves_other_events_as_they_are() -> None:
    event = {"Records": RECORDS, "window": {"start": "x"}, "state": {}}
    assert plain(event) == {"Records": DECODED, "window": {"start": "x"}, "state": {}}
    assert event["Records"] is RECORDS  # the event itself is left as it was
    assert json.loads(json.dumps(plain(event)))["Records"] == DECODED  # what destinations do with it
    other = {"Records": [{"a": 1}], "n": []}
    assert plain(other) is other
    assert plain(["x"]) == ["x"] and plain(None) is None


@pytest.mark.parametrize("runtime", ["python", "in-process"])
async def test_the_handler_gets_the_records_as_objects(runtime: str) -> None:
    fn = Function(
        "echo",
        FunctionConfig(runtime=runtime, handler="functions.testing.returns_its_event", timeout=10),
        region="us-east-1",
        account_id="000000000000",
    )
    await fn.start()
    try:
        result = await fn.invoke({"Records": RECORDS, "isFinalInvokeForWindow": False})
    finally:
        await fn.close()
    assert result.ok, result.payload
    assert result.payload == {"Records": DECODED, "isFinalInvokeForWindow": False}
