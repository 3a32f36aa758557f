"""The camera monitor's core (processors/camera_monitor.py) against a real Redis: decisions are
committed once across monitors and restarts, published from the outbox after a failed publish,
hostile heartbeats are refused. (Kafka and the Faust wiring: tests/test_camera_outage_integration.py.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from processors.camera_monitor import CameraMonitor, Ownership, Rejected
from processors.camera_outage import Heartbeat
from processors.outage_store import OutageStore
from spillwatch.events import CameraAlert, CameraHealth, CameraState
from spillwatch.redis_keys import RedisKeys
from spillwatch.settings import Settings

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


class Sink:
    def __init__(self) -> None:
        self.alerts: list[CameraAlert] = []
        self.fail = False

    async def __call__(self, alert: CameraAlert) -> None:
        if self.fail:
            raise ConnectionError("broker away")
        self.alerts.append(alert)

    def kinds(self) -> list[tuple[str, str]]:
        return [(a.camera_id, a.state.value) for a in self.alerts]


def settings(prefix: str, cameras: tuple[str, ...] = ("cam-a", "cam-b")) -> Settings:
    return Settings(
        redis={"key_prefix": prefix},
        cameras=[{"id": c, "source": "x.mp4"} for c in cameras],
        outages={"grace_s": 60, "recovery_s": 30},
    )


def run(local_stack: Any, body: Callable[[Any, str], Awaitable[None]]) -> None:
    import redis.asyncio as aioredis

    async def main() -> None:
        r = aioredis.from_url(local_stack.redis_url)
        try:
            await body(r, f"t:mon:{uuid.uuid4().hex[:8]}")
        finally:
            await r.aclose()

    asyncio.run(main())


def monitor(r: Any, s: Settings, sink: Sink) -> CameraMonitor:
    return CameraMonitor(s, OutageStore(r, s.redis.key_prefix, 3600), sink)


def hb(cam: str, t: float, state: CameraState = CameraState.ONLINE) -> Heartbeat:
    return Heartbeat(camera_id=cam, state=state, at=at(t))


def test_two_monitors_ticking_together_page_once_and_a_restarted_one_not_again(local_stack: Any) -> None:
    async def body(r: Any, prefix: str) -> None:
        s, sink = settings(prefix), Sink()
        m1, m2 = monitor(r, s, sink), monitor(r, s, sink)
        for t in range(0, 100, 5):
            await m1.observe(hb("cam-a", t))
            await m1.observe(hb("cam-b", t))
        for t in range(100, 200, 5):  # cam-a's producer died at 95 s; cam-b stays healthy
            await m1.observe(hb("cam-b", t))
            await asyncio.gather(m1.tick(at(t + 0.5), at(0)), m2.tick(at(t + 0.5), at(0)))
        assert sink.kinds() == [("cam-a", "offline")]
        restarted = monitor(r, s, sink)  # a new process: state from Redis, a new floor
        for t in range(200, 260, 5):
            await restarted.observe(hb("cam-b", t))
            await restarted.tick(at(t + 0.5), at(200))
        assert sink.kinds() == [("cam-a", "offline")]
        for t in range(260, 300, 5):
            await restarted.observe(hb("cam-a", t))
            await restarted.observe(hb("cam-b", t))
        assert sink.kinds() == [("cam-a", "offline"), ("cam-a", "recovered")]
        assert sink.alerts[0].incident_id == sink.alerts[1].incident_id
        keys = RedisKeys(prefix)
        assert await r.smembers(keys.outage_open) == set() and await r.hlen(keys.outage_outbox) == 0
        assert await r.ttl(keys.outage_state("cam-a")) == -1  # an open outage is never forgotten

    run(local_stack, body)


def test_an_alert_that_could_not_be_published_goes_out_once_from_the_outbox(local_stack: Any) -> None:
    async def body(r: Any, prefix: str) -> None:
        s, sink = settings(prefix, ("cam-a",)), Sink()
        m = monitor(r, s, sink)
        await m.observe(hb("cam-a", 0))
        sink.fail = True  # the broker is away when the outage opens: committed, not published
        for t in range(5, 70, 5):
            step = await m.observe(hb("cam-a", t, CameraState.STALLED))
        assert [a.state.value for a in step.alerts] == ["stalled"] and sink.alerts == []
        assert await r.hlen(RedisKeys(prefix).outage_outbox) == 1
        sink.fail = False
        await m.tick(at(66), at(0))
        await monitor(r, s, sink).tick(at(67), at(0))  # another monitor flushes too: nothing twice
        assert sink.kinds() == [("cam-a", "stalled")]

    run(local_stack, body)


def test_a_camera_removed_from_the_configuration_does_not_stay_in_outage(local_stack: Any) -> None:
    async def body(r: Any, prefix: str) -> None:
        sink = Sink()
        m = monitor(r, settings(prefix, ("cam-a", "old")), sink)
        await m.observe(hb("old", 0))
        await m.tick(at(100), at(0))
        assert sink.kinds() == [("old", "offline")]
        await monitor(r, settings(prefix, ("cam-a",)), sink).tick(at(120), at(110))
        assert sink.kinds() == [("old", "offline"), ("old", "recovered")]
        assert "no longer configured" in sink.alerts[-1].reason

    run(local_stack, body)


def test_hostile_heartbeats_are_refused_and_write_nothing(local_stack: Any) -> None:
    async def body(r: Any, prefix: str) -> None:
        m = monitor(r, settings(prefix, ("cam-a",)), Sink())
        now = datetime.now(UTC)
        good = CameraHealth(camera_id="cam-a", state=CameraState.ONLINE, at=now)
        assert isinstance(m.validate(b"cam-a", good.to_bytes(), now), Heartbeat)
        cases = {
            "unknown_camera": (b"ghost", good.model_copy(update={"camera_id": "ghost"}).to_bytes()),
            "malformed": (b"cam-a", b"{not json"),
            "unknown_version": (b"cam-a", good.to_bytes().replace(b'"v":1', b'"v":7')),
            "empty": (b"cam-a", b""),
            "too_large": (b"cam-a", good.to_bytes() + b" " * 70_000),
            "clock_skew": (b"cam-a", good.model_copy(update={"at": now + timedelta(hours=2)}).to_bytes()),
        }
        for category, (key, value) in cases.items():
            got = m.validate(key, value, now)
            assert isinstance(got, Rejected) and got.category == category, (category, got)
        assert [k async for k in r.scan_iter(match=f"{prefix}:*")] == []

    run(local_stack, body)


def test_the_timer_floor_follows_partition_ownership() -> None:
    o = Ownership()
    assert o.update(False, at(0)) is None
    assert o.update(True, at(5)) == at(5) and o.update(True, at(9)) == at(5)
    assert o.update(False, at(12)) is None and o.update(True, at(20)) == at(20)
