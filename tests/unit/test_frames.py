"""The hub's end of an execution environment's response pipe: frames cut from the bytes as they arrive."""

from __future__ import annotations

import json
import struct

from hub.runtimes.frames import Responses, result_json
from hub.worker import to_json


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_each_frame_is_delivered_whole_and_in_order_however_the_pipe_cuts_it() -> None:
    got: list[bytes | None] = []
    responses = Responses(got.append)
    data = frame(b"0" + b"[" + b"1," * 5000 + b"1]")
    for at in range(0, len(data), 777):
        assert got == []
        responses.data_received(data[at : at + 777])
    assert got == [data[4:]]
    responses.data_received(frame(b"0null") + frame(b"1{}") + frame(b"0[]")[:3])  # two frames and part of one
    assert got == [data[4:], b"0null", b"1{}"]
    responses.data_received(frame(b"0[]")[3:])
    assert got[-1] == b"0[]"


def test_the_end_of_the_pipe_is_delivered_once_as_none() -> None:
    got: list[bytes | None] = []
    responses = Responses(got.append)
    responses.data_received(frame(b"0null"))
    responses.eof_received()
    responses.connection_lost(None)
    assert got == [b"0null", None]
    assert responses.ended


def test_a_result_reads_back_as_pythons_json_reads_what_the_worker_wrote() -> None:
    for value in [None, {"a": [1, 2.5, True]}, float("nan"), float("inf"), 10**40, "\ud800", "é", [], -0.0]:
        text = to_json(value)
        assert text == json.dumps(value)
        assert repr(result_json(text.encode())) == repr(json.loads(text))
