"""Publishing frames and camera-health events to Kafka without ever blocking a camera.

Camera threads hand records to a bounded queue; one sender thread owns the kafka-python producer.
When the broker is slow or away (restart, network), the queue fills and new frames are dropped
with a metric (live video: a stale frame is worth less than a fresh one); health events have their
own queue and go first. The producer is (re)created with backoff if the broker is not reachable at
start; kafka-python retries in-flight records across broker restarts until ``delivery_timeout_ms``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from producers.backoff import Backoff
from spillwatch import metrics
from spillwatch.events import CameraHealth, FrameHeader, encode_frame
from spillwatch.kafka import make_producer
from spillwatch.logs import get_logger
from spillwatch.settings import Settings

log = get_logger("producers.publisher")


@dataclass
class CameraStats:
    """Per-camera counters of one producer run."""

    camera_id: str
    sampled: int = 0
    published: int = 0  # acknowledged by the broker
    dropped: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    state: str | None = None
    ended: str | None = None

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "camera_id": self.camera_id,
            "sampled": self.sampled,
            "published": self.published,
            "dropped": dict(self.dropped),
            "reconnects": self.reconnects,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "state": self.state,
            "ended": self.ended,
        }


class _RateLimitedLog:
    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def ok(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e9) >= self.every_s:
                self._last[key] = now
                return True
            return False


class FramePublisher:
    def __init__(self, settings: Settings, producer_id: str, stats: dict[str, CameraStats]) -> None:
        self.settings = settings
        self.producer_id = producer_id
        self.topics = settings.topics
        self.stats = stats
        self.max_frame_bytes = min(settings.producer.max_frame_bytes, settings.limits.frame_bytes)
        self.max_pending = settings.producer.max_pending_frames
        self._frames: queue.Queue[tuple[str, bytes, bytes]] = queue.Queue()
        self._health: deque[tuple[str, bytes]] = deque(maxlen=1000)
        self._inflight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._producer: Any = None
        self._thread = threading.Thread(target=self._run, name="frame-publisher", daemon=True)
        self._rl = _RateLimitedLog()

    # ------------------------------------------------------------------ camera side (never blocks)
    def publish_frame(self, header: FrameHeader, jpeg: bytes) -> bool:
        cam = header.camera_id
        value = encode_frame(header, jpeg)
        if len(value) > self.max_frame_bytes:
            self.count_drop(cam, "oversized")
            log.warning("frame dropped: too large", camera=cam, seq=header.seq, bytes=len(value), limit=self.max_frame_bytes)
            return False
        with self._lock:
            # _inflight counts every accepted frame until the broker acknowledges it (queued ones too)
            if self._inflight >= self.max_pending:
                full = True
            else:
                full = False
                self._inflight += 1
        if full:
            self.count_drop(cam, "backpressure")
            if self._rl.ok("backpressure"):
                log.warning("frames dropped: broker not keeping up or unreachable", camera=cam, pending=self.max_pending)
            return False
        self._frames.put((cam, cam.encode(), value))
        self._wake.set()
        return True

    def publish_health(self, event: CameraHealth) -> None:
        self._health.append((event.camera_id, event.to_bytes()))
        self._wake.set()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued, flush (up to ``timeout_s``), close the producer."""
        deadline = time.monotonic() + timeout_s
        while (self._frames.qsize() or self._health) and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._thread.join(max(0.5, deadline - time.monotonic()))
        if self._producer is not None:
            try:
                self._producer.flush(timeout=max(0.5, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - broker away at shutdown: records are lost, say so
                log.warning("flush incomplete at shutdown", error=str(exc))
            try:
                self._producer.close(timeout=2)
            except Exception:  # noqa: BLE001
                pass
            self._producer = None
        # whatever could not be sent is accounted as dropped
        while True:
            try:
                cam, _, _ = self._frames.get_nowait()
            except queue.Empty:
                break
            self.count_drop(cam, "shutdown")

    # ------------------------------------------------------------------ sender thread
    def _ensure_producer(self, backoff: Backoff) -> bool:
        if self._producer is not None:
            return True
        try:
            self._producer = make_producer(
                self.settings,
                client_id=f"spillwatch-producer-{self.producer_id}",
                # topics are created explicitly (partitions matter); never auto-create them
                allow_auto_create_topics=False,
                # a frame older than this is not worth delivering
                delivery_timeout_ms=30_000,
            )
            backoff.reset()
            log.info("connected to broker", bootstrap=self.settings.kafka.bootstrap)
            return True
        except Exception as exc:  # noqa: BLE001 - NoBrokersAvailable etc.
            delay = backoff.next_delay()
            if self._rl.ok("connect"):
                log.warning("broker unreachable, retrying", error=str(exc), retry_in_s=round(delay, 2))
            self._stop.wait(delay)
            return False

    def _run(self) -> None:
        backoff = Backoff(self.settings.producer.reconnect_initial_s, self.settings.producer.reconnect_max_s)
        while not self._stop.is_set():
            if not self._ensure_producer(backoff):
                continue
            sent = False
            while self._health and not self._stop.is_set():
                cam, value = self._health.popleft()
                self._send(self.topics.camera_health, cam, cam.encode(), value, frame=False)
                sent = True
            try:
                cam, key, value = self._frames.get_nowait()
            except queue.Empty:
                if not sent:
                    self._wake.wait(0.1)
                    self._wake.clear()
                continue
            self._send(self.topics.frames, cam, key, value, frame=True)

    def _send(self, topic: str, cam: str, key: bytes, value: bytes, *, frame: bool) -> None:
        try:
            fut = self._producer.send(topic, key=key, value=value)
        except Exception as exc:  # noqa: BLE001 - metadata timeout while the broker is away
            metrics.PUBLISH_ERRORS.labels(topic).inc()
            if frame:
                self._release()
                self.count_drop(cam, "publish_error")
            if self._rl.ok("send:" + topic):
                log.warning("publish failed", topic=topic, camera=cam, error=repr(exc))
            return
        if frame:
            fut.add_callback(self._on_ack, cam)
            fut.add_errback(self._on_error, topic, cam)
        else:
            fut.add_errback(self._on_health_error, topic)

    def _release(self) -> None:
        with self._lock:
            self._inflight -= 1

    def _on_ack(self, cam: str, _meta: Any) -> None:
        self._release()
        self.stats[cam].published += 1
        metrics.FRAMES_PUBLISHED.labels(cam).inc()

    def _on_error(self, topic: str, cam: str, exc: BaseException) -> None:
        self._release()
        metrics.PUBLISH_ERRORS.labels(topic).inc()
        self.count_drop(cam, "publish_error")
        if self._rl.ok("deliver:" + topic):
            log.warning("frame not delivered", topic=topic, camera=cam, error=repr(exc))

    def _on_health_error(self, topic: str, exc: BaseException) -> None:
        metrics.PUBLISH_ERRORS.labels(topic).inc()
        if self._rl.ok("deliver:" + topic):
            log.warning("health event not delivered", topic=topic, error=repr(exc))

    def count_drop(self, cam: str, reason: str) -> None:
        metrics.FRAMES_DROPPED.labels(cam, reason).inc()
        st = self.stats.get(cam)
        if st is not None:
            with self._lock:
                st.drop(reason)
