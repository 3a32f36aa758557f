"""Client profiles (pure) and the helpers against the real local broker."""

from __future__ import annotations

import time

import pytest

from spillwatch.kafka import (
    consumer_config,
    create_topics,
    faust_broker_settings,
    make_consumer,
    make_producer,
    producer_config,
    profile,
    topic_partitions,
    wait_for_broker,
)
from spillwatch.settings import Settings
from tests.helpers import read_to_end


def _settings(profile: str) -> Settings:
    return Settings(kafka={"bootstrap": "10.0.0.1:9092,10.0.0.2:9092", "profile": profile})


def test_local_profile_matches_broker_quirks() -> None:
    s = _settings("local")
    p = producer_config(s)
    assert p["enable_idempotence"] is False and p["acks"] == 1 and p["linger_ms"] == 5
    assert p["bootstrap_servers"] == ["10.0.0.1:9092", "10.0.0.2:9092"]
    assert p["max_request_size"] >= s.producer.max_frame_bytes
    c = consumer_config(s, "g")
    assert c["session_timeout_ms"] == 6000 and c["heartbeat_interval_ms"] == 1000
    f = faust_broker_settings(s)
    assert f["broker"] == "kafka://10.0.0.1:9092;10.0.0.2:9092"
    assert f["broker_session_timeout"] == 6 and f["broker_heartbeat_interval"] == 1
    assert f["broker_rebalance_timeout"] == 10 and f["broker_max_poll_interval"] == 300
    assert f["topic_replication_factor"] == 1 and f["producer_max_batch_size"] == 1
    assert "producer_max_batch_size" not in faust_broker_settings(s, safe_offsets=False)


def test_apache_profile_is_idempotent_with_normal_timeouts() -> None:
    s = _settings("apache")
    p = producer_config(s)
    assert p["enable_idempotence"] is True and p["acks"] == "all"
    assert consumer_config(s, "g")["session_timeout_ms"] >= 30_000
    f = faust_broker_settings(s)
    assert f["producer_acks"] == -1 and "producer_max_batch_size" not in f


def test_a_backlogged_worker_never_stops_fetching_long_enough_to_leave_its_group() -> None:
    """The Kafka client leaves the group when the app fetches nothing for the max poll interval.
    Faust stops fetching at 80 % of a stream buffer and fetches again only once the agent has
    emptied it, and it does not fetch while it pushes one poll's records into a full buffer. With
    a 4096 buffer, unbounded polls and 10 s, backlogged classifiers left their group and stalled
    for good (`bench pipeline`: nothing classified for 120 s after a 30 s run). Both pauses must fit
    in the interval at a crawling worker's rate (10 frames/s), on both broker profiles."""
    from processors.app import _faust_kwargs

    for name in ("local", "apache"):
        s = _settings(name)
        cls = _faust_kwargs(s, "classifier", None)
        interval = cls["broker_max_poll_interval"]
        assert cls["stream_buffer_maxsize"] == s.worker.stream_buffer
        assert cls["stream_buffer_maxsize"] * 0.8 / 10.0 < interval
        assert cls["broker_max_poll_records"] / 10.0 < interval / 10
        agg = _faust_kwargs(s, "aggregator", None)
        assert 4096 * 0.8 / 100.0 < interval and agg["broker_max_poll_records"] / 100.0 < interval / 10
    assert profile(_settings("local")).max_poll_interval_s == 10  # kafka-python consumers: their JoinGroup waits this long


def test_crc32c_is_installed() -> None:
    # Without it kafka-python computes CRC32C in pure Python (7-9 MB/s on this broker).
    import crc32c  # noqa: F401


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_produce_consume_roundtrip(stack_settings: Settings) -> None:
    topic = stack_settings.topics.frames
    producer = make_producer(stack_settings)
    try:
        meta = producer.send(topic, key=b"cam-1", value=b"x" * 30_000).get(timeout=10)
        producer.flush()
    finally:
        producer.close()
    assert meta.topic == topic
    recs = read_to_end(stack_settings, topic)
    assert [(r.key, len(r.value)) for r in recs] == [(b"cam-1", 30_000)]


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_create_topics_idempotent_with_partitions(stack_settings: Settings) -> None:
    # the fixture already created them: a second call reports them as existing
    result = create_topics(stack_settings, partitions=4)
    assert set(result) == set(stack_settings.topics.all())
    assert set(result.values()) == {"exists"}
    assert topic_partitions(stack_settings, stack_settings.topics.frames) == 4
    assert topic_partitions(stack_settings, stack_settings.topics.classifications) == 4
    assert topic_partitions(stack_settings, stack_settings.topics.spill_alerts) == 1
    assert topic_partitions(stack_settings, "no-such-topic-xyz") == 0


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_group_consumer_gets_assignment_quickly(stack_settings: Settings) -> None:
    topic = stack_settings.topics.classifications
    producer = make_producer(stack_settings)
    for i in range(8):
        producer.send(topic, key=f"cam-{i}".encode(), value=b"%d" % i)
    producer.flush()
    producer.close()
    consumer = make_consumer(stack_settings, topic, group_id="g-" + topic)
    try:
        t0 = time.monotonic()
        got: list[bytes] = []
        while len(got) < 8 and time.monotonic() - t0 < 20:
            for recs in consumer.poll(timeout_ms=200).values():
                got.extend(r.value for r in recs)
        elapsed = time.monotonic() - t0
    finally:
        consumer.close()
    assert sorted(got) == sorted(b"%d" % i for i in range(8))
    # with the default 45 s session the broker holds JoinGroup ~22 s; the local profile ~3 s
    assert elapsed < 12, elapsed


@pytest.mark.integration
def test_redis_ping(redis_client: object) -> None:
    assert redis_client.ping()  # type: ignore[attr-defined]


@pytest.mark.timeout(30)  # guards against a hang; how long it waited is not asserted (no clock in unit tests)
def test_wait_for_broker_times_out_on_closed_port() -> None:
    from devstack.stack import free_port

    with pytest.raises(TimeoutError):
        wait_for_broker(f"127.0.0.1:{free_port()}", timeout=1.0)
