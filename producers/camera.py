"""One camera: open its source, sample, downsize, encode, publish; reconnect with backoff."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from producers.backoff import Backoff
from producers.health import HealthReport, HealthTracker
from producers.imaging import downsize, encode_jpeg
from producers.publisher import CameraStats, FramePublisher
from producers.sampling import Pacer, RateSampler
from producers.sources import EndOfStream, FrameDecodeError, Source, SourceError, open_source, redact
from spillwatch.events import FrameHeader, new_epoch, utcnow
from spillwatch.logs import get_logger
from spillwatch.redact import redact_text
from spillwatch.settings import CameraConfig, Settings

log = get_logger("producers.camera")

SourceFactory = Callable[..., Source]


class CameraWorker(threading.Thread):
    """Runs one camera until its finite source ends, ``max_frames`` are sampled, or ``stop`` is set.

    ``speed`` paces files and folders: 1.0 = real time (capture time = wall clock when sampled),
    N = N x faster, None = as fast as possible (capture time = start + media time, so the clip's
    timeline is kept). Live streams are always sampled by wall clock.
    """

    def __init__(
        self,
        cfg: CameraConfig,
        settings: Settings,
        publisher: FramePublisher,
        tracker: HealthTracker,
        stats: CameraStats,
        stop: threading.Event,
        *,
        producer_id: str,
        emit_health: Callable[[str, HealthReport], None],
        speed: float | None = 1.0,
        max_frames: int | None = None,
        preload: bool = False,
        source_factory: SourceFactory = open_source,
    ) -> None:
        super().__init__(name=f"camera-{cfg.id}", daemon=True)
        self.cfg = cfg
        self.settings = settings
        self.publisher = publisher
        self.tracker = tracker
        self.stats = stats
        self.stop = stop
        self.producer_id = producer_id
        self.emit_health = emit_health
        self.speed = speed
        self.max_frames = max_frames
        self.source_factory = source_factory
        self.preload = preload
        # seq numbers frames within this run; the epoch names the run (restart-safe identity of the
        # sequence: the aggregator keeps one high-water mark per epoch, processors/confirmation.py)
        self.epoch = new_epoch()
        self.seq = int(time.time() * 1000) if settings.producer.seq_from_clock else 0
        self._last_capture: datetime | None = None
        self._uri = redact(cfg.source)
        self.log = log.bind(camera=cfg.id, source=self._uri)

    def run(self) -> None:
        p = self.settings.producer
        backoff = Backoff(p.reconnect_initial_s, p.reconnect_max_s)
        reason = "producer stopped"
        try:
            src = self.source_factory(
                self.cfg.source,
                fps=self.cfg.fps,
                loop=self.cfg.loop,
                preload=self.preload,
                max_width=self.cfg.max_width,
                jpeg_quality=self.cfg.jpeg_quality,
            )
        except Exception as exc:  # noqa: BLE001 - a bad source string must not kill the producer
            self.log.error("invalid camera source", error=str(exc))
            self._end(f"invalid source: {exc}")
            return
        while not self.stop.is_set():
            try:
                src.open()
                self.log.info("source opened")
                if self._pump(src, backoff):
                    reason = "max frames reached" if self._at_max() else "source ended"
                    break
            except SourceError as exc:
                self.stats.reconnects += 1
                self.tracker.on_error(time.monotonic(), redact_text(str(exc)))
                delay = backoff.next_delay()
                self.log.warning("source failed, reconnecting", error=str(exc), retry_in_s=round(delay, 2))
                self.stop.wait(delay)
            except Exception as exc:  # noqa: BLE001 - never let one camera take the process down
                self.stats.reconnects += 1
                self.tracker.on_error(time.monotonic(), redact_text(repr(exc)))
                delay = backoff.next_delay()
                self.log.exception("unexpected error, reconnecting", retry_in_s=round(delay, 2))
                self.stop.wait(delay)
            finally:
                src.close()
        self._end(reason)

    def _end(self, reason: str) -> None:
        reason = redact_text(reason)  # it reaches the stats file, the CLI output and camera-health
        self.stats.ended = reason
        rep = self.tracker.on_end(time.monotonic(), reason)
        if rep is not None:
            self.emit_health(self.cfg.id, rep)

    def _at_max(self) -> bool:
        return self.max_frames is not None and self.stats.sampled >= self.max_frames

    def _pump(self, src: Source, backoff: Backoff) -> bool:
        """Read until the source ends (True) or ``stop`` (False); SourceError propagates."""
        sampler = RateSampler(self.cfg.fps)
        pacer = Pacer(None if src.live else self.speed)
        realtime = src.live or self.speed is not None
        wall0 = utcnow()
        if self._last_capture is not None and wall0 <= self._last_capture:
            wall0 = self._last_capture + timedelta(seconds=1 / self.cfg.fps)
        t_first: float | None = None
        while not self.stop.is_set():
            try:
                raw = src.read(decode=False)
            except EndOfStream:
                return True
            t = raw.media_time
            if not sampler.offer(t):
                continue
            if t_first is None:
                t_first = t
            delay = pacer.delay(t, time.monotonic())
            if delay > 0 and self.stop.wait(delay):
                return False
            capture = utcnow() if realtime else wall0 + timedelta(seconds=t - t_first)
            if raw.encoded is not None:
                jpeg, w, h = raw.encoded.jpeg, raw.encoded.width, raw.encoded.height
            else:
                try:
                    image = raw.image if raw.image is not None else src.decode_last()
                except FrameDecodeError as exc:
                    self.publisher.count_drop(self.cfg.id, "undecodable")
                    self.log.warning("frame skipped", error=str(exc))
                    continue
                image = downsize(image, self.cfg.max_width)
                jpeg = encode_jpeg(image, self.cfg.jpeg_quality)
                h, w = image.shape[:2]
            header = FrameHeader(
                camera_id=self.cfg.id,
                seq=self.seq,
                epoch=self.epoch,
                capture_time=capture,
                width=w,
                height=h,
                producer=self.producer_id,
                source_uri=self._uri,
                label=raw.label,
            )
            if self.stats.first_seq is None:
                self.stats.first_seq = self.seq
            self.stats.last_seq = self.seq
            self.seq += 1
            self.stats.sampled += 1
            self._last_capture = capture
            self.publisher.publish_frame(header, jpeg)
            backoff.reset()
            rep = self.tracker.on_frame(time.monotonic(), capture)
            if rep is not None:
                self.emit_health(self.cfg.id, rep)
            if self._at_max():
                return True
        return False
