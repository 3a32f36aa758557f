"""Issue 9 items 1-3 with the real broker, Redis and worker processes (tiny real ONNX model).

1. Oversized records (1.7 MB, 20 MB frames; 1.7 MB and 100 KB classifications) are dead-lettered
   bounded (prefix + size + sha256 + coordinates) and the stage goes on; a record that fails the
   same way ``limits.record_attempts`` times (a Redis WRONGTYPE reply) is dead-lettered, not retried
   forever; a worker stopped (SIGTERM) while its batch is held commits nothing of that batch.
2. A forged frame from 2100 with a huge sequence number, and a producer whose clock is ahead, are
   dead-lettered; a real spill on the same camera afterwards is confirmed exactly once.
3. Image bombs (a 30000x30000 PNG, a JPEG claiming 30000x30000, 5000 scans) are refused from their
   headers: the worker's peak memory stays put.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack import hostile
from spillwatch.events import Classification, DeadLetter, new_epoch, utcnow
from spillwatch.settings import REPO_ROOT, Settings
from spillwatch.supervisor import ServiceGroup
from tests.helpers import TopicTail, consume_all, settled_alerts, wait_until
from tests.helpers.tiny_model import build_tiny_model, clean_jpeg, spill_jpeg

pytestmark = pytest.mark.integration

BROKER_DEFAULT_MAX = 1024 * 1024  # Apache Kafka's default record limit: a dead letter must fit it


def _settings(s: Settings, tmp_path: Path, **limits: Any) -> Settings:
    return s.model_copy(update={
        "log_format": "json",
        "worker": s.worker.model_copy(update={"model_path": build_tiny_model(tmp_path / "model"), "intra_op_threads": 1}),
        "alerting": s.alerting.model_copy(update={"evidence_dir": tmp_path / "evidence"}),
        "aggregator": s.aggregator.model_copy(update={"tick_interval_s": 0.5}),
        "limits": s.limits.model_copy(update=limits),
    })


@pytest.fixture()
def group(stack_settings: Settings, tmp_path: Path) -> Iterator[ServiceGroup]:
    with ServiceGroup(_settings(stack_settings, tmp_path), tmp_path / "logs", cwd=REPO_ROOT) as g:
        yield g


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def dead_letters(s: Settings, topic: str, n: int, timeout_s: float = 60) -> list[tuple[DeadLetter, int]]:
    recs = consume_all(s, s.topics.dead_letter(topic), timeout_s, min_count=n)
    return [(DeadLetter.from_bytes(r.value), len(r.value)) for r in recs]


def spill_frames(cam: str, n: int, epoch: int) -> list[bytes]:
    """A real spill: ``n`` frames of one producer run, captured now, 0.5 s apart."""
    t0 = utcnow() - timedelta(seconds=n / 2)
    return [hostile.frame(cam, i, spill_jpeg(), capture=t0 + timedelta(seconds=i / 2), epoch=epoch) for i in range(n)]


@pytest.mark.timeout(180)
def test_hostile_frames_dead_lettered_bounded_worker_memory_flat_and_real_spill_pages_once(
    stack_settings: Settings, group: ServiceGroup
) -> None:
    from spillwatch.kafka import make_producer

    s, t = group.settings, stack_settings.topics
    assert s is not None
    worker = group.start("worker")
    group.start("aggregator")
    prod = make_producer(s, max_request_size=32 * 1024 * 1024)
    out = TopicTail(s, t.classifications)
    try:
        epoch = new_epoch()
        prod.send(t.frames, key=b"cam-s", value=hostile.frame("cam-s", 0, clean_jpeg(), epoch=epoch - 1))
        prod.flush()
        out.wait_for(lambda recs: len(recs) >= 1, 60)
        base_rss = peak_rss_mb(worker.pid)
        frames = [r for r in hostile.corpus(skew_s=600, full_bombs=True) if r.topic == "frames"]
        bombs = [r for r in frames if "bomb" in r.name or "scans" in r.name]
        for r in bombs:
            prod.send(t.frames, key=b"cam-s", value=r.build("cam-s", spill_jpeg()))
        prod.send(t.frames, key=b"cam-s", value=hostile.frame("cam-s", 1, clean_jpeg(), epoch=epoch - 1))
        prod.flush()
        out.wait_for(lambda recs: len(recs) >= 2, 60)  # the frame after the bombs is classified
        bomb_growth = peak_rss_mb(worker.pid) - base_rss
        for r in frames:
            if r not in bombs:
                prod.send(t.frames, key=b"cam-s", value=r.build("cam-s", spill_jpeg()))
        prod.flush()
        for v in spill_frames("cam-s", 6, epoch):
            prod.send(t.frames, key=b"cam-s", value=v)
        prod.flush()
        out.wait_for(lambda recs: sum(Classification.from_bytes(x.value).epoch == epoch for x in recs) >= 6, 60)
        assert worker.running()
        all_growth = peak_rss_mb(worker.pid) - base_rss
    finally:
        out.close()
        prod.close()
    dead = dead_letters(s, t.frames, len(frames))
    assert len(dead) == len(frames)
    by_size = {d.payload_size: (d, n) for d, n in dead}
    for d, n in dead:
        assert n < BROKER_DEFAULT_MAX and d.service == "classifier" and d.offset is not None and d.partition is not None
    big, _ = by_size[max(by_size)]
    assert big.payload_size > 20_000_000 and big.truncated and "too large" in big.reason and len(big.payload()) == s.limits.dead_letter_payload_bytes
    assert big.payload()[:4] == b"SWF1"  # the prefix is the record's own start
    cats = sorted(d.extra["category"] for d, _ in dead)
    assert cats.count("clock_skew") == 2 and cats.count("not_jpeg") >= 3 and cats.count("image_too_large") == 2, cats
    # the refused bombs never reached a decoder: the worker's peak memory did not move (a decoded
    # 30000x30000 image is 0.9-2.7 GB); the 20 MB record itself costs a few copies of its size
    print(f"worker peak RSS: base {base_rss:.0f} MiB, +{bomb_growth:.1f} after the bombs, +{all_growth:.1f} after all")
    assert bomb_growth < 16, f"worker peak RSS grew by {bomb_growth:.0f} MiB under the bombs"
    assert all_growth < 8 * 20, f"worker peak RSS grew by {all_growth:.0f} MiB with a 20 MB record"
    alerts = settled_alerts(s, timeout_s=60)
    assert [(a.camera_id, a.state.value) for a in alerts] == [("cam-s", "confirmed")]


@pytest.mark.timeout(180)
def test_aggregator_dead_letters_oversized_forged_and_poison_records_and_goes_on(
    stack_settings: Settings, group: ServiceGroup, redis_client: Any
) -> None:
    from spillwatch.kafka import make_producer
    from spillwatch.redis_keys import RedisKeys

    s, t = group.settings, stack_settings.topics
    assert s is not None
    group.start("aggregator")
    # a camera whose state key holds the wrong type: every Redis command on it fails the same way
    redis_client.hset(RedisKeys(s.redis.key_prefix).agg_state("cam-w"), "not", "json")
    prod = make_producer(s, max_request_size=4 * 1024 * 1024)
    values = {
        "wrongtype": hostile.classification("cam-w", 1, 0.1),
        "huge": hostile.classification("cam-s", 11, 0.99, pad=1_700_000),
        "over": hostile.classification("cam-s", 12, 0.99, pad=100_000),
        "future": hostile.classification("cam-s", hostile.HUGE_SEQ, 0.99, capture=hostile.FAR_FUTURE),
        "json": b"{broken json",
    }
    for v in values.values():
        prod.send(t.classifications, key=b"cam-s", value=v)
    epoch, t0 = new_epoch(), utcnow() - timedelta(seconds=4)
    for i in range(6):
        prod.send(t.classifications, key=b"cam-s",
                  value=hostile.classification("cam-s", i, 0.9, capture=t0 + timedelta(seconds=i / 2), epoch=epoch))
    prod.flush()
    prod.close()
    dead = dead_letters(s, t.classifications, len(values))
    cats = {d.payload_sha256: d.extra["category"] for d, _ in dead}
    sha = {name: hashlib.sha256(v).hexdigest() for name, v in values.items()}
    assert cats[sha["wrongtype"]] == "error" and cats[sha["huge"]] == "too_large" and cats[sha["over"]] == "too_large"
    assert cats[sha["future"]] == "clock_skew" and cats[sha["json"]] == "malformed"
    wrong = next(d for d, _ in dead if d.payload_sha256 == sha["wrongtype"])
    assert "WRONGTYPE" in wrong.reason and f"after {s.limits.record_attempts} attempts" in wrong.reason
    assert all(n < BROKER_DEFAULT_MAX for _, n in dead)
    alerts = settled_alerts(s, timeout_s=60)
    assert [(a.camera_id, a.state.value, a.evidence.confirming_seq) for a in alerts] == [("cam-s", "confirmed", 2)]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigterm_while_the_broker_holds_the_batch_then_restart_every_frame_counted_once(
    local_stack: Any, tmp_path: Path, redis_client: Any
) -> None:
    """The worker's classifications cannot reach the broker (a proxy holds its produce requests)
    while its consumer keeps fetching; SIGTERM; what was held is lost on the network. A new worker
    classifies every frame, and the aggregator counts each frame once (redelivered and de-duplicated)."""
    import json

    from devstack.kafka_proxy import ProxiedBroker
    from spillwatch.kafka import create_topics, group_lag, make_producer
    from spillwatch.redis_keys import RedisKeys

    with ProxiedBroker(tmp_path) as broker:
        base = Settings(
            kafka={"bootstrap": broker.bootstrap, "profile": "local", "topic_prefix": "held.", "partitions": 1},
            redis={"url": local_stack.redis_url, "key_prefix": f"held-{time.time_ns()}"},
            data_dir=tmp_path / "data",
        )
        s = _settings(base, tmp_path)
        t = s.topics
        create_topics(s, partitions=1)
        with ServiceGroup(s, tmp_path / "logs", cwd=REPO_ROOT) as group:
            w1 = group.start("worker")
            group.start("aggregator")
            group.wait_groups({"held.spillwatch-classifier": 1, "held.spillwatch-aggregator": 1}, timeout_s=90)
            prod = make_producer(s, client_id="test-feeder")
            out = TopicTail(s, t.classifications)
            try:
                epoch, t0 = new_epoch(), utcnow()

                def send(seqs: range) -> None:
                    for i in seqs:  # one record per batch: exact end offsets on the local broker
                        v = hostile.frame("cam-h", i, clean_jpeg(), epoch=epoch, capture=t0 + timedelta(seconds=i / 2))
                        prod.send(t.frames, key=b"cam-h", value=v).get(10)

                send(range(0, 3))
                out.wait_for(lambda recs: len(recs) >= 3, 60)
                wait_until(lambda: group_lag(s, "held.spillwatch-classifier", t.frames) == 0, 30)
                broker.proxy.hold_produce("faust")  # the worker's producer (Faust's client id)
                send(range(3, 9))
                wait_until(lambda: broker.proxy.held_requests >= 1, 30)  # the batch is being sent, and held
                w1.stop(grace_s=20)  # SIGTERM (SIGKILL if the held producer keeps it from exiting)
                broker.proxy.release(drop=True)  # what was held is lost
                assert group_lag(s, "held.spillwatch-classifier", t.frames) == 6  # nothing held was committed
                w2 = group.start("worker")
                want = {("cam-h", i) for i in range(9)}
                out.wait_for(lambda recs: want <= {(c.camera_id, c.seq) for c in map(Classification.from_bytes,
                                                                                        (r.value for r in recs))}, 90)
                assert w2.running()
            finally:
                out.close()
                prod.close()
            key = RedisKeys(s.redis.key_prefix).agg_state("cam-h")
            state = wait_until(lambda: (raw := redis_client.get(key)) and json.loads(raw)["last_seq"] == 8 and json.loads(raw), 60)
            assert state["frames"] == 9  # each frame taken once by the aggregator
