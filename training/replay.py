"""``spillwatch replay``: republish frames through the real pipeline in an isolated namespace.

producer (producers.publisher.FramePublisher) -> broker -> classifier workers -> aggregator ->
alerting (dry run), each service a subprocess of the ``spillwatch`` CLI (``worker``, ``aggregator``,
``alerting --dry-run``) started with a generated config (``SPILLWATCH_CONFIG``; every other
``SPILLWATCH_*`` variable is removed from their environment so nothing of the live namespace leaks
in). The namespace: topic prefix ``<live prefix>replay-<id>.``, Redis key prefix
``<live key prefix>:replay-<id>``, alerting in dry-run with no acknowledgement port and escalation
off, evidence under the replay's work folder. A live system on the same broker and Redis is not
touched: other topics, other keys, no notifier is even built.

Frames keep their original capture times (the aggregator confirms on capture times and sequence
numbers, so ``--speed`` changes wall time, not incidents); ``--speed 0`` publishes as fast as the
publisher goes, ``--speed X`` keeps X times real time with each pause capped at ``max_pause_s``.
The replay waits until every published frame is classified or dead-lettered, the aggregator's
Redis state has seen each camera's last frame with an empty alert outbox, and every confirmed
incident has its dry-run page; then it stops what it started, deletes the namespace's topics and
Redis keys (unless ``keep``), and returns the report (training/replay_metrics.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spillwatch.events import Classification, DeadLetter, EventError, FrameHeader, SpillAlert, decode_frame
from spillwatch.logs import get_logger
from spillwatch.settings import CameraConfig, Settings
from training.replay_metrics import ObservedIncident, ReplayedFrame, frame_level, incident_metrics
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
        "alerting": base.alerting.model_copy(
            update={
                "dry_run": True,
                "ack_port": None,
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


def _plain(v: Any) -> Any:
    from pydantic import SecretStr

    if isinstance(v, SecretStr):
        return v.get_secret_value()
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, datetime):
        return v.isoformat()
    if hasattr(v, "value") and type(v).__module__ != "builtins":  # enums
        return v.value
    return v


def write_config(settings: Settings, path: Path) -> Path:
    import yaml

    data = _plain(settings.model_dump(mode="python", exclude={"config"}))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold broker credentials
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return path


def service_env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPILLWATCH_")}
    env["SPILLWATCH_CONFIG"] = str(config)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# --------------------------------------------------------------------------- collecting results


@dataclass
class Collected:
    scores: dict[tuple[str, int], float] = field(default_factory=dict)
    classified_at: dict[tuple[str, int], float] = field(default_factory=dict)
    dead: dict[tuple[str, int], str] = field(default_factory=dict)
    dead_unknown: int = 0
    alerts: list[SpillAlert] = field(default_factory=list)
    alert_seen_at: dict[str, float] = field(default_factory=dict)


class Collector(threading.Thread):
    """Reads the namespace's classifications, frame dead letters and alerts from the beginning."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="replay-collector", daemon=True)
        self.settings = settings
        self.out = Collected()
        self.lock = threading.Lock()
        self._stop_ev = threading.Event()
        self.ready = threading.Event()
        self.error: str | None = None

    def stop(self) -> None:
        self._stop_ev.set()

    def run(self) -> None:
        from kafka import TopicPartition

        from spillwatch.kafka import make_consumer

        t = self.settings.topics
        names = [t.classifications, t.dead_letter(t.frames), t.spill_alerts]
        consumer = make_consumer(self.settings, [], group_id=None, enable_auto_commit=False, client_id="replay-collector")
        try:
            tps = []
            for n in names:
                deadline = time.monotonic() + 30
                parts = None
                while not parts and time.monotonic() < deadline:
                    parts = consumer.partitions_for_topic(n)
                    if not parts:
                        time.sleep(0.2)
                tps += [TopicPartition(n, p) for p in sorted(parts or [])]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            self.ready.set()
            while not self._stop_ev.is_set():
                batch = consumer.poll(timeout_ms=200, max_records=1000)
                now = time.time()
                with self.lock:
                    for tp, recs in batch.items():
                        for r in recs:
                            self._one(tp.topic, r.value, now)
        except Exception as exc:  # noqa: BLE001 - surfaced by the replay as an error
            self.error = repr(exc)
            log.error("collector failed", error=self.error)
        finally:
            consumer.close()

    def _one(self, topic: str, value: bytes | None, now: float) -> None:
        t = self.settings.topics
        if value is None:
            return
        try:
            if topic == t.classifications:
                c = Classification.from_bytes(value)
                key = (c.camera_id, c.seq)
                if key not in self.out.scores:
                    self.out.scores[key] = c.spill_prob
                    self.out.classified_at[key] = now
            elif topic == t.spill_alerts:
                a = SpillAlert.from_bytes(value)
                self.out.alerts.append(a)
                self.out.alert_seen_at.setdefault(f"{a.incident_id}:{a.state.value}", now)
            else:
                dl = DeadLetter.from_bytes(value)
                try:
                    h = decode_frame(dl.payload()).header
                    self.out.dead[(h.camera_id, h.seq)] = dl.reason
                except EventError:
                    self.out.dead_unknown += 1
        except EventError as exc:
            log.warning("replay collector skipped a record", topic=topic, reason=str(exc))


# --------------------------------------------------------------------------- services


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_service(name: str, args: list[str], config: Path, work_dir: Path) -> Service:
    log_path = work_dir / f"{name}.log"
    fh = open(log_path, "wb")  # noqa: SIM115 - lives as long as the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "spillwatch.cli", *args],
        env=service_env(config),
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C of the replay is handled by the replay, which stops them
    )
    fh.close()
    return Service(name, proc, log_path)


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


def _agg_caught_up(redis: Any, prefix: str, last_seq: dict[str, int]) -> bool:
    """The aggregator's Redis state (processors/state_store.py key contract) has seen each camera's
    last classified frame and holds no unpublished alert."""
    for cam, seq in last_seq.items():
        raw = redis.get(f"{prefix}:agg:cam:{cam}")
        if raw is None:
            return False
        try:
            got = json.loads(raw).get("last_seq")
        except ValueError:
            return False
        if got is None or int(got) < seq:
            return False
    return int(redis.hlen(f"{prefix}:agg:outbox")) == 0


def _pages(redis: Any, prefix: str) -> list[dict[str, Any]]:
    """Page records of alerting (alerting/store.py: ``<prefix>:alerting:pages``)."""
    return [json.loads(x) for x in redis.lrange(f"{prefix}:alerting:pages", 0, -1)]


def cleanup_namespace(settings: Settings, redis: Any) -> dict[str, int]:
    """Delete the replay namespace's topics and Redis keys (only those: the prefix is unique)."""
    from kafka import KafkaAdminClient

    from spillwatch.kafka import common_config

    prefix = settings.redis.key_prefix
    assert ":replay-" in prefix and "replay-" in settings.kafka.topic_prefix, "refusing to clean a non-replay namespace"
    n_keys = 0
    batch: list[Any] = []
    for k in redis.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(k)
        if len(batch) >= 500:
            n_keys += int(redis.delete(*batch))
            batch = []
    if batch:
        n_keys += int(redis.delete(*batch))
    n_topics = 0
    admin = KafkaAdminClient(**common_config(settings, "spillwatch-replay-admin"))
    try:
        existing = set(admin.list_topics())
        mine = [t for t in existing if t.startswith(settings.kafka.topic_prefix)]
        if mine:
            admin.delete_topics(mine)
            n_topics = len(mine)
    except Exception as exc:  # noqa: BLE001 - leftover topics are harmless, say so
        log.warning("could not delete the replay topics", error=repr(exc))
    finally:
        admin.close()
    return {"redis_keys": n_keys, "topics": n_topics}


def run_replay(frames: list[SourceFrame], base: Settings, opts: ReplayOptions) -> dict[str, Any]:
    """Replay ``frames`` through the pipeline; returns the report (see the module docstring)."""
    if not frames:
        raise ReplayError("nothing to replay: no frames")
    stack = None
    if opts.local:
        from spillwatch.stack import LocalStack

        stack = LocalStack()
        stack.start()
        base = base.model_copy(
            update={
                "kafka": base.kafka.model_copy(update={"bootstrap": stack.bootstrap}),
                "redis": base.redis.model_copy(update={"url": stack.redis_url}),
            }
        )
    tmp = None
    if opts.work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="spillwatch-replay-")
        work_dir = Path(tmp.name)
    else:
        work_dir = Path(opts.work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _run(frames, base, opts, work_dir)
    finally:
        if stack is not None:
            stack.stop()
        if tmp is not None:
            tmp.cleanup()


def _run(frames: list[SourceFrame], base: Settings, opts: ReplayOptions, work_dir: Path) -> dict[str, Any]:
    import redis as redis_lib
    from tqdm import tqdm

    from producers.publisher import CameraStats, FramePublisher
    from spillwatch.kafka import create_topics

    rid = opts.replay_id or uuid.uuid4().hex[:8]
    frames = sorted(frames, key=lambda f: f.capture_time)  # stable: source order among equal times
    cameras = list(dict.fromkeys(f.camera for f in frames))
    rs = replay_settings(base, rid, cameras, opts, work_dir, len(frames))
    threshold, model_version = _threshold(rs, opts)
    cfg_path = write_config(rs, work_dir / "replay-config.yaml")
    rds = redis_lib.Redis.from_url(rs.redis.url, decode_responses=True, socket_timeout=10)
    rds.ping()
    create_topics(rs, timeout_s=60)
    log.info("replay namespace ready", id=rid, topic_prefix=rs.kafka.topic_prefix, redis_prefix=rs.redis.key_prefix,
             frames=len(frames), cameras=len(cameras))
    services: list[Service] = []
    collector = Collector(rs)
    t_start = time.time()
    published_at: dict[tuple[str, int], float] = {}
    stats: dict[str, CameraStats] = {c: CameraStats(c) for c in cameras}
    error: str | None = None
    try:
        for i in range(max(1, opts.workers)):
            services.append(start_service(f"worker-{i}", ["worker"], cfg_path, work_dir))
        services.append(start_service("aggregator", ["aggregator"], cfg_path, work_dir))
        if opts.alerting:
            services.append(start_service("alerting", ["alerting", "--dry-run"], cfg_path, work_dir))
        collector.start()
        if not collector.ready.wait(60):
            raise ReplayError("could not read the replay topics")
        pub = FramePublisher(rs, f"replay-{rid}", stats)
        pub.start()
        deadline = time.monotonic() + opts.timeout_s
        try:
            wall0 = time.monotonic()
            virt = 0.0
            prev = frames[0].capture_time
            bar = tqdm(total=len(frames), desc="replay: publish", unit="frame", disable=not opts.progress)
            for f in frames:
                if opts.speed > 0:
                    gap = max(0.0, (f.capture_time - prev).total_seconds())
                    virt += min(gap / opts.speed, opts.max_pause_s)
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
                # never more than MAX_IN_FLIGHT unacknowledged frames: a replay must not drop any
                while len(published_at) - sum(s.published + sum(s.dropped.values()) for s in stats.values()) >= MAX_IN_FLIGHT:
                    if time.monotonic() > deadline:
                        raise ReplayError("timeout while publishing (broker not acknowledging)")
                    time.sleep(0.005)
                if pub.publish_frame(header, data):
                    published_at[(f.camera, f.seq)] = time.time()
                bar.update(1)
                if time.monotonic() > deadline:
                    raise ReplayError("timeout while publishing")
            bar.close()
        finally:
            pub.close(timeout_s=60)
        n_pub = sum(s.published for s in stats.values())
        dropped = {c: s.dropped for c, s in stats.items() if s.dropped}
        if dropped:
            log.warning("frames not published", dropped=dropped)
        # ---- wait for every classification (or dead letter)
        bar = tqdm(total=n_pub, desc="replay: classify", unit="frame", disable=not opts.progress)
        done = 0
        while True:
            with collector.lock:
                done = len(collector.out.scores) + len(collector.out.dead) + collector.out.dead_unknown
            bar.n = min(done, n_pub)
            bar.refresh()
            if done >= n_pub:
                break
            dead_services = [s for s in services if not s.alive()]
            if dead_services:
                raise ReplayError(f"{dead_services[0].name} exited ({dead_services[0].proc.returncode}):\n{dead_services[0].tail()}")
            if collector.error:
                raise ReplayError(f"collector: {collector.error}")
            if time.monotonic() > deadline:
                raise ReplayError(f"timeout: {done}/{n_pub} frames classified")
            time.sleep(0.2)
        bar.close()
        # ---- wait for the aggregator to have seen each camera's last frame, outbox empty
        with collector.lock:
            last_seq: dict[str, int] = {}
            for cam, seq in collector.out.scores:
                last_seq[cam] = max(seq, last_seq.get(cam, seq))
        while not _agg_caught_up(rds, rs.redis.key_prefix, last_seq):
            if time.monotonic() > deadline:
                raise ReplayError("timeout waiting for the aggregator")
            if not all(s.alive() for s in services):
                raise ReplayError("a pipeline service exited early")
            time.sleep(0.3)
        time.sleep(1.0)  # published alerts reach the collector
        # ---- wait for the dry-run pages of every confirmed incident
        if opts.alerting:
            chans = set(rs.alerting.channels)
            while True:
                with collector.lock:
                    confirmed = {a.incident_id for a in collector.out.alerts if a.state.value == "confirmed"}
                paged = {(p["incident_id"], p["channel"]) for p in _pages(rds, rs.redis.key_prefix) if p.get("state") == "confirmed"}
                if all((i, c) in paged for i in confirmed for c in chans):
                    break
                if time.monotonic() > deadline:
                    raise ReplayError("timeout waiting for the dry-run pages")
                time.sleep(0.3)
    except ReplayError as exc:
        error = str(exc)
        log.error("replay failed", error=error)
    finally:
        collector.stop()
        for s in services:
            s.stop()
        collector.join(10)
    pages = _pages(rds, rs.redis.key_prefix) if opts.alerting else []
    cleaned = {} if opts.keep else cleanup_namespace(rs, rds)
    rds.close()
    if error:
        raise ReplayError(error)
    return build_report(frames, collector.out, pages, published_at, rs, opts, rid, threshold, model_version,
                        wall_s=time.time() - t_start, cleaned=cleaned, stats=stats)


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
) -> dict[str, Any]:
    replayed = [
        ReplayedFrame(f.camera, f.seq, f.capture_time, f.label, got.scores.get((f.camera, f.seq))) for f in frames
    ]
    by_seq = {(f.camera, f.seq): f for f in frames}
    page_at: dict[str, float] = {}
    for p in pages:
        if p.get("state") == "confirmed":
            try:
                t = datetime.fromisoformat(str(p["at"]).replace("Z", "+00:00")).timestamp()
            except (KeyError, ValueError):
                continue
            page_at[p["incident_id"]] = min(t, page_at.get(p["incident_id"], t))
    observed: list[ObservedIncident] = []
    seen: set[str] = set()
    for a in got.alerts:
        if a.state.value != "confirmed" or a.incident_id in seen:
            continue
        seen.add(a.incident_id)
        lat = None
        cseq = a.evidence.confirming_seq
        if cseq is not None and (a.camera_id, cseq) in published_at and a.incident_id in page_at:
            lat = page_at[a.incident_id] - published_at[(a.camera_id, cseq)]
        observed.append(ObservedIncident(a.incident_id, a.camera_id, a.first_seen, a.confirmed_at, lat))
    inc = incident_metrics(replayed, observed, max_gap_s=rs.aggregator.max_gap_s, tolerance_s=opts.tolerance_s)
    per_camera: dict[str, dict[str, Any]] = {}
    for f in replayed:
        pc = per_camera.setdefault(f.camera, {"frames": 0, "classified": 0, "spill_labelled": 0, "incidents": []})
        pc["frames"] += 1
        pc["classified"] += f.score is not None
        pc["spill_labelled"] += f.label == "spill"
    for o in observed:
        per_camera.setdefault(o.camera, {"frames": 0, "classified": 0, "spill_labelled": 0, "incidents": []})["incidents"].append(o.incident_id)
    del by_seq
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
    }
