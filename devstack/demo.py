"""``spillwatch demo``: the whole product on the embedded local stack and the bundled sample clips.

It is the composition root a site would run with docker-compose, on one machine: the embedded broker
and Redis, the services as the same ``spillwatch`` subcommands the compose file runs (classifier
worker(s), aggregator, alerting, the console, a local webhook receiver), and a producer playing the
two bundled clips in real time (``demo-spill``: a spill appears and grows; ``demo-clean``: people,
shadows, glare, no liquid). The demo watches the topics like any subscriber, shows progress, stops
what it started when the clips have been classified and the pages are in (or ``linger_s`` later,
to look around the console), and writes a JSON report.

The console's URL and a generated password for its user ``admin`` are printed by the demo itself;
the console receives the password in its private settings file, never on a command line.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from spillwatch.events import Classification, EventError, SpillAlert
from spillwatch.logs import get_logger
from spillwatch.redis_keys import RedisKeys
from spillwatch.settings import REPO_ROOT, CameraConfig, Settings, load_settings
from spillwatch.supervisor import ChildProcess, ServiceGroup
from spillwatch.topic_reader import Received, TopicReader

log = get_logger("devstack.demo")

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


@dataclass
class CameraTally:
    classified: set[int] = field(default_factory=set)
    first_capture: datetime | None = None
    max_prob: float = 0.0
    alerts: list[dict[str, Any]] = field(default_factory=list)


class TopicWatcher:
    """Tallies classifications and spill alerts per camera, read from the beginning (a pure observer)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tallies: dict[str, CameraTally] = defaultdict(CameraTally)
        self.lock = threading.Lock()
        self.errors: list[str] = []
        t = settings.topics
        self._reader = TopicReader(settings, [t.classifications, t.spill_alerts], handler=self._handle, keep=False,
                                   client_id="spillwatch-demo-watcher")

    def start(self) -> TopicWatcher:
        self._reader.start()
        return self

    def close(self) -> None:
        self._reader.close()

    def _handle(self, rec: Received) -> None:
        if rec.value is None:
            return
        try:
            if rec.topic == self.settings.topics.classifications:
                c = Classification.from_bytes(rec.value)
                with self.lock:
                    tally = self.tallies[c.camera_id]
                    tally.classified.add(c.seq)
                    tally.max_prob = max(tally.max_prob, c.spill_prob)
                    if tally.first_capture is None or c.capture_time < tally.first_capture:
                        tally.first_capture = c.capture_time
            else:
                a = SpillAlert.from_bytes(rec.value)
                with self.lock:
                    self.tallies[a.camera_id].alerts.append(json.loads(a.model_dump_json()))
                log.info("spill alert", camera=a.camera_id, state=a.state.value, incident=a.incident_id)
        except EventError as exc:
            self.errors.append(str(exc))

    def classified(self) -> dict[str, int]:
        with self.lock:
            return {cid: len(t.classified) for cid, t in self.tallies.items()}

    def alert_states(self) -> set[tuple[str, str]]:
        with self.lock:
            return {(a["incident_id"], a["state"]) for t in self.tallies.values() for a in t.alerts}


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
            and p.get("kind", "spill") == "spill"  # camera-outage pages (a clip that ended) are not spill pages
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


def demo_settings(base: Settings, clips: list[Clip], stack: Any, run_dir: Path, hook_port: int, console_port: int,
                  admin_password: str | None = None) -> Settings:
    """The demo's configuration: the bundled clips as cameras on the embedded stack, pages to the
    console channel and a local HMAC-verifying webhook receiver with a fresh secret, the web console
    on loopback with user ``admin`` (``admin_password``, generated when not given)."""
    return base.model_copy(update={
        "cameras": [CameraConfig(id=c.camera_id, source=str(c.video), fps=2.0) for c in clips],
        "log_format": "json",
        "data_dir": run_dir / "data",
        "kafka": base.kafka.model_copy(update={"bootstrap": stack.bootstrap, "profile": "local", "partitions": 4}),
        "redis": base.redis.model_copy(update={"url": stack.redis_url}),
        "alerting": base.alerting.model_copy(update={
            "channels": ["console", "webhook"],
            "webhook_url": f"http://127.0.0.1:{hook_port}/hook",
            "webhook_secret": SecretStr(secrets.token_hex(16)),
            "evidence_dir": run_dir / "evidence",
            "public_base_url": f"http://127.0.0.1:{console_port}",
        }),
        "archive": base.archive.model_copy(update={"root": str(run_dir / "archive")}),
        "console": base.console.model_copy(update={
            "host": "127.0.0.1",
            "port": console_port,
            "admin_password": SecretStr(admin_password or secrets.token_urlsafe(12)),
        }),
    })


def run_demo(
    report_path: Path,
    *,
    workers: int = 1,
    speed: float = 1.0,
    run_dir: Path | None = None,
    settle_timeout_s: float = 60.0,
    clips: list[Clip] | None = None,
    base: Settings | None = None,
    linger_s: float = 0.0,
) -> dict[str, Any]:
    """Run the demo end to end and write its report; returns the report. ``linger_s``: keep
    everything (the console) running that long after the report (Ctrl-C ends it earlier)."""
    from devstack.stack import LocalStack, free_port
    from spillwatch.kafka import create_topics

    clips = clips or bundled_clips()
    run_dir = run_dir or REPO_ROOT / "var" / "demo" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"demo: starting the embedded stack (broker + Redis) in {run_dir}", flush=True)
    with LocalStack(work_dir=run_dir / "stack") as stack:
        hook_port = free_port()
        settings = demo_settings(base or load_settings(), clips, stack, run_dir, hook_port, free_port())
        create_topics(settings)
        with ServiceGroup(settings, run_dir / "logs") as group:
            start_services(group, settings, workers, hook_port, run_dir / "webhook-pages.jsonl")
            secret = settings.console.admin_password
            print(f"demo: console on {console_url(settings)} - user admin, password "
                  f"{secret.get_secret_value() if secret else '(none)'}", flush=True)
            watcher = TopicWatcher(settings).start()
            try:
                stats_file = run_dir / "producer-stats.json"
                producer = group.start(["produce", "--speed", str(speed), "--out", str(stats_file)])
                _follow(group, producer, watcher, clips, stats_file, settle_timeout_s, speed)
                pages = _wait_pages(settings, watcher, timeout_s=15.0)  # the last pages (confirmation needs k frames)
                report = build_report(clips, _published(stats_file), watcher, pages, {
                    "run_dir": str(run_dir),
                    "workers": workers,
                    "speed": speed,
                    "wall_s": round(time.monotonic() - started, 1),
                    "webhook_pages_received": _count_lines(run_dir / "webhook-pages.jsonl"),
                    "malformed_events_seen": len(watcher.errors),
                }, speed=speed)
            finally:
                watcher.close()
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(json.dumps(report, indent=2))
            _print_summary(report, report_path)
            _linger(group, settings, linger_s)
    return report


def console_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.console.port}"


def start_services(group: ServiceGroup, settings: Settings, workers: int, hook_port: int, hook_out: Path) -> None:
    """Webhook receiver, classifier worker(s), aggregator, alerting and the console; returns once the
    consumer groups own their partitions and the console answers."""
    group.start(["webhook-receiver", "--port", str(hook_port), "--out", str(hook_out)], name="webhook-receiver")
    for _ in range(workers):
        group.start("worker")
    group.start("aggregator")
    group.start("alerting", show_output=True)
    group.start(["console", "serve"], name="console")
    print(f"demo: {workers} classifier worker(s), aggregator, alerting (console + webhook), web console starting...", flush=True)
    prefix = settings.kafka.topic_prefix
    group.wait_groups({f"{prefix}spillwatch-classifier": workers, f"{prefix}spillwatch-aggregator": 1}, timeout_s=90)
    wait_console(group, settings)


def wait_console(group: ServiceGroup, settings: Settings, timeout_s: float = 60.0) -> None:
    """Until the console's /healthz answers 200 (Redis reachable, topic readers running)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        group.check_alive()
        try:
            if httpx.get(console_url(settings) + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"console not healthy on {console_url(settings)} after {timeout_s:.0f} s")
        time.sleep(0.3)


def _linger(group: ServiceGroup, settings: Settings, linger_s: float) -> None:
    if linger_s <= 0:
        return
    print(f"demo: the console stays up on {console_url(settings)} for {linger_s:.0f} s (Ctrl-C to stop)", flush=True)
    deadline = time.monotonic() + linger_s
    try:
        while time.monotonic() < deadline:
            group.check_alive(exclude=[c for c in group.children if c.name.startswith("produce")])
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("demo: stopping", flush=True)


def _follow(group: ServiceGroup, producer: ChildProcess, watcher: TopicWatcher, clips: list[Clip], stats_file: Path,
            settle_timeout_s: float, speed: float) -> None:
    """Show progress until every published frame is classified (or the settle time after the
    producer finished runs out); a service that dies ends the demo with its log tail."""
    from tqdm import tqdm

    expected = sum(int(c.duration_s * 2.0) for c in clips)
    print(f"demo: playing {len(clips)} clips in real time (x{speed}), ~{expected} frames at 2 fps", flush=True)
    with tqdm(total=expected, desc="frames classified", unit="frame", mininterval=1.0) as bar:
        settle_deadline: float | None = None
        while True:
            bar.update(max(0, sum(watcher.classified().values()) - bar.n))
            if not producer.running() and settle_deadline is None:
                settle_deadline = time.monotonic() + settle_timeout_s
            if settle_deadline is not None:
                counts = watcher.classified()
                if all(counts.get(c, 0) >= n for c, n in _published(stats_file).items()) or time.monotonic() > settle_deadline:
                    return
            group.check_alive(exclude=[producer])
            time.sleep(0.25)


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
        return [json.loads(x) for x in r.lrange(RedisKeys(settings.redis.key_prefix).alerting_pages, 0, -1)]
    finally:
        r.close()


def _wait_pages(settings: Settings, watcher: TopicWatcher, timeout_s: float) -> list[dict[str, Any]]:
    """Pages recorded by the alerting service, once every alert seen on the topic has its pages."""
    deadline = time.monotonic() + timeout_s
    channels = set(settings.alerting.channels)
    while True:
        pages = _alert_pages(settings)
        have = {(p["incident_id"], p["state"], p["channel"]) for p in pages}
        if all((i, s, ch) in have for i, s in watcher.alert_states() for ch in channels) or time.monotonic() > deadline:
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
