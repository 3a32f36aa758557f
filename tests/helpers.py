"""Reusable test helpers (real broker, real Redis; no mocks)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from spillwatch.settings import Settings


def consume_all(settings: Settings, topic: str, timeout_s: float = 10.0, min_count: int = 1) -> list[Any]:
    """Read ``topic`` from the beginning (all partitions, no consumer group) with kafka-python.

    Returns the records (``ConsumerRecord``: .key, .value bytes, .headers, .partition, .offset)
    once at least ``min_count`` were read, or whatever arrived when ``timeout_s`` ran out.
    ``min_count=0`` reads until the topic is drained (no new record for 1 s) or the timeout.
    """
    from kafka import TopicPartition

    from spillwatch.kafka import make_consumer

    consumer = make_consumer(settings, [], group_id=None, enable_auto_commit=False)
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        parts = None
        while time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(topic)
            if parts:
                break
            time.sleep(0.1)
        if not parts:
            return out
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200, max_records=500)
            got = [r for recs in batch.values() for r in recs]
            if got:
                out.extend(got)
                last_new = time.monotonic()
            if min_count and len(out) >= min_count:
                break
            if not min_count and time.monotonic() - last_new > 1.0:
                break
        return out
    finally:
        consumer.close()


def wait_until(pred: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.1) -> Any:
    """Poll ``pred`` until it returns something truthy; returns it, or raises AssertionError."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)
