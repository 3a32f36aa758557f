"""The console's background readers: where its data comes from, and what each costs.

=====================  ============================================================  ===========================
source                 how                                                           cost
=====================  ============================================================  ===========================
``spill-alerts``       TopicReader, every partition from the beginning (no group:    a few records per incident
                       every console instance sees every incident) -> incident
                       index (console/incidents.py), events ``opened`` /
                       ``escalated`` / ``cleared``
``camera-alerts``      TopicReader, every partition from the beginning -> outage     a few records per outage
                       board (console/outages.py), ``spillwatch_camera_outage``
                       gauge, events ``camera`` (change ``outage-opened`` /
                       ``outage-recovered``)
``camera-health``      from ``4 x cameras + 20`` records before the end (the newest  one heartbeat per camera
                       heartbeat of every camera), then live -> camera board +       every ``heartbeat_s``
                       Prometheus gauges, events on state changes
``classifications``    from about ``timeline_before_s + timeline_after_s`` of        every classification
                       records before the end, then live -> newest spill             (~1 KB each; 100 cameras
                       probability per camera, score history, incident timelines     at 2 fps: ~200 KB/s)
``frames``             every ``thumbnail_interval_s``: the newest ~2 records per     ~2 JPEGs per camera per
                       camera of each partition (``seek_back``), newest per camera   interval (100 cameras,
                       kept in memory as the thumbnail                               10 s: ~0.8 MB/s), not the
                                                                                     stream (~8 MB/s)
acknowledgements       every 2 s, the ack hashes of the open incidents (acks from    one pipelined EXISTS per
                       ``spillwatch ack`` or another console) -> ``acknowledged``    open incident
outage pages           every 2 s, how many pages alerting recorded for the recent    one pipelined HLEN per
                       outages -> event ``camera`` (change ``paged``)                recent outage (<= 50)
=====================  ============================================================  ===========================

Every reader retries on its own (topics not created yet, broker restarts, Redis away); a record
that fails validation is logged and skipped (alerting dead-letters the same records).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from console.cameras import CameraBoard, Sample, effective_state, stale_after_s
from console.incidents import IncidentIndex
from console.live import EventBus
from console.outages import OutageBoard
from spillwatch.events import (
    AlertState,
    CameraAlert,
    CameraHealth,
    CameraState,
    Classification,
    EventError,
    SpillAlert,
    decode_frame,
    utcnow,
)
from spillwatch.logs import get_logger
from spillwatch.metrics import CAMERA_FPS, CAMERA_OUTAGE, CAMERA_UP, LAST_FRAME_TIMESTAMP
from spillwatch.redis_keys import RedisKeys
from spillwatch.settings import Settings
from spillwatch.topic_reader import Received, TopicReader

log = get_logger("console.feeds")

ACK_POLL_S = 2.0
TICK_S = 1.0
CAMERAS_EVENT_S = 5.0
PRUNE_S = 3600.0


class ConsoleFeeds:
    def __init__(self, settings: Settings, redis: Any, index: IncidentIndex, board: CameraBoard, bus: EventBus,
                 outages: OutageBoard | None = None) -> None:
        self.settings = settings
        self.outages = outages if outages is not None else OutageBoard()
        self._outage_pages: dict[str, int] = {}  # outage id -> page records seen
        self.cfg = settings.console
        self.r = redis
        self.keys = RedisKeys(settings.redis.key_prefix)
        self.index = index
        self.board = board
        self.bus = bus
        self.stale_after_s = stale_after_s(settings.producer.offline_after_s, settings.producer.heartbeat_s)
        self.alerts_ready = threading.Event()  # the alerts topic was read to its end once
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._readers: list[TopicReader] = []
        self._lock = threading.Lock()
        self._timelines: dict[str, list[tuple[str, float, float, int | None]]] = {}
        self._shown: dict[str, str] = {}  # camera -> effective state last announced
        self._acked: set[str] = set()
        self._dirty = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ConsoleFeeds:
        self._load_cameras()
        loops: list[tuple[str, Callable[[], None]]] = [
            ("console-alerts", self._alerts_loop),
            ("console-outages", self._outages_loop),
            ("console-health", self._health_loop),
            ("console-scores", self._scores_loop),
            ("console-watch", self._watch_loop),
        ]
        if self.cfg.thumbnail_interval_s > 0:
            loops.append(("console-thumbs", self._thumbs_loop))
        for name, fn in loops:
            t = threading.Thread(target=fn, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        with self._lock:
            readers, self._readers = self._readers, []
        for r in readers:
            try:
                r.close()
            except Exception:  # noqa: BLE001
                pass

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def _reader(self, topics: list[str], **kw: Any) -> TopicReader | None:
        """A reader once the topics exist (retried with backoff until stopped)."""
        backoff = 1.0
        while not self._stop.is_set():
            try:
                r = TopicReader(self.settings, topics, wait_topics_s=10, client_id="spillwatch-console", **kw)
                with self._lock:
                    self._readers.append(r)
                return r
            except Exception as exc:  # noqa: BLE001 - topics missing, broker away: try again
                log.warning("console reader not ready; retrying", topics=topics, error=f"{type(exc).__name__}: {exc}")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        return None

    def _run_reader(self, topics: list[str], handler: Callable[[Received], None], *, first: Callable[[TopicReader], None] | None = None,
                    **kw: Any) -> None:
        """Read ``topics`` in this thread until stopped; a failing reader is replaced."""
        while not self._stop.is_set():
            reader = self._reader(topics, handler=self._guard(handler), keep=False, **kw)
            if reader is None:
                return
            try:
                if first is not None:
                    first(reader)
                while not self._stop.is_set():
                    reader.poll(timeout_ms=200)
            except Exception as exc:  # noqa: BLE001 - broker trouble: a new reader resumes
                self.errors.append(f"{topics}: {type(exc).__name__}: {exc}")
                log.warning("console reader failed; restarting", topics=topics, error=f"{type(exc).__name__}: {exc}")
                self._stop.wait(2.0)
            finally:
                with self._lock:
                    if reader in self._readers:
                        self._readers.remove(reader)
                reader.close()

    def _guard(self, handler: Callable[[Received], None]) -> Callable[[Received], None]:
        """Skip malformed records; retry a record whose handling failed (Redis away) until it works."""

        def run(rec: Received) -> None:
            backoff = 0.5
            while not self._stop.is_set():
                try:
                    handler(rec)
                    return
                except (EventError, UnicodeDecodeError, ValueError) as exc:
                    log.warning("malformed record skipped", topic=rec.topic, offset=rec.offset, error=str(exc)[:300])
                    return
                except Exception as exc:  # noqa: BLE001 - e.g. Redis down: hold the record and retry
                    log.warning("record not handled; retrying", topic=rec.topic, error=f"{type(exc).__name__}: {exc}")
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)

        return run

    # ------------------------------------------------------------------ spill-alerts
    def _alerts_loop(self) -> None:
        def first(reader: TopicReader) -> None:
            reader.wait_caught_up(timeout_s=300)
            self.alerts_ready.set()
            log.info("incident index up to date")

        self._run_reader([self.settings.topics.spill_alerts], self.on_alert, first=first)

    def on_alert(self, rec: Received) -> None:
        if rec.value is None:
            return
        alert = SpillAlert.from_bytes(rec.value)
        change = self.index.ingest(alert)
        if alert.state == AlertState.CONFIRMED:
            self._open_timeline(alert)
        if change is not None and change != "updated":
            if change == "cleared":
                with self._lock:
                    self._acked.discard(alert.incident_id)
            self.bus.publish({"type": "incident", "incident_id": alert.incident_id, "camera_id": alert.camera_id, "change": change})
            log.info("incident", incident=alert.incident_id, camera=alert.camera_id, change=change)

    # ------------------------------------------------------------------ camera-alerts
    def _outages_loop(self) -> None:
        self._run_reader([self.settings.topics.camera_alerts], self.on_camera_alert)

    def on_camera_alert(self, rec: Received) -> None:
        if rec.value is None:
            return
        alert = CameraAlert.from_bytes(rec.value)
        known = {c.id for c in self.settings.cameras if c.enabled}
        if known and alert.camera_id not in known:
            log.warning("camera alert of an unknown camera skipped", camera=alert.camera_id, outage=alert.incident_id)
            return
        change = self.outages.ingest(alert)
        if change is None:
            return
        newest = self.outages.open_for(alert.camera_id)
        CAMERA_OUTAGE.labels(camera=alert.camera_id).set(1 if newest is not None else 0)
        self._dirty = True
        self.bus.publish({"type": "camera", "camera_id": alert.camera_id, "outage_id": alert.incident_id,
                          "change": f"outage-{change}"})
        log.info("camera outage", camera=alert.camera_id, outage=alert.incident_id, change=change)

    def _poll_outage_pages(self) -> None:
        """Announce a camera when alerting recorded a page (sent or given up) for one of its recent outages."""
        recs = self.outages.recent(50)
        if not recs:
            return
        pipe = self.r.pipeline(transaction=False)
        for o in recs:
            pipe.hlen(self.keys.alerting_incident_pages(o.incident_id))
        for o, n in zip(recs, pipe.execute(), strict=True):
            if self._outage_pages.get(o.incident_id, 0) != n:
                self._outage_pages[o.incident_id] = n
                self.bus.publish({"type": "camera", "camera_id": o.camera_id, "outage_id": o.incident_id, "change": "paged"})

    def _open_timeline(self, alert: SpillAlert) -> None:
        """Keep the scores from ``timeline_before_s`` before the first suspicious frame to
        ``timeline_after_s`` after the confirmation (those known now, and those still to come)."""
        start = alert.first_seen.timestamp() - self.cfg.timeline_before_s
        end = alert.confirmed_at.timestamp() + self.cfg.timeline_after_s
        if end < time.time() - self.board.history_s:
            return  # an old incident replayed at start-up: its scores are gone
        cseq = alert.evidence.confirming_seq
        with self._lock:
            spans = self._timelines.setdefault(alert.camera_id, [])
            if any(s[0] == alert.incident_id for s in spans):
                return
            spans.append((alert.incident_id, start, end, cseq))
        samples = self.board.scores_between(alert.camera_id, start, end)
        self.index.add_timeline(alert.incident_id, [(s.seq, s.t, s.p) for s in samples])
        confirming = self.board.sample(alert.camera_id, cseq) if cseq is not None else None
        if confirming is not None and confirming.spill_map:
            self.index.set_spill_map(alert.incident_id, confirming.spill_map)

    # ------------------------------------------------------------------ classifications
    def _scores_loop(self) -> None:
        t = self.settings.topics
        n_cams = max(1, len(self.settings.cameras))
        fps = max([c.fps for c in self.settings.cameras] or [2.0])
        per_part = math.ceil(n_cams / max(1, self.settings.kafka.partitions)) * fps * (self.cfg.timeline_before_s + self.cfg.timeline_after_s)
        self._run_reader([t.classifications], self.on_classification, lookback=int(min(5000, per_part + 10)))

    def on_classification(self, rec: Received) -> None:
        if rec.value is None:
            return
        c = Classification.from_bytes(rec.value)
        s = Sample(c.seq, c.capture_time.timestamp(), c.spill_prob, c.spill_map)
        self.board.add_score(c.camera_id, s)
        self._dirty = True
        with self._lock:
            spans = list(self._timelines.get(c.camera_id, ()))
            self._timelines[c.camera_id] = [sp for sp in spans if sp[2] >= s.t - 5.0]  # done after their end
        for inc, start, end, cseq in spans:
            if start <= s.t <= end:
                self.index.add_timeline(inc, [(s.seq, s.t, s.p)])
                if cseq == s.seq and s.spill_map:
                    self.index.set_spill_map(inc, s.spill_map)

    # ------------------------------------------------------------------ camera-health
    def _load_cameras(self) -> None:
        """Show the last known state at once after a restart (the topic then brings it up to date)."""
        try:
            for cam in self.r.smembers(self.keys.console_cameras):
                raw = self.r.get(self.keys.console_camera(cam.decode() if isinstance(cam, bytes) else cam))
                if raw:
                    self.board.set_health(CameraHealth.from_bytes(raw))
        except Exception as exc:  # noqa: BLE001 - Redis away at start: the topic fills the board
            log.warning("camera states not loaded from Redis", error=f"{type(exc).__name__}: {exc}")

    def _health_loop(self) -> None:
        n_cams = max(len(self.settings.cameras), len(self.board.cameras()), 1)
        self._run_reader([self.settings.topics.camera_health], self.on_health, lookback=4 * n_cams + 20)

    def on_health(self, rec: Received) -> None:
        if rec.value is None:
            return
        h = CameraHealth.from_bytes(rec.value)
        old = self.board.set_health(h)
        if old is not None and old.at > h.at:
            return  # an older heartbeat than the one shown
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self.keys.console_camera(h.camera_id), h.to_bytes())
        pipe.sadd(self.keys.console_cameras, h.camera_id)
        pipe.execute()
        if h.last_frame_time is not None:
            LAST_FRAME_TIMESTAMP.labels(camera=h.camera_id).set(h.last_frame_time.timestamp())
        CAMERA_FPS.labels(camera=h.camera_id).set(h.fps)
        CAMERA_UP.labels(camera=h.camera_id).set(1 if h.state == CameraState.ONLINE else 0)
        self._dirty = True
        self._announce(h.camera_id)

    def _announce(self, camera: str) -> None:
        """Publish a camera event when the state it shows changed (a report or silence)."""
        state, reason = effective_state(self.board.health(camera), utcnow(), self.stale_after_s)
        with self._lock:
            if self._shown.get(camera) == state:
                return
            self._shown[camera] = state
        if state == "offline" and reason and reason.startswith("no heartbeat"):
            CAMERA_UP.labels(camera=camera).set(0)
        self.bus.publish({"type": "camera", "camera_id": camera, "state": state})
        log.info("camera state", camera=camera, state=state, reason=reason)

    # ------------------------------------------------------------------ frames -> thumbnails
    def _thumbs_loop(self) -> None:
        reader = self._reader([self.settings.topics.frames], handler=self._guard(self.on_frame), keep=False, lookback=0)
        if reader is None:
            return
        try:
            while not self._stop.is_set():
                n_cams = max(len(self.settings.cameras), len(self.board.cameras()), 1)
                k = 2 * math.ceil(n_cams / max(1, self.settings.kafka.partitions)) + 2
                try:
                    ends = reader.seek_back(k)
                    reader.read_to(ends, timeout_s=min(10.0, self.cfg.thumbnail_interval_s))
                except Exception as exc:  # noqa: BLE001 - broker trouble: next interval
                    log.warning("thumbnails not read", error=f"{type(exc).__name__}: {exc}")
                self._stop.wait(self.cfg.thumbnail_interval_s)
        finally:
            reader.close()

    def on_frame(self, rec: Received) -> None:
        if rec.value is None:
            return
        f = decode_frame(rec.value, max_bytes=self.settings.limits.frame_bytes)
        self.board.set_thumbnail(f.header.camera_id, f.jpeg, f.header.capture_time)
        self._dirty = True

    # ------------------------------------------------------------------ acks, silence, housekeeping
    def _watch_loop(self) -> None:
        last_ack = last_cameras = last_prune = 0.0
        while not self._stop.wait(TICK_S):
            now = time.monotonic()
            try:
                for cam in self.board.cameras():
                    self._announce(cam)
                if now - last_ack >= ACK_POLL_S:
                    last_ack = now
                    self._poll_acks()
                    self._poll_outage_pages()
                if self._dirty and now - last_cameras >= CAMERAS_EVENT_S:
                    last_cameras, self._dirty = now, False
                    self.bus.publish({"type": "cameras"})
                if now - last_prune >= PRUNE_S:
                    last_prune = now
                    self.index.prune(time.time())
            except Exception as exc:  # noqa: BLE001 - Redis away: next tick
                log.warning("console watcher error", error=f"{type(exc).__name__}: {exc}")

    def _poll_acks(self) -> None:
        ids = self.index.open_ids()[:500]
        if not ids:
            return
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.exists(self.keys.ack(i))
        for inc, acked in zip(ids, pipe.execute(), strict=True):
            if acked:
                self.note_acked(inc)

    def note_acked(self, incident_id: str, camera_id: str | None = None) -> None:
        with self._lock:
            if incident_id in self._acked:
                return
            self._acked.add(incident_id)
        if camera_id is None:
            rec = self.index.get(incident_id)
            camera_id = rec.camera_id if rec else None
        self.bus.publish({"type": "incident", "incident_id": incident_id, "camera_id": camera_id, "change": "acknowledged"})

