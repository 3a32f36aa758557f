"""The camera monitor: ``camera-health`` in, ``camera-alerts`` out, state in Redis.

It runs inside the aggregator service (its Faust app, the same consumer group): an agent reads
the heartbeats and a timer looks for silent cameras. :class:`CameraMonitor` is the I/O edge of the
pure state machine (processors/camera_outage.py) and knows nothing of Faust;
:func:`wire_camera_monitor` registers the agent and the timer on the aggregator's app.

- Only the configured, enabled cameras are watched (``cameras:``). A heartbeat of any other camera,
  or one that fails validation (``camera_outage.heartbeat_from``), goes to ``camera-health.dlq``
  with the reason and is never counted: state stays bounded and garbage pages nothing. With no
  camera configured the monitor is off.
- The timer acts only in the process that owns the ``camera-health`` partition, and counts
  silence only from when it began owning it (the state machine's ``floor``): a restarted or
  rescaled monitor reads the backlog before it presumes a camera silent.
- Decisions are committed with their CameraAlerts in one Redis transaction (outbox), then
  published; a crash between the two republishes the same alert (``processors.outage_store``).
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from processors.aggregator import Rejected
from processors.camera_outage import (
    Heartbeat,
    HeartbeatError,
    OutageParams,
    Step,
    heartbeat_from,
    observe,
    params_for,
    retire,
    tick,
)
from processors.outage_store import OutageStore
from spillwatch import metrics
from spillwatch.events import CameraAlert, CameraHealth, EventError, utcnow
from spillwatch.logs import get_logger
from spillwatch.settings import Settings

log = get_logger("processors.camera_monitor")


@dataclass
class Ownership:
    """Since when this process owns the heartbeats (``None``: it does not): the timer's floor."""

    since: datetime | None = None

    def update(self, owned: bool, now: datetime) -> datetime | None:
        if not owned:
            self.since = None
        elif self.since is None:
            self.since = now
        return self.since


class CameraMonitor:
    def __init__(self, settings: Settings, store: OutageStore, publish: Any) -> None:
        self.max_bytes = settings.limits.event_bytes
        self.store = store
        self.publish = publish
        self.cameras = frozenset(c.id for c in settings.cameras if c.enabled)
        self.params: dict[str, OutageParams] = {c: params_for(settings, c) for c in self.cameras}

    def validate(self, key: bytes | None, value: bytes | None, received: datetime) -> Heartbeat | Rejected:
        if not value:
            return Rejected(key, value, "empty record", "empty")
        if len(value) > self.max_bytes:
            return Rejected(key, value, f"record too large: {len(value)} bytes > limits.event_bytes {self.max_bytes}", "too_large")
        try:
            h = CameraHealth.from_bytes(value)
        except EventError as exc:
            reason = str(exc)
            return Rejected(key, value, reason, "unknown_version" if reason.startswith("invalid CameraHealth: v:") else "malformed")
        try:
            return heartbeat_from(h, key, received, self.cameras)
        except HeartbeatError as exc:
            return Rejected(key, value, str(exc), exc.category)

    async def observe(self, hb: Heartbeat) -> Step:
        params = self.params[hb.camera_id]
        result: Step = await self.store.apply(hb.camera_id, lambda st: observe(st, hb, params))
        await self._publish(result)
        return result

    async def tick(self, now: datetime, floor: datetime) -> list[CameraAlert]:
        """Open the outages of silent cameras, close those of cameras no longer configured, and
        publish whatever the outbox still holds. Returns the alerts published."""
        states = await self.store.load_many(sorted(self.cameras))
        for cam, st in states.items():
            params = self.params[cam]
            if tick(st, params, now, floor).duplicate:
                continue  # nothing to change: no write
            self._count(await self.store.apply(cam, functools.partial(tick, params=params, now=now, floor=floor)))
        for cam in await self.store.open_cameras():
            if cam not in self.cameras:
                self._count(await self.store.apply(cam, lambda s: retire(s, now)))
        return await self.store.flush(self.publish)

    async def _publish(self, result: Step) -> None:
        if not result.alerts:
            return
        self._count(result)
        try:
            await self.store.flush(self.publish, result.alerts)
        except Exception as exc:  # noqa: BLE001 - committed: the outbox keeps it, the timer retries
            log.warning("camera alert publish failed; kept in the outbox", camera=result.state.camera_id, error=repr(exc))

    def _count(self, result: Step) -> None:
        for a in result.alerts:
            metrics.CAMERA_OUTAGES.labels(a.camera_id, a.state.value).inc()
            emit = log.info if a.state.value == "recovered" else log.warning
            emit(
                "camera outage " + a.state.value, camera=a.camera_id, incident=a.incident_id,
                since=a.since.isoformat(), reason=a.reason,
            )


def wire_camera_monitor(app: Any, settings: Settings) -> None:
    """Register the heartbeat agent and the outage timer on the aggregator's Faust app."""
    import redis.asyncio as aioredis

    from processors.app import AckWhenDone, _dead_letter_out, _raw_topic, _send_all, worker_id
    from processors.retry import Attempts, holding, redis_error_is_outage

    o = settings.outages
    mlog = log.bind(worker=worker_id())
    if not o.enabled:
        mlog.info("camera outage paging is off (outages.enabled=false)")
        return
    if not any(c.enabled for c in settings.cameras):
        mlog.warning("no camera configured: camera outage paging is off (it watches the configured cameras)")
        return
    t = settings.topics
    source = _raw_topic(app, t.camera_health)
    out = _raw_topic(app, t.camera_alerts)
    dlq = _raw_topic(app, t.dead_letter(t.camera_health))
    rds = aioredis.from_url(settings.redis.url, socket_timeout=5, socket_connect_timeout=5)
    store = OutageStore(rds, settings.redis.key_prefix, settings.aggregator.state_ttl_s)

    async def publish(alert: CameraAlert) -> None:
        fut = await out.send(key=alert.camera_id.encode(), value=alert.to_bytes())
        await fut

    monitor = CameraMonitor(settings, store, publish)
    owner = Ownership()
    mlog.info("camera monitor ready", cameras=len(monitor.cameras), grace_s=o.grace_s, recovery_s=o.recovery_s)

    tries = settings.limits.record_attempts

    async def dead_letter(message: Any, reason: str, category: str) -> None:
        mlog.warning("heartbeat dead-lettered", reason=reason, category=category, partition=message.partition,
                     offset=message.offset)
        await _send_all([_dead_letter_out(settings, dlq, t.camera_health, message.key, message.value, reason, category,
                                          "camera-monitor", partition=message.partition, offset=message.offset)],
                        attempts=tries)

    @app.agent(source, name=f"{app.conf.id}.camera-health")
    async def heartbeats(stream: Any) -> None:
        async for event in stream.events():
            with AckWhenDone([event]):
                msg = event.message
                hb = monitor.validate(msg.key, msg.value, utcnow())
                if isinstance(hb, Rejected):
                    await dead_letter(msg, hb.reason, hb.category)
                    continue
                try:  # Redis away: hold this heartbeat (never skip a decision); its own fault N times: park it
                    async for attempt in holding(Attempts(tries, redis_error_is_outage), "heartbeat", camera=hb.camera_id):
                        with attempt:
                            await monitor.observe(hb)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - this record, not an outage: park it, go on
                    mlog.exception("heartbeat could not be processed", camera=hb.camera_id)
                    await dead_letter(msg, f"camera monitor error after {tries} attempts: {type(exc).__name__}: {exc}", "error")

    @app.timer(interval=o.tick_interval_s)
    async def _outage_tick() -> None:
        now = utcnow()
        try:
            owned = any(tp.topic == t.camera_health for tp in app.consumer.assignment())
        except Exception:  # noqa: BLE001 - the consumer is not started yet
            owned = False
        floor = owner.update(owned, now)
        try:
            if floor is None:
                await store.flush(publish)  # any replica may finish publishing the outbox
            else:
                await monitor.tick(now, floor)
        except Exception as exc:  # noqa: BLE001 - the next tick retries
            mlog.warning("camera outage tick failed", error=repr(exc))
