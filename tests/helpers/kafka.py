"""Reading topics of the real local broker, and the positive signals that the pipeline has settled.

"Nothing more arrived" is never a sleep: it is read from the broker and Redis. ``read_to_end``
reads a topic up to the end offsets it has now; ``settled_alerts`` waits until the aggregator has
committed every classification and emptied its outbox; ``settled_pages`` waits, in addition, until
alerting has committed every alert and its page queue (pending and in-flight pages) is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spillwatch.settings import Settings
from spillwatch.topic_reader import Received, TopicNotFound, TopicReader
from tests.helpers.waiting import wait_until


def consume_all(settings: Settings, topic: str, timeout_s: float = 10.0, min_count: int = 1) -> list[Received]:
    """Read ``topic`` from the beginning (all partitions, no consumer group).

    Returns the records (``Received``: .key, .value bytes, .headers, .partition, .offset) once at
    least ``min_count`` were read, or whatever arrived when ``timeout_s`` ran out. To assert that a
    topic holds nothing (more), use ``read_to_end``: a positive signal, not an idle wait.
    """
    try:
        reader = TopicReader(settings, [topic], wait_topics_s=timeout_s)
    except TopicNotFound:
        return []
    with reader:
        return reader.read(min_count=min_count, timeout_s=timeout_s)


def read_to_end(settings: Settings, topic: str, timeout_s: float = 15.0) -> list[Received]:
    """Every record ``topic`` holds now: read from the beginning until the reader has reached the
    end offset of each partition (``TopicReader.wait_caught_up``)."""
    with TopicReader(settings, [topic], wait_topics_s=timeout_s) as reader:
        reader.wait_caught_up(timeout_s)
        return reader.snapshot()


class TopicTail(TopicReader):
    """A topic read from the beginning in the foreground: ``poll`` and ``wait_for`` (AssertionError
    on timeout, as a test expects)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(settings, [topic])

    def wait_for(self, pred: Callable[[list[Any]], Any], timeout_s: float = 15.0) -> Any:
        try:
            return super().wait_for(pred, timeout_s)
        except TimeoutError as exc:
            raise AssertionError(str(exc)) from exc


def settled_alerts(settings: Settings, timeout_s: float = 30.0) -> list[Any]:
    """The spill alerts once the pipeline has settled: the aggregator's consumer group has
    committed every classification published so far, its outbox is empty, and the alerts topic is
    read to its end. A positive signal that nothing more (a duplicate, a late page) can arrive from
    what was sent: no "sleep and hope"."""
    import redis

    from spillwatch.events import SpillAlert
    from spillwatch.kafka import group_lag
    from spillwatch.redis_keys import RedisKeys

    t = settings.topics
    group = f"{settings.kafka.topic_prefix}spillwatch-aggregator"
    r = redis.Redis.from_url(settings.redis.url)
    try:
        wait_until(lambda: group_lag(settings, group, t.classifications) == 0, timeout_s, 0.3)
        wait_until(lambda: r.hlen(RedisKeys(settings.redis.key_prefix).agg_outbox) == 0, timeout_s, 0.1)
    finally:
        r.close()
    with TopicReader(settings, [t.spill_alerts]) as reader:
        reader.wait_caught_up(timeout_s)
        return [SpillAlert.from_bytes(rec.value) for rec in reader.snapshot() if rec.value]


def settled_pages(settings: Settings, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Alerting's page records once it has settled: its consumer group has committed every alert
    published so far (each one durably queued or dropped as a duplicate) and its page queue is
    empty (a page being tried stays queued until it is sent or dead-lettered). After this no page
    can follow from the alerts sent so far, except an escalation scheduled for later."""
    import json

    import redis

    from spillwatch.kafka import group_lag
    from spillwatch.redis_keys import RedisKeys

    keys = RedisKeys(settings.redis.key_prefix)
    group = settings.kafka.topic_prefix + settings.alerting.group_id
    r = redis.Redis.from_url(settings.redis.url)
    try:
        wait_until(lambda: group_lag(settings, group, settings.topics.spill_alerts) == 0, timeout_s, 0.3)
        wait_until(lambda: r.zcard(keys.alerting_queue) == 0, timeout_s, 0.1)
        return [json.loads(x) for x in r.lrange(keys.alerting_pages, 0, -1)]
    finally:
        r.close()
