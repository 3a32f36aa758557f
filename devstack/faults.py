"""``spillwatch bench faults``: the fault and hostile-input scenarios, measured end to end.

One embedded stack (broker + Redis with persistence on) for the run; each scenario gets a fresh
namespace on it (topic prefix, Redis key prefix, its own services: classifier worker(s), aggregator,
alerting with a webhook channel, an HMAC-verifying webhook receiver) and a scripted producer that
plays cameras at 2 fps: ``spill-*`` cameras show the bundled spill clip's frames from a point in
the run on, ``clean-*`` cameras the clean clip. A scenario injects its fault and returns a
:class:`Row`:

* ``expected``: real spills injected (one per spill camera); ``confirmed``: incidents confirmed;
* ``pages``: incidents with a delivered ``confirmed`` page at the receiver; ``lost``: real spills
  without one; ``duplicate``: deliveries the receiver saw twice (same idempotency key);
  ``phantom``: pages for incidents that never existed (a clean camera, a hostile record);
  ``dead``: confirmed pages alerting gave up on (``pages.dlq``); ``fallback``: incidents whose ``confirmed`` page also went to
  the fallback channel (``console``) because the webhook had been failing for ``fallback_after_s``;
* ``stalled_s``: the longest a published frame waited for its classification; ``page_s``: the
  longest from a spill's confirming frame to its page; ``bound_s``: what the fault allows.

Scenarios: worker SIGKILL, aggregator SIGKILL, alerting SIGKILL, Redis stop/start on the same port,
broker restart, the hostile corpus (``devstack.hostile``) followed by a real spill, and the webhook
down for 90 s and 10 min **at speed**: the outage and alerting's page-clock settings
(``SPEED_SCALED``: backoff, request timeout, in-flight lease, escalation delay, and the page's
maximum age and fallback delay where alerting has them) are divided by ``--speed`` (default 10:
9 s and 60 s outages); a try count (``max_tries``) is unchanged.

The broker keeps no data across a restart (in-memory storage): after the restart the harness
recreates the pipeline's topics at once (what ``spillwatch init-topics`` or a starting service does)
and the consumer groups start from the beginning of the new, empty topics; records the old broker
held and nobody had consumed are gone (the row counts them as ``frames_lost``).
"""

from __future__ import annotations

import json
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from spillwatch.events import Classification, EventError, SpillAlert, new_epoch, utcnow
from spillwatch.logs import get_logger
from spillwatch.redis_keys import RedisKeys
from spillwatch.settings import REPO_ROOT, KafkaSettings, RedisSettings, Settings
from spillwatch.supervisor import ChildProcess, ServiceGroup
from spillwatch.topic_reader import Received, TopicReader

log = get_logger("devstack.faults")

FPS = 2.0
SPILL_FROM_FRAME = 40  # the spill clip's pool is clearly visible from here (8 s at 5 fps)


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    scenario: str
    expected: int = 0
    confirmed: int = 0
    pages: int = 0
    lost: int = 0
    duplicate: int = 0
    phantom: int = 0
    dead: int = 0
    fallback: int = 0
    stalled_s: float = 0.0
    page_s: float | None = None
    bound_s: float = 0.0
    frames_published: int = 0
    frames_lost: int = 0
    wall_s: float = 0.0
    notes: str = ""
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (self.error is None and self.lost == 0 and self.duplicate == 0 and self.phantom == 0 and self.confirmed == self.expected
                and self.stalled_s <= self.bound_s and (self.page_s is None or self.page_s <= self.bound_s))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Footage:
    """JPEG frames of the bundled clips (downsized to 480 px like a producer does)."""

    clean: list[bytes]
    spill: list[bytes]

    @classmethod
    def load(cls) -> Footage:
        from processors.bench import load_clip

        return cls(clean=load_clip("clean", 480).jpegs, spill=load_clip("spill", 480).jpegs[SPILL_FROM_FRAME:])


@dataclass
class Camera:
    """A scripted camera: ``frames`` frames at 2 fps; a spill from frame ``spill_from`` on (None: never)."""

    id: str
    frames: int
    spill_from: int | None = None

    @property
    def spills(self) -> bool:
        return self.spill_from is not None


class Player(threading.Thread):
    """Publishes the cameras' frames at 2 fps through the producers' publisher (epoch, seq from 0,
    capture time = now), recording when each frame was handed over and acknowledged."""

    def __init__(self, settings: Settings, cameras: list[Camera], footage: Footage) -> None:
        super().__init__(name="fault-player", daemon=True)
        from producers.publisher import CameraStats, FramePublisher

        self.cameras = cameras
        self.footage = footage
        self.stats = {c.id: CameraStats(c.id) for c in cameras}
        self.publisher = FramePublisher(settings, "bench-faults", self.stats)
        self.epochs = {c.id: new_epoch() for c in cameras}
        self.sent: dict[tuple[str, int], float] = {}
        self.tick = 0
        self.onset_at: float | None = None
        self._halt = threading.Event()

    def at_frame(self, n: int, timeout_s: float = 120) -> None:
        """Wait until the player has published ``n`` frames per camera."""
        deadline = time.monotonic() + timeout_s
        while self.tick < n and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)

    def run(self) -> None:
        from spillwatch.events import FrameHeader

        self.publisher.start()
        t0 = time.monotonic()
        try:
            for i in range(max(c.frames for c in self.cameras)):
                delay = t0 + i / FPS - time.monotonic()
                if delay > 0 and self._halt.wait(delay):
                    break
                for c in self.cameras:
                    if i >= c.frames:
                        continue
                    spill = c.spill_from is not None and i >= c.spill_from
                    if spill and c.spill_from == i and self.onset_at is None:
                        self.onset_at = time.time()
                    pool = self.footage.spill if spill else self.footage.clean
                    jpeg = pool[i % len(pool)]
                    head = FrameHeader(camera_id=c.id, seq=i, epoch=self.epochs[c.id], capture_time=utcnow(), width=480,
                                       height=360, producer="bench-faults", label="spill" if spill else "clean")
                    if self.publisher.publish_frame(head, jpeg):
                        self.sent[(c.id, i)] = time.time()
                self.tick = i + 1
        finally:
            self.publisher.close(15)

    def stop(self) -> None:
        self._halt.set()

    @property
    def published(self) -> int:
        return sum(s.published for s in self.stats.values())


class Observer:
    """Reads classifications and spill alerts of the namespace (no consumer group)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.classified: dict[tuple[str, int], float] = {}
        self.alerts: list[tuple[SpillAlert, float]] = []
        self.reader: TopicReader | None = None
        self.open()

    def open(self) -> None:
        t = self.settings.topics
        self.reader = TopicReader(self.settings, [t.classifications, t.spill_alerts], handler=self._one, keep=False,
                                  client_id="bench-faults-observer").start()

    def reopen(self) -> None:
        """After a broker restart: read the recreated topics from their beginning."""
        self.close()
        self.open()

    def _one(self, rec: Received) -> None:
        if rec.value is None:
            return
        try:
            if rec.topic == self.settings.topics.classifications:
                c = Classification.from_bytes(rec.value)
                with self.lock:
                    self.classified.setdefault((c.camera_id, c.seq), rec.received_at)
            else:
                a = SpillAlert.from_bytes(rec.value)
                with self.lock:
                    self.alerts.append((a, rec.received_at))
        except EventError:
            pass

    def confirmed(self) -> dict[str, SpillAlert]:
        with self.lock:
            return {a.incident_id: a for a, _ in self.alerts if a.state.value == "confirmed"}

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


# --------------------------------------------------------------------------- a namespace

# alerting's settings that are durations of the page clock: divided by ``--speed``
SPEED_SCALED = ("backoff_initial_s", "backoff_max_s", "request_timeout_s", "inflight_lease_s", "escalate_after_s",
                "max_age_s", "fallback_after_s")


def alerting_at_speed(alerting: Any, speed: float, fixed: dict[str, Any]) -> dict[str, Any]:
    """The bench's alerting settings: ``fixed`` values and the page-clock durations divided by
    ``speed`` (request timeout and in-flight lease kept sensible), each only where this version of
    the alerting settings has it."""
    fields = type(alerting).model_fields
    out = {k: v for k, v in fixed.items() if k in fields}
    for name in SPEED_SCALED:
        if name in fields:
            out[name] = getattr(alerting, name) / speed
    if "request_timeout_s" in out:
        out["request_timeout_s"] = max(0.2, out["request_timeout_s"])
    if "inflight_lease_s" in out:
        out["inflight_lease_s"] = max(1.0, out["inflight_lease_s"])
    return out



class Namespace:
    """A scenario's private pipeline on the shared stack: settings, services, receiver, observer."""

    def __init__(self, stack: Any, name: str, run_dir: Path, footage: Footage, model: Path, speed: float) -> None:
        from devstack.stack import free_port

        self.stack = stack
        self.name = name
        self.footage = footage
        self.speed = speed
        self.dir = run_dir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        uid = uuid.uuid4().hex[:6]
        self.hook_port = free_port()
        self.pages_file = self.dir / "webhook-pages.jsonl"
        base = Settings(
            kafka=KafkaSettings(bootstrap=stack.bootstrap, profile="local", topic_prefix=f"faults-{name}-{uid}.", partitions=2),
            redis=RedisSettings(url=stack.redis_url, key_prefix=f"faults:{name}:{uid}"),
            data_dir=self.dir / "data",
            log_format="json",
        )
        self.settings = base.model_copy(update={
            "worker": base.worker.model_copy(update={"model_path": model, "intra_op_threads": 1}),
            "aggregator": base.aggregator.model_copy(update={"tick_interval_s": 0.5}),
            "alerting": base.alerting.model_copy(update=alerting_at_speed(base.alerting, speed, {
                "channels": ["webhook"],
                "escalation_channels": ["console"],
                "fallback_channels": ["console"],
                "webhook_url": f"http://127.0.0.1:{self.hook_port}/hook",
                "webhook_secret": SecretStr(secrets.token_hex(16)),
                "evidence_dir": self.dir / "evidence",
                "ack_port": None,
            })),
        })
        self.group = ServiceGroup(self.settings, self.dir / "logs", cwd=REPO_ROOT)
        self.receiver: ChildProcess | None = None
        self.observer: Observer | None = None
        self.player: Player | None = None
        self.t0 = time.monotonic()
        self.workers: list[ChildProcess] = []

    @property
    def prefix(self) -> str:
        return self.settings.kafka.topic_prefix

    # ------------------------------------------------------------------ services
    def start(self, workers: int = 1) -> Namespace:
        from spillwatch.kafka import create_topics

        create_topics(self.settings, timeout_s=60)
        self.start_receiver()
        self.workers = [self.group.start("worker") for _ in range(workers)]
        self.group.start("aggregator")
        self.group.start("alerting")
        self.group.wait_groups({f"{self.prefix}spillwatch-classifier": workers, f"{self.prefix}spillwatch-aggregator": 1,
                                f"{self.prefix}spillwatch-alerting": 1}, timeout_s=120)
        self.observer = Observer(self.settings)
        return self

    def start_receiver(self) -> None:
        self.receiver = self.group.start(["webhook-receiver", "--port", str(self.hook_port), "--out", str(self.pages_file)],
                                         name="webhook-receiver")
        from devstack.stack import port_open

        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", self.hook_port):
            if time.monotonic() > deadline or not self.receiver.running():
                raise RuntimeError(f"webhook receiver did not start:\n{self.receiver.tail()}")
            time.sleep(0.05)

    def child(self, role: str) -> ChildProcess:
        """The latest running child of a role."""
        return [c for c in self.group.children if c.name.split("-")[0] == role and c.running()][-1]

    def kill(self, role: str) -> ChildProcess:
        c = self.child(role)
        c.signal(signal.SIGKILL)
        c.wait(10)
        return c

    def play(self, cameras: list[Camera]) -> Player:
        self.player = Player(self.settings, cameras, self.footage)
        self.player.start()
        return self.player

    # ------------------------------------------------------------------ measuring
    def pages(self) -> list[dict[str, Any]]:
        try:
            lines = self.pages_file.read_text().splitlines()
        except OSError:
            return []
        return [json.loads(x) for x in lines if x.strip()]

    def settle(self, frames_timeout_s: float = 60, pages_timeout_s: float = 60) -> None:
        """Until every acknowledged frame is classified (or the time is up), the aggregator has
        handled every classification with an empty outbox, and every confirmed incident has its page."""
        import redis

        from spillwatch.kafka import group_lag

        assert self.player is not None and self.observer is not None
        self.player.join(timeout=600)
        deadline = time.monotonic() + frames_timeout_s
        want = set(self.player.sent)
        while time.monotonic() < deadline:
            with self.observer.lock:
                if want <= set(self.observer.classified):
                    break
            time.sleep(0.2)
        r = redis.Redis.from_url(self.settings.redis.url)
        group = f"{self.prefix}spillwatch-aggregator"
        try:
            while time.monotonic() < deadline:
                try:
                    if group_lag(self.settings, group, self.settings.topics.classifications) == 0 and \
                            r.hlen(RedisKeys(self.settings.redis.key_prefix).agg_outbox) == 0:
                        break
                except Exception:  # noqa: BLE001 - broker or Redis still coming back
                    pass
                time.sleep(0.3)
        finally:
            r.close()
        assert self.observer.reader is not None
        try:
            self.observer.reader.wait_caught_up(15)
        except TimeoutError:
            pass
        deadline = time.monotonic() + pages_timeout_s
        while time.monotonic() < deadline:
            paged = {p["payload"]["incident_id"] for p in self.pages() if p["payload"].get("state") == "confirmed"}
            todo = set(self.observer.confirmed()) - paged
            if all(self.page_outcome(i, "confirmed", "webhook") == "dead" for i in todo):
                break
            time.sleep(0.3)

    def page_outcome(self, incident: str, state: str, channel: str) -> str | None:
        """alerting's final outcome of one page (``sent``/``dead``), None while it is pending."""
        import redis

        r = redis.Redis.from_url(self.settings.redis.url)
        try:
            raw = r.hget(RedisKeys(self.settings.redis.key_prefix).alerting_incident_pages(incident), f"{state}:{channel}")
        except Exception:  # noqa: BLE001 - Redis coming back
            return None
        finally:
            r.close()
        return json.loads(raw).get("status") if raw else None

    def row(self, scenario: str, bound_s: float, notes: str = "", **extra: Any) -> Row:
        assert self.player is not None and self.observer is not None
        cams = {c.id: c for c in self.player.cameras}
        confirmed = self.observer.confirmed()
        with self.observer.lock:
            classified = dict(self.observer.classified)
        waits = [classified[k] - t for k, t in self.player.sent.items() if k in classified]
        pages = [p for p in self.pages() if p["payload"].get("state") == "confirmed"]
        paged_incidents = {p["payload"]["incident_id"]: p for p in pages}
        real = {i: a for i, a in confirmed.items() if cams.get(a.camera_id) and cams[a.camera_id].spills}
        spill_cams = {c.id for c in cams.values() if c.spills}
        paged_cams = {p["payload"]["camera_id"] for p in pages if p["payload"]["incident_id"] in real}
        page_s: float | None = None
        for inc, a in real.items():
            p = paged_incidents.get(inc)
            sent = self.player.sent.get((a.camera_id, a.evidence.confirming_seq or -1))
            if p is not None and sent is not None:
                lat = datetime.fromisoformat(p["received_at"]).timestamp() - sent
                page_s = lat if page_s is None else max(page_s, lat)
        return Row(
            scenario=scenario,
            expected=len(spill_cams),
            confirmed=len({a.camera_id for a in real.values()}),
            pages=len(paged_cams),
            lost=len(spill_cams - paged_cams),
            duplicate=sum(1 for p in self.pages() if p.get("duplicate")),
            phantom=len([i for i in paged_incidents if i not in real]),
            dead=sum(1 for i in real if self.page_outcome(i, "confirmed", "webhook") == "dead"),
            fallback=sum(1 for i in real if self.page_outcome(i, "confirmed", "console") == "sent"),
            stalled_s=round(max(waits, default=0.0), 2),
            page_s=None if page_s is None else round(page_s, 2),
            bound_s=bound_s,
            frames_published=self.player.published,
            frames_lost=len([k for k in self.player.sent if k not in classified]),
            extra={"publisher_dropped": sum(sum(st.dropped.values()) for st in self.player.stats.values()), **extra},
            wall_s=round(time.monotonic() - self.t0, 1),
            notes=notes,
        )

    def close(self) -> None:
        import redis

        from spillwatch.kafka import delete_topics_with_prefix

        if self.player is not None:
            self.player.stop()
        if self.observer is not None:
            self.observer.close()
        self.group.stop_together(20)
        try:
            delete_topics_with_prefix(self.settings, self.prefix)  # the broker keeps records in memory
        except Exception as exc:  # noqa: BLE001
            log.warning("could not delete the scenario's topics", error=repr(exc))
        try:
            r = redis.Redis.from_url(self.settings.redis.url)
            keys = list(r.scan_iter(match=RedisKeys(self.settings.redis.key_prefix).everything, count=1000))
            if keys:
                r.delete(*keys)
            r.close()
        except Exception:  # noqa: BLE001
            pass


# --------------------------------------------------------------------------- scenarios

Scenario = Callable[[Namespace], Row]
SCENARIOS: dict[str, Scenario] = {}

# A standard run: 44 frames (22 s) per camera at 2 fps; spill cameras show the spill from frame 12.
N, ONSET = 44, 12
TAKEOVER_S = 20.0  # consumer-group takeover after a kill on the local profile (6 s session) + a batch


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def add(fn: Scenario) -> Scenario:
        SCENARIOS[name] = fn
        return fn

    return add


def _standard(ns: Namespace, spills: int = 1, cleans: int = 1) -> Player:
    cams = [Camera(f"spill-{i + 1}", N, ONSET) for i in range(spills)] + [Camera(f"clean-{i + 1}", N) for i in range(cleans)]
    return ns.play(cams)


@scenario("worker SIGKILL")
def worker_kill(ns: Namespace) -> Row:
    ns.start(workers=2)
    player = _standard(ns, spills=2)
    player.at_frame(ONSET - 2)
    victim = ns.kill("worker")
    ns.settle()
    return ns.row("worker SIGKILL", TAKEOVER_S, f"1 of 2 workers killed 1 s before the spills (pid {victim.pid})")


def _kill_and_restart(ns: Namespace, role: str, at_frame: int, down_s: float, label: str, notes: str) -> Row:
    ns.start()
    player = _standard(ns)
    player.at_frame(at_frame)
    ns.kill(role)
    time.sleep(down_s)
    ns.group.start(role)
    ns.settle()
    return ns.row(label, TAKEOVER_S + 10, notes)


@scenario("aggregator SIGKILL")
def aggregator_kill(ns: Namespace) -> Row:
    # at ONSET + 2 the camera is suspected, not yet confirmed
    return _kill_and_restart(ns, "aggregator", ONSET + 2, 1.0, "aggregator SIGKILL",
                             "killed mid-window (suspected), restarted 1 s later")


@scenario("alerting SIGKILL")
def alerting_kill(ns: Namespace) -> Row:
    # down when the spill is confirmed (3 frames = 1.5 s after the onset)
    return _kill_and_restart(ns, "alerting", ONSET, 4.0, "alerting SIGKILL",
                             "killed at the spill onset, restarted 4 s later (after the confirmation)")


@scenario("Redis kill+restart")
def redis_kill(ns: Namespace) -> Row:
    ns.start()
    player = _standard(ns)
    player.at_frame(ONSET)
    ns.stack.stop_redis()
    time.sleep(5.0)
    ns.stack.start_redis()  # same port, persistence on: state and outbox come back
    ns.settle()
    return ns.row("Redis kill+restart", TAKEOVER_S + 5, "Redis down 5 s at the spill onset (AOF on)")


@scenario("broker restart")
def broker_restart(ns: Namespace) -> Row:
    from spillwatch.kafka import create_topics

    ns.start()
    player = _standard(ns)
    player.at_frame(4)
    t = time.monotonic()
    ns.stack.restart_broker()
    create_topics(ns.settings, timeout_s=60)  # memory storage: the topics are gone, recreate them
    down = time.monotonic() - t
    assert ns.observer is not None
    ns.observer.reopen()
    ns.settle(frames_timeout_s=45)
    return ns.row("broker restart", TAKEOVER_S + 25, f"broker restarted before the spill (down {down:.1f} s), topics recreated",
                  broker_down_s=round(down, 1))


@scenario("hostile corpus")
def hostile_corpus(ns: Namespace) -> Row:
    from devstack.hostile import corpus
    from spillwatch.kafka import make_producer

    ns.start()
    t = ns.settings.topics
    worker = ns.workers[0]
    records = corpus(full_bombs=True)
    bombs = [r for r in records if "bomb" in r.name or "scans" in r.name]
    prod = make_producer(ns.settings, client_id="bench-faults-hostile", max_request_size=32 * 1024 * 1024)
    base = _peak_rss_mb(worker.pid)
    try:
        for batch in (bombs, [r for r in records if r not in bombs]):
            for r in batch:
                prod.send(t.frames if r.topic == "frames" else t.classifications, key=b"spill-1",
                          value=r.build("spill-1", ns.footage.spill[0]))
            prod.flush(30)
            want = len(bombs) if batch is bombs else len(records)
            deadline = time.monotonic() + 60
            while _count(ns.settings, [t.dead_letter(t.frames), t.dead_letter(t.classifications)]) < want:
                if time.monotonic() > deadline:
                    break
            if batch is bombs:
                bomb_growth = _peak_rss_mb(worker.pid) - base
    finally:
        prod.close()
    all_growth = _peak_rss_mb(worker.pid) - base
    _standard(ns)
    ns.settle()
    dead = _count(ns.settings, [t.dead_letter(t.frames), t.dead_letter(t.classifications)])
    return ns.row("hostile corpus", TAKEOVER_S, f"{len(records)} hostile records ({dead} dead-lettered), then a real spill; "
                  f"worker peak RSS {base:.0f} MiB, +{bomb_growth:.0f} after {len(bombs)} image bombs, +{all_growth:.0f} "
                  "after all (the 20 MB record)", hostile=len(records), dead_lettered=dead, worker_rss_base_mb=round(base),
                  worker_rss_bombs_mb=round(bomb_growth, 1), worker_rss_all_mb=round(all_growth, 1))


def _webhook_down(ns: Namespace, outage_s: float, label: str) -> Row:
    ns.start()
    player = _standard(ns)
    player.at_frame(ONSET - 1)
    assert ns.receiver is not None
    ns.receiver.stop(5)
    time.sleep(outage_s / ns.speed)
    ns.start_receiver()
    ns.settle(pages_timeout_s=60)
    return ns.row(label, TAKEOVER_S + outage_s / ns.speed, f"webhook refused connections for {outage_s / ns.speed:g} s "
                  f"(= {outage_s:g} s at speed {ns.speed:g})")


@scenario("webhook down 90 s")
def webhook_90s(ns: Namespace) -> Row:
    return _webhook_down(ns, 90.0, "webhook down 90 s")


@scenario("webhook down 10 min")
def webhook_10min(ns: Namespace) -> Row:
    return _webhook_down(ns, 600.0, "webhook down 10 min")


@scenario("webhook down 90 s, 12 pages queued")
def webhook_90s_many(ns: Namespace) -> Row:
    """The alerting service alone (devstack/paging_faults.py) with 12 confirmed incidents published
    during the outage: every page delivered late, once."""
    from devstack.paging_faults import BACKOFF_MAX_S, CONFIRMED_ALERTS, run_webhook_outage

    got = run_webhook_outage(90.0, ns.speed, ns.dir / "paging", stack=ns.stack)
    return Row(scenario="webhook down 90 s, 12 pages queued", expected=CONFIRMED_ALERTS, confirmed=got["confirmed"],
               pages=got["pages_delivered"], lost=got["lost"], duplicate=got["duplicate"],
               stalled_s=round((got["stalled_s"] or 0.0) / ns.speed, 1), bound_s=(BACKOFF_MAX_S + 12.0) / ns.speed,
               wall_s=round(time.monotonic() - ns.t0, 1),
               notes=f"alerting only; receiver down {90 / ns.speed:g} s; bound: one capped backoff + slack")


def _peak_rss_mb(pid: int | None) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _count(settings: Settings, topics: list[str]) -> int:
    with TopicReader(settings, topics, missing_ok=True) as reader:
        return len(reader.read(timeout_s=10, idle_s=1.5))


# --------------------------------------------------------------------------- the run


def run_faults(out: Path, *, only: list[str] | None = None, speed: float = 10.0, model: Path | None = None,
               run_dir: Path | None = None) -> dict[str, Any]:
    """Run the scenarios (all, or ``only``); print the table; write the JSON result to ``out``."""
    import os

    from devstack.stack import LocalStack
    from spillwatch.settings import DEFAULT_MODEL

    names = only or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; known: {list(SCENARIOS)}")
    run_dir = run_dir or REPO_ROOT / "var" / "bench" / "faults" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir.mkdir(parents=True, exist_ok=True)
    footage = Footage.load()
    model = model or DEFAULT_MODEL
    rows: list[Row] = []
    started = time.monotonic()
    print(f"bench faults: {len(names)} scenario(s), speed {speed:g}, logs in {run_dir}", flush=True)
    with LocalStack(redis_persist=True, work_dir=run_dir / "stack") as stack:
        for i, name in enumerate(names, 1):
            print(f"[{i}/{len(names)}] {name} ...", flush=True)
            ns = Namespace(stack, _slug(name), run_dir, footage, model, speed)
            try:
                row = SCENARIOS[name](ns)
            except Exception as exc:  # noqa: BLE001 - a scenario that breaks is a row, not the end of the run
                log.exception("scenario failed", scenario=name)
                row = Row(scenario=name, error=f"{type(exc).__name__}: {exc}"[:300], wall_s=round(time.monotonic() - ns.t0, 1))
            finally:
                ns.close()
            rows.append(row)
            print("    " + _line(row), flush=True)
    load1, load5, _ = os.getloadavg()
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPU cores",
        "load_avg_1m_5m": [round(load1, 2), round(load5, 2)],
        "speed": speed,
        "speed_scales": ["webhook outage"] + [f"alerting.{n}" for n in SPEED_SCALED if n in type(Settings().alerting).model_fields],
        "model": str(model.relative_to(REPO_ROOT)) if model.is_relative_to(REPO_ROOT) else str(model),
        "wall_s": round(time.monotonic() - started, 1),
        "rows": [r.as_dict() for r in rows],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print()
    print(table(rows))
    print(f"\nJSON: {out}")
    return result


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:24]


HEADER = ("scenario", "expected", "confirmed", "pages", "lost", "dup", "phantom", "dead", "fallback", "stalled s", "page s",
          "bound s", "ok")


def _cells(r: Row) -> tuple[str, ...]:
    page = "-" if r.page_s is None else f"{r.page_s:.1f}"
    return (r.scenario, str(r.expected), str(r.confirmed), str(r.pages), str(r.lost), str(r.duplicate), str(r.phantom),
            str(r.dead), str(r.fallback), f"{r.stalled_s:.1f}", page, f"{r.bound_s:.0f}", "yes" if r.ok else "NO")


def _line(r: Row) -> str:
    text = " | ".join(f"{h}={c}" for h, c in zip(HEADER[1:], _cells(r)[1:], strict=True))
    return text + (f" | ERROR {r.error}" if r.error else "") + (f" | {r.notes}" if r.notes else "")


def table(rows: list[Row]) -> str:
    """The results as a Markdown table (what docs/reliability.md shows)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)
