"""The Kafka connector's read-ahead buffer: fetched lists in, records out in order, none lost or repeated."""

from __future__ import annotations

import random

from connectors.kafka.source import Buffer


def test_takes_in_order_across_fetches_of_any_size() -> None:
    rng = random.Random(7)
    for _ in range(500):
        buffer, expected, n = Buffer(), [], 0
        for _ in range(30):
            if rng.random() < 0.5:
                fetched = list(range(n, n + rng.randint(0, 7)))
                n += len(fetched)
                buffer.extend(fetched)
                expected.extend(fetched)
            else:
                limit = rng.randint(1, 9)
                assert buffer.take(limit) == expected[:limit]
                del expected[:limit]
            assert len(buffer) == len(expected)
        assert buffer.take(n + 1) == expected


def test_a_whole_fetch_is_handed_over_without_a_copy() -> None:
    buffer = Buffer()
    fetched = [1, 2, 3]
    buffer.extend(fetched)
    assert buffer.take(10) is fetched
    assert len(buffer) == 0 and buffer.take(10) == []
