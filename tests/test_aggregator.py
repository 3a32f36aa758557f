"""Aggregator core + Redis state store against a real Redis (the session's local stack; every test using
it is marked integration by tests/helpers/markers.py)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from processors.aggregator import Aggregator, Rejected
from processors.confirmation import observe
from processors.state_store import StateStore, event_key
from spillwatch.events import Classification, Region, SpillAlert
from spillwatch.redis_keys import RedisKeys
from spillwatch.settings import Settings
from tests.helpers.tiny_model import spill_jpeg

T0 = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)
REGION = Region(x0=0.1, y0=0.5, x1=0.5, y1=1.0, area=0.2)


def cls(seq: int, prob: float, cam: str = "cam-1", smap: list[list[int]] | None = None) -> Classification:
    return Classification(
        camera_id=cam, seq=seq, capture_time=T0 + timedelta(seconds=seq / 2), spill_prob=prob,
        spill_map=smap, region=REGION if prob >= 0.5 else None, model_version="m1",
    )


class Sink:
    """Publish target that records alerts (the Kafka side is covered by the integration tests)."""

    def __init__(self) -> None:
        self.alerts: list[SpillAlert] = []
        self.fail = False

    async def __call__(self, alert: SpillAlert) -> None:
        if self.fail:
            raise ConnectionError("broker away")
        self.alerts.append(alert)

    def kinds(self) -> list[tuple[str, str]]:
        return [(a.incident_id, a.state.value) for a in self.alerts]


def run(local_stack: Any, body: Callable[[Any, str], Awaitable[None]]) -> None:
    import redis.asyncio as aioredis

    async def main() -> None:
        r = aioredis.from_url(local_stack.redis_url)
        try:
            await body(r, f"t:agg:{uuid.uuid4().hex[:8]}")
        finally:
            await r.aclose()

    asyncio.run(main())


def make(r: Any, prefix: str, sink: Sink, tmp: Path, settings: Settings | None = None, **agg: Any) -> Aggregator:
    s = settings or Settings(aggregator={"clear_n": 3, "cooldown_s": 5, "escalate_after_s": 30, **agg})
    store = StateStore(r, prefix, s.aggregator.state_ttl_s)
    return Aggregator(s, store, sink, model_threshold=0.5, map_threshold=0.5, evidence_dir=tmp / "evidence")


def test_confirmed_once_state_in_redis_with_ttl(local_stack: Any, tmp_path: Path) -> None:
    async def body(r: Any, prefix: str) -> None:
        sink = Sink()
        agg = make(r, prefix, sink, tmp_path)
        for i, p in enumerate([0.1, 0.9, 0.9, 0.9, 0.9, 0.9]):
            await agg.handle(cls(i, p))
        assert [k for _, k in sink.kinds()] == ["confirmed"]
        a = sink.alerts[0]
        assert a.evidence.confirming_seq == 3 and a.first_seen == T0 + timedelta(seconds=0.5)
        # state lives in Redis (a fresh aggregator sees it), with the configured TTL
        key = agg.store.keys.agg_state("cam-1")
        ttl = await r.ttl(key)
        assert 0 < ttl <= agg.settings.aggregator.state_ttl_s
        fresh = make(r, prefix, sink, tmp_path)
        st = await fresh.store.load("cam-1")
        assert st.incident is not None and st.incident.id == a.incident_id and st.last_seq == 5
        assert await fresh.store.open_cameras() == ["cam-1"]
        assert await r.hlen(agg.store.keys.agg_outbox) == 0
        assert await r.exists(agg.store.keys.agg_sent(event_key(a)))

    run(local_stack, body)


def test_redelivery_and_restart_do_not_repage(local_stack: Any, tmp_path: Path) -> None:
    async def body(r: Any, prefix: str) -> None:
        sink = Sink()
        seq = [cls(i, 0.9) for i in range(6)]
        agg = make(r, prefix, sink, tmp_path)
        for c in seq:
            await agg.handle(c)
        # the whole stream again, through a "restarted" aggregator (new object, same Redis)
        agg2 = make(r, prefix, sink, tmp_path)
        results = [await agg2.handle(c) for c in seq]
        assert all(res.duplicate for res in results)
        assert len(sink.alerts) == 1

    run(local_stack, body)


def test_clean_sequence_no_alert_and_clear_once(local_stack: Any, tmp_path: Path) -> None:
    async def body(r: Any, prefix: str) -> None:
        sink = Sink()
        agg = make(r, prefix, sink, tmp_path)
        for i in range(20):
            await agg.handle(cls(i, 0.2, cam="clean"))
        assert sink.alerts == []
        for i, p in enumerate([0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1]):
            await agg.handle(cls(i, p, cam="dirty"))
        assert [k for _, k in sink.kinds()] == ["confirmed", "cleared"]
        assert await agg.store.open_cameras() == []

    run(local_stack, body)


def test_crash_between_commit_and_publish_is_recovered_from_outbox(local_stack: Any, tmp_path: Path) -> None:
    async def body(r: Any, prefix: str) -> None:
        sink = Sink()
        agg = make(r, prefix, sink, tmp_path)
        sink.fail = True  # the broker is unreachable when the incident is confirmed
        for i in range(2):
            await agg.handle(cls(i, 0.9))
        result = await agg.handle(cls(2, 0.9))  # committed; the publish fails (logged, not raised)
        assert [a.state.value for a in result.alerts] == ["confirmed"]
        assert sink.alerts == []
        pending = await agg.store.pending()
        assert [p.state.value for p in pending] == ["confirmed"]
        # the worker dies; a new one starts, its first tick flushes the outbox
        sink.fail = False
        agg2 = make(r, prefix, sink, tmp_path)
        published = await agg2.tick()
        assert [p.state.value for p in published] == ["confirmed"]
        assert len(sink.alerts) == 1 and sink.alerts[0].incident_id == pending[0].incident_id
        # redelivery of the confirming record after the restart: duplicate, nothing new
        assert (await agg2.handle(cls(2, 0.9))).duplicate
        assert await agg2.tick() == [] and len(sink.alerts) == 1

    run(local_stack, body)


def test_crash_after_publish_before_mark_is_not_republished_once_marked(local_stack: Any, tmp_path: Path) -> None:
    async def body(r: Any, prefix: str) -> None:
        sink = Sink()
        agg = make(r, prefix, sink, tmp_path)
        for i in range(3):
            await agg.handle(cls(i, 0.9))
        a = sink.alerts[0]
        # simulate: the outbox entry is back (crash before HDEL) but the sent marker was written
        await r.hset(agg.store.keys.agg_outbox, event_key(a), a.to_bytes())
        assert await agg.tick() == []
        assert len(sink.alerts) == 1 and await r.hlen(agg.store.keys.agg_outbox) == 0

    run(local_stack, body)


def test_concurrent_aggregators_on_same_camera_confirm_once(local_stack: Any, tmp_path: Path) -> None:
    async def body(r: Any, prefix: str) -> None:
        sink = Sink()
        a1, a2 = make(r, prefix, sink, tmp_path), make(r, prefix, sink, tmp_path)
        seq = [cls(i, 0.9) for i in range(8)]
        # both members process the same records, each in partition order, at the same time
        # (a rebalance overlap: the old owner still works while the new one starts)
        async def consume(a: Aggregator) -> None:
            for c in seq:
                await a.handle(c)
                await asyncio.sleep(0)

        await asyncio.gather(consume(a1), consume(a2))
        assert [k for _, k in sink.kinds()] == ["confirmed"]

    run(local_stack, body)


def test_escalation_by_timer_unless_acknowledged(local_stack: Any, tmp_path: Path) -> None:
    async def body(r: Any, prefix: str) -> None:
        sink = Sink()
        agg = make(r, prefix, sink, tmp_path)
        now = datetime.now(UTC)
        for i in range(3):
            await agg.handle(cls(i, 0.9, cam="a"), now=now)
            await agg.handle(cls(i, 0.9, cam="b"), now=now)
        inc_b = (await agg.store.load("b")).incident
        assert inc_b is not None
        # alerting's acknowledgement key for b's incident
        await r.hset(f"{prefix}:ack:{inc_b.id}", mapping={"incident_id": inc_b.id, "by": "test"})
        assert await agg.tick(now + timedelta(seconds=10)) == []
        published = await agg.tick(now + timedelta(seconds=31))
        assert [(p.camera_id, p.state.value) for p in published] == [("a", "escalated")]
        assert await agg.tick(now + timedelta(seconds=100)) == []
        assert sorted(k for _, k in sink.kinds()) == ["confirmed", "confirmed", "escalated"]
        assert (await agg.store.load("b")).incident.acknowledged

    run(local_stack, body)


def test_snapshot_written_from_classifier_frame(local_stack: Any, tmp_path: Path) -> None:
    async def body(r: Any, prefix: str) -> None:
        sink = Sink()
        agg = make(r, prefix, sink, tmp_path)
        await r.set(RedisKeys(prefix).evidence_frame("cam-1", 2), spill_jpeg(), ex=60)
        smap = np.zeros((8, 8), int)
        smap[4:, :4] = 240
        for i in range(3):
            await agg.handle(cls(i, 0.9, smap=smap.tolist()))
        ref = sink.alerts[0].evidence.snapshot_ref
        assert ref is not None and Path(ref).is_file() and Path(ref).name == f"{sink.alerts[0].incident_id}.jpg"
        img = cv2.imread(ref)
        assert img is not None and img.shape[:2] == (240, 320)

    run(local_stack, body)


def test_missing_frame_still_alerts_without_snapshot(local_stack: Any, tmp_path: Path) -> None:
    async def body(r: Any, prefix: str) -> None:
        sink = Sink()
        agg = make(r, prefix, sink, tmp_path)
        for i in range(3):
            await agg.handle(cls(i, 0.9))
        assert len(sink.alerts) == 1 and sink.alerts[0].evidence.snapshot_ref is None

    run(local_stack, body)


def test_zone_from_camera_config_restricts_alerts(local_stack: Any, tmp_path: Path) -> None:
    async def body(r: Any, prefix: str) -> None:
        sink = Sink()
        s = Settings(cameras=[{"id": "z", "source": "x", "zone": [[0, 0.5], [0.5, 0.5], [0.5, 1], [0, 1]]}])
        agg = make(r, prefix, sink, tmp_path, settings=s)
        outside = np.zeros((8, 8), int)
        outside[0:2, 6:8] = 250
        for i in range(10):
            await agg.handle(cls(i, 0.95, cam="z", smap=outside.tolist()))
        assert sink.alerts == []
        inside = np.zeros((8, 8), int)
        inside[6, 1] = 250
        for i in range(10, 13):
            await agg.handle(cls(i, 0.95, cam="z", smap=inside.tolist()))
        assert [k for _, k in sink.kinds()] == ["confirmed"] and sink.alerts[0].zone == "z-zone"

    run(local_stack, body)


def test_validation_rejects_with_reasons() -> None:
    s = Settings(cameras=[{"id": "known", "source": "x"}])
    agg = Aggregator(s, StateStore(None, "p", 10), Sink(), model_threshold=0.5)
    good = cls(1, 0.5, cam="known").to_bytes()
    assert isinstance(agg.validate(b"known", good), Classification)
    bad_json = agg.validate(b"k", b"{not json")
    assert isinstance(bad_json, Rejected) and bad_json.category == "malformed"
    v2 = agg.validate(b"k", good.replace(b'"v":1', b'"v":2'))
    assert isinstance(v2, Rejected) and v2.category == "unknown_version"
    unknown = agg.validate(b"other", cls(1, 0.5, cam="other").to_bytes())
    assert isinstance(unknown, Rejected) and unknown.category == "unknown_camera" and "other" in unknown.reason
    assert isinstance(agg.validate(b"k", None), Rejected)
    missing = agg.validate(b"k", b'{"v":1,"camera_id":"known"}')
    assert isinstance(missing, Rejected) and missing.category == "malformed"
    # no cameras configured: any camera is accepted
    open_agg = Aggregator(Settings(), StateStore(None, "p", 10), Sink(), model_threshold=0.5)
    assert isinstance(open_agg.validate(b"x", cls(1, 0.5, cam="other").to_bytes()), Classification)


def _stream(rng: random.Random, cameras: int, frames: int) -> list[Classification]:
    """Several cameras interleaved, each with spells of spill and clean frames, a few redeliveries."""
    out: list[Classification] = []
    probs = {c: [0.9 if (i // 7) % 2 else 0.1 for i in range(frames)] for c in range(cameras)}
    for i in range(frames):
        for c in rng.sample(range(cameras), cameras):
            out.append(cls(i, probs[c][i] if rng.random() > 0.1 else 1 - probs[c][i], cam=f"cam-{c}"))
            if out and rng.random() < 0.08:
                out.append(rng.choice(out))  # a redelivered record
    return out


def _decisions(alerts: list[SpillAlert]) -> list[tuple[str, str, int | None, datetime]]:
    return sorted((a.camera_id, a.state.value, a.evidence.confirming_seq, a.first_seen) for a in alerts)


def test_a_batch_decides_exactly_as_one_by_one(local_stack: Any, tmp_path: Path) -> None:
    """handle_batch (one Redis transaction a batch) against handle (one a record), on the same
    interleaved stream of 6 cameras with spills, clears and redeliveries, cut into batches of
    random sizes: the same pages, the same stored states."""

    async def body(r: Any, prefix: str) -> None:
        rng = random.Random(12)
        stream = _stream(rng, cameras=6, frames=60)
        now = datetime.now(UTC)
        one, many = Sink(), Sink()
        a1 = make(r, prefix + ":one", one, tmp_path)
        a2 = make(r, prefix + ":many", many, tmp_path)
        for c in stream:
            await a1.handle(c, now=now)
        i = 0
        while i < len(stream):
            n = rng.choice([1, 2, 5, 17, 64])
            results = await a2.handle_batch(stream[i : i + n], now=now)
            assert len(results) == len(stream[i : i + n])
            i += n
        assert len(one.alerts) >= 12, "the stream should confirm and clear several incidents"
        assert _decisions(many.alerts) == _decisions(one.alerts)
        for cam in {c.camera_id for c in stream}:
            s1, s2 = await a1.store.load(cam), await a2.store.load(cam)
            ignore: dict[str, Any] = {"incident": {"id"}, "last_incident_id": True}
            assert s2.model_dump(exclude=ignore) == s1.model_dump(exclude=ignore)
            assert (await a2.store.r.sismember(a2.store.open_key, cam)) == (await a1.store.r.sismember(a1.store.open_key, cam))
        assert await a2.store.pending() == []

    run(local_stack, body)


def test_a_batch_retried_after_a_concurrent_write_decides_once(local_stack: Any, tmp_path: Path) -> None:
    """Another aggregator takes one of the batch's frames between the batch's read and its commit
    (a rebalance overlap): the transaction fails, the whole batch runs again on the stored states,
    the frame the other took is a duplicate, and the spill is confirmed once."""
    import redis

    async def body(r: Any, prefix: str) -> None:
        sink = Sink()
        agg = make(r, prefix, sink, tmp_path)
        await agg.handle_batch([cls(0, 0.9, cam="a"), cls(0, 0.1, cam="b")])
        store = agg.store
        params = agg.params("a")
        real_decode = store.decode_state
        sync = redis.Redis.from_url(local_stack.redis_url)
        interfered: list[int] = []

        def decode_then_interfere(raw: bytes) -> Any:
            state = real_decode(raw)
            if state.camera_id == "a" and not interfered:
                # the other member decides a's frame 1 and commits, after this batch's MGET
                taken = observe(state, cls(1, 0.9, cam="a"), params, datetime.now(UTC)).state
                sync.set(store.state_key("a"), taken.to_json())
                interfered.append(taken.frames)
            return state

        store.decode_state = decode_then_interfere  # type: ignore[method-assign]
        try:
            results = await agg.handle_batch([cls(1, 0.9, cam="a"), cls(2, 0.9, cam="a"), cls(1, 0.1, cam="b")])
        finally:
            sync.close()
        assert interfered == [2]
        assert [res.duplicate for res in results] == [True, False, False]  # frame 1: the other's
        assert [k for _, k in sink.kinds()] == ["confirmed"]
        assert sink.alerts[0].evidence.confirming_seq == 2
        a, b = await store.load("a"), await store.load("b")
        assert a.frames == 3 and a.incident is not None and b.frames == 2

    run(local_stack, body)


def test_bench_redis_counts_decisions_from_the_cameras_frame_counters(local_stack: Any, tmp_path: Path) -> None:
    """`spillwatch bench redis` times the aggregator by the classifications it has taken (a batch is one
    EXEC): after the aggregator decided a stream, the count is the frames taken, duplicates and other
    prefixes' cameras left out."""
    import redis

    from processors.redis_load import decided

    async def body(r: Any, prefix: str) -> None:
        agg = make(r, prefix, Sink(), tmp_path)
        other = make(r, prefix + "-other", Sink(), tmp_path)
        stream = [cls(i, 0.1, cam=f"cam-{c}") for i in range(7) for c in range(3)]
        await agg.handle_batch(stream + stream[:5])  # 5 redelivered: not taken again
        await other.handle_batch([cls(0, 0.1, cam="cam-0")])
        sync = redis.Redis.from_url(local_stack.redis_url)
        try:
            assert decided(sync, RedisKeys(prefix).agg_state("*")) == 21
        finally:
            sync.close()

    run(local_stack, body)
