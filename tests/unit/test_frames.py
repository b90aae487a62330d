"""The hub's end of an execution environment's response pipe: frames cut from the bytes as they arrive."""

from __future__ import annotations

import json
import struct

from hub.runtimes.frames import Responses, result_json
from hub.worker import to_json


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


async def test_a_frame_is_handed_to_its_call_whole_however_the_pipe_cuts_it() -> None:
    responses = Responses()
    first = responses.expect()
    data = frame(b"0" + b"[" + b"1," * 5000 + b"1]")
    for at in range(0, len(data), 777):
        assert not first.done()
        responses.data_received(data[at : at + 777])
    assert first.result() == data[4:]
    second = responses.expect()
    responses.data_received(frame(b"0null") + frame(b"1{}")[:3])  # a frame, and the start of one nobody awaits
    assert second.result() == b"0null"


async def test_the_end_of_the_pipe_answers_none_now_and_to_every_later_call() -> None:
    responses = Responses()
    waiting = responses.expect()
    responses.eof_received()
    assert waiting.result() is None
    assert responses.expect().result() is None


def test_a_result_reads_back_as_pythons_json_reads_what_the_worker_wrote() -> None:
    for value in [None, {"a": [1, 2.5, True]}, float("nan"), float("inf"), 10**40, "\ud800", "é", [], -0.0]:
        text = to_json(value)
        assert text == json.dumps(value)
        assert repr(result_json(text.encode())) == repr(json.loads(text))
