"""Serve many cameras from one process: a thread per camera, one Kafka sender, one health ticker."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable

from producers.camera import CameraWorker, SourceFactory
from producers.health import HealthReport, HealthTracker
from producers.publisher import CameraStats, FramePublisher
from producers.sources import open_source
from spillwatch import metrics
from spillwatch.events import CameraHealth, CameraState
from spillwatch.logs import get_logger
from spillwatch.redact import redact_text
from spillwatch.settings import CameraConfig, Settings

log = get_logger("producers.runner")

__all__ = ["run_cameras", "CameraStats"]


def default_producer_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class HealthHub:
    """One health tracker per camera, the heartbeat ticker thread, and publishing of the reports."""

    def __init__(
        self, settings: Settings, cams: list[CameraConfig], stats: dict[str, CameraStats], publisher: FramePublisher, pid: str
    ) -> None:
        p = settings.producer
        now = time.monotonic()
        self.trackers = {
            c.id: HealthTracker(stall_after_s=p.stall_after_s, offline_after_s=p.offline_after_s, heartbeat_s=p.heartbeat_s,
                                start=now)
            for c in cams
        }
        self.stats = stats
        self.publisher = publisher
        self.pid = pid
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="camera-health", daemon=True)

    def emit(self, camera_id: str, rep: HealthReport) -> None:
        error = redact_text(rep.error) if rep.error else rep.error  # events leave the process: no credentials
        with self._lock:
            self.stats[camera_id].state = rep.state.value
            for st in CameraState:
                metrics.CAMERA_STATE.labels(camera_id, st.value).set(1 if st == rep.state else 0)
        if rep.changed:
            log.info("camera state", camera=camera_id, state=rep.state.value, error=error, fps=rep.fps)
        self.publisher.publish_health(
            CameraHealth(
                camera_id=camera_id,
                state=rep.state,
                fps=rep.fps,
                last_frame_time=rep.last_frame_time,
                frames_published=rep.frames,
                error=error,
                producer=self.pid,
            )
        )

    def _tick(self) -> None:
        while not self._done.wait(0.2):
            t = time.monotonic()
            for cid, tr in self.trackers.items():
                rep = tr.tick(t)
                if rep is not None:
                    self.emit(cid, rep)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=2)


def run_cameras(
    settings: Settings,
    cameras: Iterable[CameraConfig] | None = None,
    stop_event: threading.Event | None = None,
    *,
    speed: float | None = 1.0,
    max_frames: int | None = None,
    preload: bool = False,
    producer_id: str | None = None,
    flush_timeout_s: float = 10.0,
    source_factory: SourceFactory = open_source,
) -> dict[str, CameraStats]:
    """Publish the cameras' frames until every finite source has ended or ``stop_event`` is set.

    ``speed``: files and folders play at this multiple of real time (None: as fast as possible).
    ``max_frames``: stop each camera after this many sampled frames. ``preload``: decode each
    video file once (sampled, downsized, encoded) and play it from memory — many cameras on few
    cores (benchmarks, demos); live sources are unaffected. Returns per-camera stats
    (``published`` counts frames the broker acknowledged). Blocks; run it in a thread to do
    something else meanwhile.
    """
    cams = [c for c in (settings.cameras if cameras is None else cameras) if c.enabled]
    external_stop = stop_event or threading.Event()
    stop = threading.Event()  # ours: set when the caller asks or when every camera is done
    pid = producer_id or default_producer_id()
    metrics.start_metrics_server(settings.producer.metrics_port)
    stats = {c.id: CameraStats(c.id) for c in cams}
    publisher = FramePublisher(settings, pid, stats)
    publisher.start()
    health = HealthHub(settings, cams, stats, publisher, pid)
    workers = [
        CameraWorker(
            c, settings, publisher, health.trackers[c.id], stats[c.id], stop, producer_id=pid, emit_health=health.emit,
            speed=speed, max_frames=max_frames, preload=preload, source_factory=source_factory,
        )
        for c in cams
    ]
    health.start()
    log.info("producer started", cameras=len(cams), producer=pid, bootstrap=settings.kafka.bootstrap)
    try:
        _run_until_done(workers, external_stop)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=10)
        health.stop()
        publisher.close(flush_timeout_s)
    log.info(
        "producer stopped",
        cameras=len(stats),
        published=sum(s.published for s in stats.values()),
        dropped=sum(sum(s.dropped.values()) for s in stats.values()),
    )
    return stats


def _run_until_done(workers: list[CameraWorker], stop: threading.Event) -> None:
    """Start the camera threads; return when all have ended or ``stop`` is set."""
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers) and not stop.is_set():
        time.sleep(0.1)
