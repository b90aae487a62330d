"""Misbehaving handlers the tests use to prove that a function fault is a failed invocation, never a dead hub."""

import asyncio
import threading


def returns_garbage(event, context):
    return {"not json": object()}


_release = threading.Event()


def hangs(event, context):
    _release.wait(5)  # far past any test timeout; returns by itself so no thread outlives the tests for long
    return "late"


async def async_hangs(event, context):
    await asyncio.sleep(3600)


def raises(event, context):
    return {}["missing"]
