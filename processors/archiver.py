"""The archiver service: frames + classifications + spill-alerts -> the frame archive.

A plain kafka-python consumer (group ``archive.group_id``) of three topics of the namespace:

* ``frames``: the JPEG waits in a bounded join buffer for its classification (by camera, seq);
* ``classifications``: joined with its frame, the classified frame goes through the pure
  ``ArchivePolicy`` (ring buffer for the "before" window, low-score and 1-in-N sampling);
* ``spill-alerts``: opens/extends/closes incident windows; the incident is recorded in
  ``index/incidents.jsonl`` and buffered "before" frames are stored.

Every ``archive.retention_interval_s`` retention runs; every ``archive.label_sync_s`` labels carried
by acknowledgements are copied from Redis (when Redis is reachable).

Delivery: at-least-once with auto-commit. Redelivered frames map to the same file (same bytes) and
a repeated index line merges away; what lives only in memory (the join buffer, the ring) is lost on
a restart, so an incident straddling a restart may miss part of its "before" context. Records that
do not parse are counted and skipped: the classifier and aggregator own the dead-letter topics of
these streams, a second dead letter from the archiver would only duplicate theirs.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processors.archive_labels import sync_ack_labels
from processors.archive_policy import ArchivePolicy, Item, JoinBuffer, PolicyConfig
from processors.archive_store import ArchiveStore, apply_retention
from spillwatch.archive import IncidentRecord, append_incident
from spillwatch.events import Classification, EventError, Frame, SpillAlert, decode_frame
from spillwatch.logs import get_logger
from spillwatch.metrics import FRAMES_ARCHIVED
from spillwatch.settings import Settings

log = get_logger("processors.archiver")


@dataclass
class ArchiverStats:
    frames: int = 0
    classifications: int = 0
    alerts: int = 0
    stored: int = 0
    reindexed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class Archiver:
    """Consumes the namespace's frames, classifications and alerts into ``settings.archive.root``."""

    def __init__(self, settings: Settings, root: Path | str | None = None, redis: Any = None) -> None:
        self.settings = settings
        a = settings.archive
        self.root = Path(root or a.root)
        self.store = ArchiveStore(self.root)
        self.policy = ArchivePolicy(PolicyConfig.from_settings(a))
        self.join: JoinBuffer[Frame, Classification] = JoinBuffer(a.join_max_frames, a.join_ttl_s)
        self.redis = redis
        self.stats = ArchiverStats()
        self._stop = threading.Event()
        self._last_retention = 0.0
        self._last_label_sync = 0.0
        t = settings.topics
        self.topics = (t.frames, t.classifications, t.spill_alerts)

    # ------------------------------------------------------------------ handlers (no Kafka)
    def handle(self, topic: str, value: bytes | None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        t_frames, t_cls, t_alerts = self.topics
        if value is None:
            self.stats.skip("empty")
            return
        try:
            if topic == t_frames:
                self.stats.frames += 1
                frame = decode_frame(value, max_bytes=self.settings.limits.frame_bytes)
                pair = self.join.add_frame((frame.header.camera_id, frame.header.epoch, frame.header.seq), frame, now)
                if pair:
                    self._classified(*pair)
            elif topic == t_cls:
                self.stats.classifications += 1
                if len(value) > self.settings.limits.event_bytes:
                    raise EventError(f"classification too large: {len(value)} bytes > limit {self.settings.limits.event_bytes}")
                cls = Classification.from_bytes(value)
                pair = self.join.add_classification((cls.camera_id, cls.epoch, cls.seq), cls, now)
                if pair:
                    self._classified(*pair)
            elif topic == t_alerts:
                self.stats.alerts += 1
                if len(value) > self.settings.limits.event_bytes:
                    raise EventError(f"spill alert too large: {len(value)} bytes > limit {self.settings.limits.event_bytes}")
                self._alert(SpillAlert.from_bytes(value))
        except EventError as exc:
            self.stats.skip(topic)
            log.warning("record skipped", topic=topic, reason=str(exc))

    def _classified(self, frame: Frame, cls: Classification) -> None:
        item = Item(
            camera=cls.camera_id,
            seq=cls.seq,
            capture_time=frame.header.capture_time,
            score=cls.spill_prob,
            model_version=cls.model_version,
            label=frame.header.label or cls.label,
            suppressed_by=[s.entry for s in cls.suppressed] if cls.suppressed else None,
            payload=frame.jpeg,
        )
        self._write(self.policy.on_frame(item))

    def _alert(self, alert: SpillAlert) -> None:
        append_incident(
            self.root,
            IncidentRecord(
                incident_id=alert.incident_id,
                camera=alert.camera_id,
                state=str(alert.state),
                first_seen=alert.first_seen,
                confirmed_at=alert.confirmed_at,
                cleared_at=alert.cleared_at,
                model_version=alert.model_version,
                before_s=self.settings.archive.incident_before_s,
                after_s=self.settings.archive.incident_after_s,
            ),
        )
        self._write(
            self.policy.on_alert(
                incident_id=alert.incident_id,
                camera=alert.camera_id,
                state=str(alert.state),
                first_seen=alert.first_seen,
                confirmed_at=alert.confirmed_at,
                cleared_at=alert.cleared_at,
            )
        )

    def _write(self, decisions: list[Any]) -> None:
        if not decisions:
            return
        for d, rec in self.store.write(decisions):
            if d.already_stored:
                self.stats.reindexed += 1
            else:
                self.stats.stored += 1
                FRAMES_ARCHIVED.labels(camera=rec.camera, reason=rec.reason).inc()

    def housekeeping(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        a = self.settings.archive
        self.join.expire(now)
        if now - self._last_retention >= a.retention_interval_s:
            self._last_retention = now
            try:
                apply_retention(self.root, max_age_days=a.max_age_days, max_bytes=a.max_bytes, keep_labelled=a.keep_labelled)
            except OSError as exc:
                log.error("retention failed", error=str(exc))
        if self.redis is not None and now - self._last_label_sync >= a.label_sync_s:
            self._last_label_sync = now
            try:
                sync_ack_labels(self.redis, self.settings.redis.key_prefix, self.root)
            except Exception as exc:  # noqa: BLE001 - Redis away: labels sync next time
                log.warning("ack label sync failed", error=str(exc))

    # ------------------------------------------------------------------ Kafka loop
    def stop(self) -> None:
        self._stop.set()

    def run(self, *, ready: threading.Event | None = None, max_idle_s: float | None = None) -> ArchiverStats:
        from spillwatch.kafka import make_consumer

        consumer = make_consumer(self.settings, list(self.topics), group_id=self.settings.archive.group_id, client_id="spillwatch-archiver")
        log.info("archiver started", root=str(self.root), topics=list(self.topics))
        last_record = time.monotonic()
        try:
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=500, max_records=500)
                if ready is not None and consumer.assignment():
                    ready.set()
                for tp, records in batch.items():
                    for r in records:
                        self.handle(tp.topic, r.value)
                if batch:
                    last_record = time.monotonic()
                elif max_idle_s is not None and time.monotonic() - last_record > max_idle_s:
                    break
                self.housekeeping()
        finally:
            try:
                consumer.commit()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
            consumer.close()
            log.info("archiver stopped", **{k: v for k, v in self.stats.__dict__.items()})
        return self.stats


def run_archiver(settings: Settings, root: Path | str | None = None) -> None:
    """``spillwatch archiver``: run until SIGINT/SIGTERM."""
    from spillwatch.metrics import start_metrics_server

    redis = None
    try:
        import redis as redis_lib

        redis = redis_lib.Redis.from_url(settings.redis.url, socket_timeout=5)
    except Exception as exc:  # noqa: BLE001
        log.warning("no Redis: ack labels will not be synced", error=str(exc))
    start_metrics_server(settings.archive.metrics_port)
    arch = Archiver(settings, root, redis=redis)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: arch.stop())
    arch.run()
