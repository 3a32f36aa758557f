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
    p = settings.producer
    metrics.start_metrics_server(p.metrics_port)
    stats = {c.id: CameraStats(c.id) for c in cams}
    publisher = FramePublisher(settings, pid, stats)
    publisher.start()
    now = time.monotonic()
    trackers = {
        c.id: HealthTracker(
            stall_after_s=p.stall_after_s, offline_after_s=p.offline_after_s, heartbeat_s=p.heartbeat_s, start=now
        )
        for c in cams
    }
    lock = threading.Lock()

    def emit(camera_id: str, rep: HealthReport) -> None:
        error = redact_text(rep.error) if rep.error else rep.error  # events leave the process: no credentials
        with lock:
            stats[camera_id].state = rep.state.value
            for st in CameraState:
                metrics.CAMERA_STATE.labels(camera_id, st.value).set(1 if st == rep.state else 0)
        if rep.changed:
            log.info("camera state", camera=camera_id, state=rep.state.value, error=error, fps=rep.fps)
        publisher.publish_health(
            CameraHealth(
                camera_id=camera_id,
                state=rep.state,
                fps=rep.fps,
                last_frame_time=rep.last_frame_time,
                frames_published=rep.frames,
                error=error,
                producer=pid,
            )
        )

    workers = [
        CameraWorker(
            c,
            settings,
            publisher,
            trackers[c.id],
            stats[c.id],
            stop,
            producer_id=pid,
            emit_health=emit,
            speed=speed,
            max_frames=max_frames,
            preload=preload,
            source_factory=source_factory,
        )
        for c in cams
    ]
    done = threading.Event()

    def ticker() -> None:
        while not done.wait(0.2):
            t = time.monotonic()
            for cid, tr in trackers.items():
                rep = tr.tick(t)
                if rep is not None:
                    emit(cid, rep)

    tick_thread = threading.Thread(target=ticker, name="camera-health", daemon=True)
    tick_thread.start()
    log.info("producer started", cameras=len(cams), producer=pid, bootstrap=settings.kafka.bootstrap)
    for w in workers:
        w.start()
    try:
        while any(w.is_alive() for w in workers) and not external_stop.is_set():
            time.sleep(0.1)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=10)
        done.set()
        tick_thread.join(timeout=2)
        publisher.close(flush_timeout_s)
    log.info(
        "producer stopped",
        cameras=len(stats),
        published=sum(s.published for s in stats.values()),
        dropped=sum(sum(s.dropped.values()) for s in stats.values()),
    )
    return stats
