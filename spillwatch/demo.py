"""``spillwatch demo``: the whole product on the embedded local stack and the bundled sample clips.

It is the composition root a site would run with docker-compose, on one machine: the embedded broker
and Redis, the services as the same ``spillwatch`` subcommands the compose file runs (classifier
worker(s), aggregator, alerting, a local webhook receiver), and a producer playing the two bundled
clips in real time (``demo-spill``: a spill appears and grows; ``demo-clean``: people, shadows,
glare, no liquid). The demo watches the topics like any subscriber, shows progress, stops what it
started when the clips have been classified and the pages are in, and writes a JSON report.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from spillwatch.events import Classification, EventError, SpillAlert
from spillwatch.logs import get_logger
from spillwatch.settings import REPO_ROOT, Settings, load_settings

log = get_logger("spillwatch.demo")

CLIPS_DIR = REPO_ROOT / "samples" / "clips"


@dataclass(frozen=True)
class Clip:
    camera_id: str
    video: Path
    truth: dict[str, Any]

    @property
    def onset_s(self) -> float | None:
        v = self.truth.get("onset_s")
        return None if v is None else float(v)

    @property
    def duration_s(self) -> float:
        return float(self.truth["n_frames"]) / float(self.truth["fps"])


def bundled_clips(clips_dir: Path = CLIPS_DIR) -> list[Clip]:
    out = []
    for name in ("spill", "clean"):
        video = clips_dir / f"{name}.mp4"
        truth = clips_dir / f"{name}.json"
        if not video.is_file() or not truth.is_file():
            raise FileNotFoundError(f"bundled clip missing: {video} / {truth}")
        out.append(Clip(f"demo-{name}", video, json.loads(truth.read_text())))
    return out


class Service:
    """One ``spillwatch <args>`` subprocess with its log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path, *, show_output: bool = False):
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spillwatch.cli", *args],
            env=env,
            stdout=None if show_output else self._log,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                log.warning("service did not stop in time; killing", service=self.name)
                self.proc.kill()
                self.wait(5)
        self._log.close()
        return self.proc.returncode

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class CameraTally:
    classified: set[int] = field(default_factory=set)
    first_capture: datetime | None = None
    max_prob: float = 0.0
    alerts: list[dict[str, Any]] = field(default_factory=list)


class TopicWatcher(threading.Thread):
    """Reads classifications and spill-alerts from the beginning (no consumer group: a pure observer)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="demo-watcher")
        self.settings = settings
        self.tallies: dict[str, CameraTally] = defaultdict(CameraTally)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        from kafka import TopicPartition

        from spillwatch.kafka import make_consumer

        t = self.settings.topics
        consumer = make_consumer(self.settings, [], group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
        try:
            parts = []
            for topic in (t.classifications, t.spill_alerts):
                for p in consumer.partitions_for_topic(topic) or {0}:
                    parts.append(TopicPartition(topic, p))
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            while not self.stop_event.is_set():
                for tp, records in consumer.poll(timeout_ms=200).items():
                    for rec in records:
                        self._handle(tp.topic, rec.value)
        finally:
            consumer.close()

    def _handle(self, topic: str, value: bytes) -> None:
        t = self.settings.topics
        try:
            if topic == t.classifications:
                c = Classification.from_bytes(value)
                with self.lock:
                    tally = self.tallies[c.camera_id]
                    tally.classified.add(c.seq)
                    tally.max_prob = max(tally.max_prob, c.spill_prob)
                    if tally.first_capture is None or c.capture_time < tally.first_capture:
                        tally.first_capture = c.capture_time
            else:
                a = SpillAlert.from_bytes(value)
                with self.lock:
                    self.tallies[a.camera_id].alerts.append(json.loads(a.model_dump_json()))
                log.info("spill alert", camera=a.camera_id, state=a.state.value, incident=a.incident_id)
        except EventError as exc:
            self.errors.append(str(exc))

    def classified(self) -> dict[str, int]:
        with self.lock:
            return {cid: len(t.classified) for cid, t in self.tallies.items()}


def _wait_groups(settings: Settings, groups: list[str], timeout_s: float) -> bool:
    """True once every consumer group is Stable with a member (the workers have their partitions)."""
    from kafka import KafkaAdminClient

    from spillwatch.kafka import common_config

    class _Admin(KafkaAdminClient):  # type: ignore[misc]
        # kafka-python 3.0 rejects the authorized-operations bitmask some brokers (Tansu) return;
        # the demo does not need it.
        def _process_acl_operations(self, obj: dict[str, Any]) -> dict[str, Any]:
            obj.pop("authorized_operations", None)
            return obj

    admin = _Admin(**common_config(settings, client_id="spillwatch-demo-admin"))
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                desc = admin.describe_groups(groups)
                if all(desc.get(g, {}).get("group_state") == "Stable" and desc[g].get("members") for g in groups):
                    return True
            except Exception as exc:  # the broker answers "coordinator loading" while groups form
                log.debug("group not ready", error=str(exc))
            time.sleep(0.5)
        return False
    finally:
        admin.close()


def _parse_time(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)


def build_report(
    clips: list[Clip],
    published: dict[str, int],
    watcher: TopicWatcher,
    pages: list[dict[str, Any]],
    extra: dict[str, Any],
    speed: float = 1.0,
) -> dict[str, Any]:
    cams: dict[str, Any] = {}
    for clip in clips:
        tally = watcher.tallies.get(clip.camera_id, CameraTally())
        cam_pages = [
            {"channel": p["channel"], "incident_id": p["incident_id"], "state": p.get("state"), "at": p["at"]}
            for p in pages
            if p.get("camera_id") == clip.camera_id and p.get("status", "sent") == "sent"
        ]
        incidents: dict[str, dict[str, Any]] = {}
        for a in tally.alerts:
            inc = incidents.setdefault(a["incident_id"], {"incident_id": a["incident_id"], "states": []})
            inc["states"].append(a["state"])
            inc.setdefault("confirmed_at", a["confirmed_at"])
            inc.setdefault("first_seen", a["first_seen"])
            inc.setdefault("peak_prob", a["evidence"].get("peak_prob"))
            inc.setdefault("snapshot_ref", a["evidence"].get("snapshot_ref"))
        onset_to_page = None
        if clip.onset_s is not None and tally.first_capture is not None:
            confirmed_pages = [p for p in cam_pages if p["state"] in (None, "confirmed")]
            if confirmed_pages:
                first_page = min(_parse_time(p["at"]) for p in confirmed_pages)
                # Files play at ``speed`` x real time and capture time is the wall clock of sampling.
                onset_wall = tally.first_capture.timestamp() + clip.onset_s / speed
                onset_to_page = round(first_page.timestamp() - onset_wall, 3)
        cams[clip.camera_id] = {
            "video": str(clip.video.relative_to(REPO_ROOT)) if clip.video.is_relative_to(REPO_ROOT) else str(clip.video),
            "frames_published": int(published.get(clip.camera_id, 0)),
            "frames_classified": len(tally.classified),
            "max_spill_prob": round(tally.max_prob, 4),
            "incidents": list(incidents.values()),
            "pages": cam_pages,
            "onset_s": clip.onset_s,
            "onset_to_page_s": onset_to_page,
        }
    return {"cameras": cams, **extra}


def run_demo(
    report_path: Path,
    *,
    workers: int = 1,
    speed: float = 1.0,
    run_dir: Path | None = None,
    settle_timeout_s: float = 60.0,
    clips: list[Clip] | None = None,
) -> dict[str, Any]:
    from tqdm import tqdm

    from spillwatch.kafka import create_topics
    from spillwatch.stack import LocalStack, free_port

    clips = clips or bundled_clips()
    run_dir = run_dir or REPO_ROOT / "var" / "demo" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cameras_file = run_dir / "cameras.yml"
    cameras_file.write_text(
        yaml.safe_dump({"cameras": [{"id": c.camera_id, "source": str(c.video), "fps": 2.0} for c in clips]})
    )
    secret = secrets.token_hex(16)
    started = time.monotonic()
    services: list[Service] = []
    stack = LocalStack(work_dir=run_dir / "stack")
    print(f"demo: starting the embedded stack (broker + Redis) in {run_dir}", flush=True)
    stack.start()
    watcher: TopicWatcher | None = None
    try:
        hook_port, ack_port = free_port(), free_port()
        env_over = {
            "SPILLWATCH_CONFIG": str(cameras_file),
            "SPILLWATCH_KAFKA__BOOTSTRAP": stack.bootstrap,
            "SPILLWATCH_KAFKA__PROFILE": "local",
            "SPILLWATCH_KAFKA__PARTITIONS": "4",
            "SPILLWATCH_REDIS__URL": stack.redis_url,
            "SPILLWATCH_ALERTING__CHANNELS": '["console", "webhook"]',
            "SPILLWATCH_ALERTING__WEBHOOK_URL": f"http://127.0.0.1:{hook_port}/hook",
            "SPILLWATCH_ALERTING__WEBHOOK_SECRET": secret,
            "SPILLWATCH_ALERTING__EVIDENCE_DIR": str(run_dir / "evidence"),
            "SPILLWATCH_ALERTING__ACK_PORT": str(ack_port),
            "SPILLWATCH_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
        env = {**os.environ, **env_over}
        os.environ.update({k: v for k, v in env_over.items() if k.startswith("SPILLWATCH_")})
        settings = load_settings(cameras_file)
        create_topics(settings)

        services.append(
            Service(
                "webhook-receiver",
                ["webhook-receiver", "--port", str(hook_port), "--secret", secret, "--out", str(run_dir / "webhook-pages.jsonl")],
                env,
                logs,
            )
        )
        for i in range(workers):
            services.append(Service(f"worker-{i + 1}", ["worker"], env, logs))
        services.append(Service("aggregator", ["aggregator"], env, logs))
        services.append(Service("alerting", ["alerting"], env, logs, show_output=True))
        print(f"demo: {workers} classifier worker(s), aggregator, alerting (console + webhook) starting...", flush=True)
        prefix = settings.kafka.topic_prefix
        if not _wait_groups(settings, [f"{prefix}spillwatch-classifier", f"{prefix}spillwatch-aggregator"], 90):
            dead = [s for s in services if not s.alive()]
            detail = "\n".join(f"--- {s.name}\n{s.tail()}" for s in dead)
            raise RuntimeError(f"services did not become ready in 90 s\n{detail}")

        watcher = TopicWatcher(settings)
        watcher.start()
        stats_file = run_dir / "producer-stats.json"
        producer = Service(
            "producer", ["produce", "--speed", str(speed), "--stats-json", str(stats_file)], env, logs
        )
        services.append(producer)
        expected = sum(int(c.duration_s * 2.0) for c in clips)
        print(f"demo: playing {len(clips)} clips in real time (x{speed}), ~{expected} frames at 2 fps", flush=True)
        with tqdm(total=expected, desc="frames classified", unit="frame", mininterval=1.0) as bar:
            settle_deadline: float | None = None
            while True:
                done = sum(watcher.classified().values())
                bar.update(max(0, done - bar.n))
                if not producer.alive() and settle_deadline is None:
                    settle_deadline = time.monotonic() + settle_timeout_s
                if settle_deadline is not None:
                    published = _published(stats_file)
                    counts = watcher.classified()
                    if all(counts.get(c, 0) >= n for c, n in published.items()) or time.monotonic() > settle_deadline:
                        break
                for s in services:
                    if s is not producer and not s.alive():
                        raise RuntimeError(f"{s.name} exited early (code {s.proc.returncode}):\n{s.tail()}")
                time.sleep(0.25)
        # Give the alerting service a moment for the last pages (confirmation needs k frames).
        pages = _wait_pages(settings, watcher, timeout_s=15.0)
        published = _published(stats_file)
        report = build_report(
            clips,
            published,
            watcher,
            pages,
            {
                "run_dir": str(run_dir),
                "workers": workers,
                "speed": speed,
                "wall_s": round(time.monotonic() - started, 1),
                "webhook_pages_received": _count_lines(run_dir / "webhook-pages.jsonl"),
                "malformed_events_seen": len(watcher.errors),
            },
            speed=speed,
        )
    finally:
        if watcher is not None:
            watcher.stop_event.set()
            watcher.join(5)
        for s in reversed(services):
            s.stop()
        stack.stop()
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2))
    _print_summary(report, report_path)
    return report


def _published(stats_file: Path) -> dict[str, int]:
    try:
        data = json.loads(stats_file.read_text())
    except (OSError, ValueError):
        return {}
    return {cid: int(st.get("published", 0)) for cid, st in data.items()}


def _alert_pages(settings: Settings) -> list[dict[str, Any]]:
    import redis

    r = redis.Redis.from_url(settings.redis.url, decode_responses=True)
    try:
        return [json.loads(x) for x in r.lrange(f"{settings.redis.key_prefix}:alerting:pages", 0, -1)]
    finally:
        r.close()


def _wait_pages(settings: Settings, watcher: TopicWatcher, timeout_s: float) -> list[dict[str, Any]]:
    """Pages recorded by the alerting service, once every alert seen on the topic has its pages."""
    deadline = time.monotonic() + timeout_s
    channels = set(settings.alerting.channels)
    while True:
        pages = _alert_pages(settings)
        with watcher.lock:
            wanted = {(a["incident_id"], a["state"]) for t in watcher.tallies.values() for a in t.alerts}
        have = {(p["incident_id"], p["state"], p["channel"]) for p in pages}
        if all((i, s, ch) in have for i, s in wanted for ch in channels) or time.monotonic() > deadline:
            return pages
        time.sleep(0.3)


def _count_lines(path: Path) -> int:
    try:
        return sum(1 for _ in path.open())
    except OSError:
        return 0


def _print_summary(report: dict[str, Any], path: Path) -> None:
    print("\nSpillWatch demo summary", flush=True)
    for cid, cam in report["cameras"].items():
        pages = ", ".join(f"{p['channel']}@{p['at'][11:19]}" for p in cam["pages"]) or "none"
        lat = cam["onset_to_page_s"]
        print(
            f"  {cid}: published {cam['frames_published']}, classified {cam['frames_classified']}, "
            f"incidents {len(cam['incidents'])}, pages [{pages}]"
            + (f", onset->page {lat:.1f} s" if lat is not None else ""),
            flush=True,
        )
    print(f"report: {path}", flush=True)
