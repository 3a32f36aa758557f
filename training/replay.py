"""``spillwatch replay``: republish frames through the real pipeline in an isolated namespace.

producer (producers.publisher.FramePublisher) -> broker -> classifier workers -> aggregator ->
alerting (dry run), each service a subprocess of the ``spillwatch`` CLI (``worker``, ``aggregator``,
``alerting --dry-run``) in a :class:`~spillwatch.supervisor.ServiceGroup`, which hands them the
replay's settings as their only configuration (nothing of the live namespace leaks in). The namespace:
topic prefix ``<live prefix>replay-<id>.``, Redis key prefix
``<live key prefix>:replay-<id>``, alerting in dry-run with no acknowledgement port and escalation
off, evidence under the replay's work folder. A live system on the same broker and Redis is not
touched: other topics, other keys, no notifier is even built.

Learned suppressions (docs/suppression.md): the live namespace's suppressions of the replayed
cameras are copied into the replay's namespace before its workers start (``suppression=False`` /
``--no-suppression``: none), so a replay shows what the cameras do today. The report gives the
incidents with suppression (what the pipeline did) and without (the recorded classifications fed
again through the aggregator's state machine with their suppression marks dropped:
``spillwatch aggregate --without-suppression``, processors/offline.py), and false incidents per
camera-hour for both.

Frames keep their original capture times (the aggregator confirms on capture times and sequence
numbers, so ``--speed`` changes wall time, not incidents); ``--speed 0`` publishes as fast as the
publisher goes, ``--speed X`` keeps X times real time with each pause capped at ``max_pause_s``.
The replay waits until every published frame is classified or dead-lettered, the aggregator's
Redis state has seen each camera's last frame with an empty alert outbox, and every confirmed
incident has its dry-run page; then it stops what it started, deletes the namespace's topics and
Redis keys (unless ``keep``), and returns the report (training/replay_metrics.py).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spillwatch.events import Classification, DeadLetter, EventError, FrameHeader, SpillAlert, decode_frame
from spillwatch.logs import get_logger
from spillwatch.redis_keys import RedisKeys
from spillwatch.settings import CameraConfig, Settings
from spillwatch.supervisor import ServiceError, ServiceGroup
from spillwatch.topic_reader import Received, TopicReader
from training.replay_metrics import ObservedIncident, ReplayedFrame, frame_level, incident_metrics, suppression_report
from training.replay_sources import SourceFrame

log = get_logger("training.replay")


MAX_IN_FLIGHT = 256


class ReplayError(RuntimeError):
    """The replay could not run (services did not start, timeout)."""


@dataclass
class ReplayOptions:
    model: Path | None = None
    speed: float = 0.0
    fps: float = 2.0
    local: bool = False
    workers: int = 1
    timeout_s: float = 600.0
    max_pause_s: float = 5.0
    threshold: float | None = None
    tolerance_s: float = 10.0
    keep: bool = False
    alerting: bool = True
    progress: bool = True
    replay_id: str | None = None
    work_dir: Path | None = None
    source: str = ""
    suppression: bool = True  # copy the live suppressions of the replayed cameras into the replay


# --------------------------------------------------------------------------- namespace settings


def replay_settings(base: Settings, replay_id: str, cameras: list[str], opts: ReplayOptions, work_dir: Path, n_frames: int) -> Settings:
    """The live settings moved into the replay's namespace (pure)."""
    cams: list[CameraConfig] = []
    for cam in cameras:
        live = base.camera(cam)
        cams.append(live.model_copy(update={"source": f"replay:{replay_id}"}) if live else CameraConfig(id=cam, source=f"replay:{replay_id}"))
    upd = {
        "kafka": base.kafka.model_copy(update={"topic_prefix": f"{base.kafka.topic_prefix}replay-{replay_id}."}),
        "redis": base.redis.model_copy(update={"key_prefix": f"{base.redis.key_prefix}:replay-{replay_id}"}),
        "cameras": cams,
        "worker": base.worker.model_copy(
            update={"model_path": Path(opts.model or base.worker.model_path).resolve(), "web_port": None, "metrics_port": None}
        ),
        "aggregator": base.aggregator.model_copy(update={"escalate_after_s": 1e9, "metrics_port": None}),
        # no producer sends heartbeats in a replay: the camera monitor would page every camera offline
        "outages": base.outages.model_copy(update={"enabled": False}),
        "alerting": base.alerting.model_copy(
            update={
                "dry_run": True,
                "escalation_channels": [],
                "escalate_after_s": 1e9,
                "evidence_dir": work_dir / "evidence",
                "metrics_port": None,
            }
        ),
        # the replay keeps at most MAX_IN_FLIGHT frames unacknowledged itself (no drops); the
        # publisher's bound sits well above that
        "producer": base.producer.model_copy(update={"max_pending_frames": 4 * MAX_IN_FLIGHT + 16, "metrics_port": None}),
        "archive": base.archive.model_copy(update={"metrics_port": None}),
    }
    return base.model_copy(update=upd)


# --------------------------------------------------------------------------- collecting results


@dataclass
class Collected:
    scores: dict[tuple[str, int], float] = field(default_factory=dict)
    classified_at: dict[tuple[str, int], float] = field(default_factory=dict)
    dead: dict[tuple[str, int], str] = field(default_factory=dict)
    dead_unknown: int = 0
    alerts: list[SpillAlert] = field(default_factory=list)
    alert_seen_at: dict[str, float] = field(default_factory=dict)
    classifications: list[bytes] = field(default_factory=list)  # first of each frame, in arrival order
    suppressed: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # frame -> entries that suppressed cells


class Collector:
    """Reads the namespace's classifications, frame dead letters and alerts from the beginning."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.out = Collected()
        t = settings.topics
        self._reader = TopicReader(settings, [t.classifications, t.dead_letter(t.frames), t.spill_alerts], wait_topics_s=30,
                                   handler=self._one, keep=False, client_id="replay-collector")
        self.lock = self._reader.lock

    @property
    def error(self) -> str | None:
        return self._reader.error

    def start(self) -> Collector:
        self._reader.start()
        return self

    def close(self) -> None:
        self._reader.close()

    def _one(self, rec: Received) -> None:
        t = self.settings.topics
        if rec.value is None:
            return
        try:
            if rec.topic == t.classifications:
                c = Classification.from_bytes(rec.value)
                key = (c.camera_id, c.seq)
                if key not in self.out.scores:
                    self.out.scores[key] = c.spill_prob
                    self.out.classified_at[key] = rec.received_at
                    self.out.classifications.append(rec.value)
                    if c.suppressed:
                        self.out.suppressed[key] = [s.entry for s in c.suppressed]
            elif rec.topic == t.spill_alerts:
                a = SpillAlert.from_bytes(rec.value)
                self.out.alerts.append(a)
                self.out.alert_seen_at.setdefault(f"{a.incident_id}:{a.state.value}", rec.received_at)
            else:
                dl = DeadLetter.from_bytes(rec.value)
                try:
                    h = decode_frame(dl.payload()).header
                    self.out.dead[(h.camera_id, h.seq)] = dl.reason
                except EventError:
                    self.out.dead_unknown += 1
        except EventError as exc:
            log.warning("replay collector skipped a record", topic=rec.topic, reason=str(exc))

    def wait_caught_up(self, timeout_s: float) -> None:
        try:
            self._reader.wait_caught_up(timeout_s)
        except TimeoutError as exc:
            raise ReplayError(str(exc)) from exc

    def done(self) -> int:
        """Frames accounted for: classified or dead-lettered."""
        with self.lock:
            return len(self.out.scores) + len(self.out.dead) + self.out.dead_unknown


# --------------------------------------------------------------------------- the replay


def _jpeg_wh(data: bytes) -> tuple[int, int]:
    from spillwatch.model import _jpeg_size

    wh = _jpeg_size(data)
    if wh is not None:
        return wh
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return (img.shape[1], img.shape[0]) if img is not None else (1, 1)


def _threshold(settings: Settings, opts: ReplayOptions) -> tuple[float, str]:
    from spillwatch.model_card import ModelError, card_path_for, read_card

    model = Path(settings.worker.model_path)
    cp = card_path_for(model)
    if not model.is_file() or not cp.is_file():
        raise ReplayError(f"model {model} or its card {cp.name} not found (give --model)")
    try:
        card = read_card(cp)
    except ModelError as exc:
        raise ReplayError(str(exc)) from None
    thr = opts.threshold if opts.threshold is not None else settings.aggregator.threshold
    return (float(thr) if thr is not None else card.threshold), card.version


def _agg_caught_up(redis: Any, keys: RedisKeys, last_seq: dict[str, int]) -> bool:
    """The aggregator's Redis state has seen each camera's last classified frame and holds no
    unpublished alert."""
    for cam, seq in last_seq.items():
        raw = redis.get(keys.agg_state(cam))
        if raw is None:
            return False
        try:
            got = json.loads(raw).get("last_seq")
        except ValueError:
            return False
        if got is None or int(got) < seq:
            return False
    return int(redis.hlen(keys.agg_outbox)) == 0


def _pages(redis: Any, keys: RedisKeys) -> list[dict[str, Any]]:
    """Page records of alerting (sent or dry-run)."""
    return [json.loads(x) for x in redis.lrange(keys.alerting_pages, 0, -1)]


def copy_suppressions(base: Settings, rs: Settings, redis: Any, cameras: list[str]) -> int:
    """Copy the live namespace's suppressions of ``cameras`` into the replay's (before its workers
    start, which read them once at start)."""
    from spillwatch.suppression_store import parse_entries

    live, mine = RedisKeys(base.redis.key_prefix), RedisKeys(rs.redis.key_prefix)
    entries = [e for e in parse_entries(redis.hgetall(live.supp_entries)) if e.camera_id in set(cameras)]
    if entries:
        redis.hset(mine.supp_entries, mapping={e.id: e.model_dump_json() for e in entries})
        redis.incr(mine.supp_version)
    return len(entries)


def aggregate_without_suppression(rs: Settings, classifications: list[bytes], work_dir: Path) -> list[SpillAlert]:
    """The replay's classifications through the aggregator's state machine, suppression marks
    dropped: ``spillwatch aggregate --without-suppression`` as a child process (the processors'
    code, behind the CLI like every service the replay runs)."""
    import subprocess
    import sys

    from spillwatch.settings import REPO_ROOT, write_settings_file
    from spillwatch.supervisor import child_env

    src, out = work_dir / "classifications.jsonl", work_dir / "alerts-without-suppression.json"
    src.write_bytes(b"".join(v.rstrip(b"\n") + b"\n" for v in classifications))
    cfg = write_settings_file(rs, work_dir / "aggregate.settings.yaml")
    res = subprocess.run([sys.executable, "-m", "spillwatch.cli", "aggregate", str(src), "--out", str(out), "--without-suppression"],
                         env=child_env(cfg), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    if res.returncode != 0:
        raise ReplayError(f"recomputing the incidents without suppression failed: {res.stderr.strip()[-500:]}")
    return [SpillAlert.model_validate(a) for a in json.loads(out.read_text())]


def cleanup_namespace(settings: Settings, redis: Any) -> dict[str, int]:
    """Delete the replay namespace's topics and Redis keys (only those: the prefix is unique)."""
    from spillwatch.kafka import delete_topics_with_prefix

    keys = RedisKeys(settings.redis.key_prefix)
    if ":replay-" not in keys.prefix or "replay-" not in settings.kafka.topic_prefix:
        raise ReplayError("refusing to clean a namespace that is not a replay's")
    n_keys = 0
    batch: list[Any] = []
    for k in redis.scan_iter(match=keys.everything, count=1000):
        batch.append(k)
        if len(batch) >= 500:
            n_keys += int(redis.delete(*batch))
            batch = []
    if batch:
        n_keys += int(redis.delete(*batch))
    n_topics = 0
    try:
        n_topics = delete_topics_with_prefix(settings, settings.kafka.topic_prefix)
    except Exception as exc:  # noqa: BLE001 - leftover topics are harmless, say so
        log.warning("could not delete the replay topics", error=repr(exc))
    return {"redis_keys": n_keys, "topics": n_topics}


def run_replay(frames: list[SourceFrame], base: Settings, opts: ReplayOptions) -> dict[str, Any]:
    """Replay ``frames`` through the pipeline; returns the report (see the module docstring)."""
    if not frames:
        raise ReplayError("nothing to replay: no frames")
    with contextlib.ExitStack() as stack:
        if opts.local:
            from devstack.stack import LocalStack

            local = stack.enter_context(LocalStack())
            base = base.model_copy(update={
                "kafka": base.kafka.model_copy(update={"bootstrap": local.bootstrap}),
                "redis": base.redis.model_copy(update={"url": local.redis_url}),
            })
        if opts.work_dir is None:
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="spillwatch-replay-")))
        else:
            work_dir = Path(opts.work_dir)
            work_dir.mkdir(parents=True, exist_ok=True)
        return _run(frames, base, opts, work_dir)


@dataclass
class _Published:
    """What the replay published: when each frame was acknowledged for sending, per-camera stats."""

    at: dict[tuple[str, int], float]
    stats: dict[str, Any]


def _run(frames: list[SourceFrame], base: Settings, opts: ReplayOptions, work_dir: Path) -> dict[str, Any]:
    import redis as redis_lib

    from spillwatch.kafka import create_topics

    rid = opts.replay_id or uuid.uuid4().hex[:8]
    frames = sorted(frames, key=lambda f: f.capture_time)  # stable: source order among equal times
    cameras = list(dict.fromkeys(f.camera for f in frames))
    rs = replay_settings(base, rid, cameras, opts, work_dir, len(frames))
    threshold, model_version = _threshold(rs, opts)
    keys = RedisKeys(rs.redis.key_prefix)
    rds = redis_lib.Redis.from_url(rs.redis.url, decode_responses=True, socket_timeout=10)
    rds.ping()
    copied = copy_suppressions(base, rs, rds, cameras) if opts.suppression else 0
    create_topics(rs, timeout_s=60)
    log.info("replay namespace ready", id=rid, topic_prefix=rs.kafka.topic_prefix, redis_prefix=rs.redis.key_prefix,
             frames=len(frames), cameras=len(cameras))
    t_start = time.time()
    deadline = time.monotonic() + opts.timeout_s
    published = _Published({}, {})
    collector: Collector | None = None
    error: str | None = None
    group = ServiceGroup(rs, work_dir)
    try:
        for _ in range(max(1, opts.workers)):
            group.start("worker")
        group.start("aggregator")
        if opts.alerting:
            group.start(["alerting", "--dry-run"], name="alerting")
        collector = Collector(rs).start()
        published = _publish_all(frames, rs, rid, opts, deadline)
        _wait_settled(group, collector, rds, keys, rs, opts, published, deadline)
    except (ReplayError, ServiceError) as exc:
        error = str(exc)
        log.error("replay failed", error=error)
    finally:
        if collector is not None:
            collector.close()
        group.stop_together(20)
    pages = _pages(rds, keys) if opts.alerting else []
    cleaned = {} if opts.keep else cleanup_namespace(rs, rds)
    rds.close()
    if error or collector is None:
        raise ReplayError(error or "replay did not run")
    got = collector.out
    without = aggregate_without_suppression(rs, got.classifications, work_dir) if got.suppressed else None
    return build_report(frames, got, pages, published.at, rs, opts, rid, threshold, model_version,
                        wall_s=time.time() - t_start, cleaned=cleaned, stats=published.stats,
                        without_suppression=without, suppressions_copied=copied)


def _publish_all(frames: list[SourceFrame], rs: Settings, rid: str, opts: ReplayOptions, deadline: float) -> _Published:
    """Publish every frame with its original capture time, at ``opts.speed`` (0: as fast as the
    publisher goes), never more than MAX_IN_FLIGHT unacknowledged (a replay must not drop any)."""
    from tqdm import tqdm

    from producers.publisher import CameraStats, FramePublisher

    stats: dict[str, CameraStats] = {c: CameraStats(c) for c in dict.fromkeys(f.camera for f in frames)}
    published_at: dict[tuple[str, int], float] = {}
    pub = FramePublisher(rs, f"replay-{rid}", stats)
    pub.start()
    try:
        wall0 = time.monotonic()
        virt = 0.0
        prev = frames[0].capture_time
        for f in tqdm(frames, desc="replay: publish", unit="frame", disable=not opts.progress):
            if opts.speed > 0:
                virt += min(max(0.0, (f.capture_time - prev).total_seconds()) / opts.speed, opts.max_pause_s)
                delay = wall0 + virt - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            prev = f.capture_time
            data = f.load()
            w, h = _jpeg_wh(data)
            header = FrameHeader(
                camera_id=f.camera, seq=f.seq, capture_time=f.capture_time, width=w, height=h,
                producer=f"replay-{rid}", source_uri=f.ref[:500], label=f.label,  # type: ignore[arg-type]
            )
            while len(published_at) - sum(s.published + sum(s.dropped.values()) for s in stats.values()) >= MAX_IN_FLIGHT:
                if time.monotonic() > deadline:
                    raise ReplayError("timeout while publishing (broker not acknowledging)")
                time.sleep(0.005)
            if pub.publish_frame(header, data):
                published_at[(f.camera, f.seq)] = time.time()
            if time.monotonic() > deadline:
                raise ReplayError("timeout while publishing")
    finally:
        pub.close(timeout_s=60)
    dropped = {c: s.dropped for c, s in stats.items() if s.dropped}
    if dropped:
        log.warning("frames not published", dropped=dropped)
    return _Published(published_at, stats)


def _wait_settled(group: ServiceGroup, collector: Collector, rds: Any, keys: RedisKeys, rs: Settings, opts: ReplayOptions,
                  published: _Published, deadline: float) -> None:
    """Wait until every published frame is classified (or dead-lettered), the aggregator has seen
    each camera's last frame with an empty outbox, and every confirmed incident has its dry-run pages."""
    from tqdm import tqdm

    n_pub = sum(s.published for s in published.stats.values())

    def check() -> None:
        group.check_alive()
        if collector.error:
            raise ReplayError(f"collector: {collector.error}")
        if time.monotonic() > deadline:
            raise ReplayError(f"timeout: {collector.done()}/{n_pub} frames classified or dead-lettered")

    with tqdm(total=n_pub, desc="replay: classify", unit="frame", disable=not opts.progress) as bar:
        while (done := collector.done()) < n_pub:
            bar.n = min(done, n_pub)
            bar.refresh()
            check()
            time.sleep(0.2)
        bar.n = n_pub
        bar.refresh()
    with collector.lock:
        last_seq: dict[str, int] = {}
        for cam, seq in collector.out.scores:
            last_seq[cam] = max(seq, last_seq.get(cam, seq))
    while not _agg_caught_up(rds, keys, last_seq):
        check()
        time.sleep(0.3)
    collector.wait_caught_up(max(1.0, deadline - time.monotonic()))  # every published alert is read
    if not opts.alerting:
        return
    chans = set(rs.alerting.channels)
    while True:
        with collector.lock:
            confirmed = {a.incident_id for a in collector.out.alerts if a.state.value == "confirmed"}
        paged = {(p["incident_id"], p["channel"]) for p in _pages(rds, keys) if p.get("state") == "confirmed"}
        if all((i, c) in paged for i in confirmed for c in chans):
            return
        check()
        time.sleep(0.3)


def build_report(
    frames: list[SourceFrame],
    got: Collected,
    pages: list[dict[str, Any]],
    published_at: dict[tuple[str, int], float],
    rs: Settings,
    opts: ReplayOptions,
    rid: str,
    threshold: float,
    model_version: str,
    *,
    wall_s: float,
    cleaned: dict[str, int],
    stats: dict[str, Any],
    without_suppression: list[SpillAlert] | None = None,
    suppressions_copied: int = 0,
) -> dict[str, Any]:
    """The report. ``without_suppression``: the alerts recomputed with suppression marks dropped
    (None: no frame was suppressed, so they are the alerts seen)."""
    replayed = [
        ReplayedFrame(f.camera, f.seq, f.capture_time, f.label, got.scores.get((f.camera, f.seq))) for f in frames
    ]
    observed = observed_incidents(got.alerts, published_at, first_page_times(pages))
    inc = incident_metrics(replayed, observed, max_gap_s=rs.aggregator.max_gap_s, tolerance_s=opts.tolerance_s)
    if without_suppression is None:
        inc_without = inc
    else:
        inc_without = incident_metrics(replayed, observed_incidents(without_suppression, {}, {}),
                                       max_gap_s=rs.aggregator.max_gap_s, tolerance_s=opts.tolerance_s)
    per_camera = per_camera_summary(replayed, observed)
    return {
        "replay": {
            "id": rid,
            "source": opts.source,
            "topic_prefix": rs.kafka.topic_prefix,
            "redis_prefix": rs.redis.key_prefix,
            "model": str(rs.worker.model_path),
            "model_version": model_version,
            "threshold": threshold,
            "speed": opts.speed,
            "fps": opts.fps,
            "workers": opts.workers,
            "frames": len(frames),
            "published": sum(s.published for s in stats.values()),
            "classified": len(got.scores),
            "dead_lettered": len(got.dead) + got.dead_unknown,
            "dead_letter_reasons": sorted(set(got.dead.values())),
            "cameras": len(per_camera),
            "wall_s": round(wall_s, 2),
            "cleaned": cleaned,
            "finished_at": datetime.now(UTC).isoformat(),
        },
        "frames": frame_level(replayed, threshold),
        "incidents": inc,
        "alerts": [
            {"incident_id": a.incident_id, "camera": a.camera_id, "state": a.state.value, "first_seen": a.first_seen.isoformat(),
             "confirmed_at": a.confirmed_at.isoformat(), "cleared_at": a.cleared_at.isoformat() if a.cleared_at else None}
            for a in got.alerts
        ],
        "pages": pages,
        "per_camera": per_camera,
        "suppression": suppression_report(got.suppressed, inc, inc_without, copied=suppressions_copied,
                                          recomputed=without_suppression is not None),
    }


def first_page_times(pages: list[dict[str, Any]]) -> dict[str, float]:
    """Incident id -> time (epoch s) of its first 'confirmed' page, from the pages' ISO ``at``."""
    page_at: dict[str, float] = {}
    for p in pages:
        if p.get("state") == "confirmed":
            try:
                t = datetime.fromisoformat(str(p["at"]).replace("Z", "+00:00")).timestamp()
            except (KeyError, ValueError):
                continue
            page_at[p["incident_id"]] = min(t, page_at.get(p["incident_id"], t))
    return page_at


def per_camera_summary(replayed: list[ReplayedFrame], observed: list[ObservedIncident]) -> dict[str, dict[str, Any]]:
    """Per camera: frames replayed, classified, labelled spill, and the incidents it confirmed."""
    def empty() -> dict[str, Any]:
        return {"frames": 0, "classified": 0, "spill_labelled": 0, "incidents": []}

    per_camera: dict[str, dict[str, Any]] = {}
    for f in replayed:
        pc = per_camera.setdefault(f.camera, empty())
        pc["frames"] += 1
        pc["classified"] += f.score is not None
        pc["spill_labelled"] += f.label == "spill"
    for o in observed:
        per_camera.setdefault(o.camera, empty())["incidents"].append(o.incident_id)
    return per_camera


def observed_incidents(alerts: list[SpillAlert], published_at: dict[tuple[str, int], float], page_at: dict[str, float]) -> list[ObservedIncident]:
    """One ObservedIncident per confirmed incident of ``alerts`` (clearing time from its cleared alert)."""
    cleared_at: dict[str, datetime] = {}
    for a in alerts:
        if a.state.value == "cleared":  # capture time of the clearing frame (else: closed at once)
            t_clear = a.cleared_at or a.confirmed_at
            cleared_at[a.incident_id] = min(t_clear, cleared_at.get(a.incident_id, t_clear))
    observed: list[ObservedIncident] = []
    seen: set[str] = set()
    for a in alerts:
        if a.state.value != "confirmed" or a.incident_id in seen:
            continue
        seen.add(a.incident_id)
        lat = None
        cseq = a.evidence.confirming_seq
        if cseq is not None and (a.camera_id, cseq) in published_at and a.incident_id in page_at:
            lat = page_at[a.incident_id] - published_at[(a.camera_id, cseq)]
        observed.append(ObservedIncident(a.incident_id, a.camera_id, a.first_seen, a.confirmed_at, lat,
                                         cleared_at.get(a.incident_id)))
    return observed
