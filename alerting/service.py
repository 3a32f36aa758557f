"""The alerting service: a Kafka consumer group on ``spill-alerts`` and ``camera-alerts`` feeding a
durable Redis page queue, and a dispatcher that delivers pages on a thread pool.

Camera outages (``camera-alerts``, alerting/kinds.py) take the same path as spill incidents —
validation, transition check (``check_camera_transition``), queue, idempotency, retries, max age,
fallback, dead letters — routed to ``alerting.camera_channels`` (default: ``channels``), one page
when the outage opens and one recovery notice, never escalated.

Flow and guarantees:

1. The consumer thread validates each record (malformed -> dead letter ``spill-alerts.dlq``),
   checks that the transition makes sense for the incident it knows (``transitions``: an alert
   that does not -> dead letter with the reason; a transition already seen is a duplicate and
   pages nothing new), records the incident and queues one job per (incident, state, channel)
   in Redis. Offsets are
   committed only after every record of the batch is handled or durably queued; if Redis fails,
   the partition is rewound to the failed record and retried, so a crash never drops an alert.
2. The dispatcher claims due jobs (an in-flight lease in Redis: a crash mid-delivery retries the
   page after the lease instead of skipping it), delivers them on a pool, and records ``sent``
   only after a success. Failed tries are re-queued with backoff (``delivery.RetryPolicy``) instead
   of sleeping, so a down channel never holds up another channel or incident, until the page is
   ``max_age_s`` old; then it goes to ``pages.dlq`` with the reason. A channel that has been
   failing for ``fallback_after_s`` also sends its pages to ``fallback_channels``; the primary
   keeps retrying and delivers late, once. A job that cannot be handled at all (its stored alert
   unreadable, a bug) is dead-lettered with the reason at once: one bad job never blocks another.
3. Escalation: once an incident's confirmed page is delivered, an escalation check is scheduled
   ``escalate_after_s`` later (immediately if a primary page was dead-lettered); if nobody has
   acknowledged by then, the escalation channels are paged once. An ``escalated`` alert from the
   aggregator pages the same channels with the same idempotency keys, so they are paged once.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from alerting.acks import AckStore
from alerting.delivery import Decision, RetryPolicy
from alerting.kinds import Alert, kind_of
from alerting.notifiers import Notifier, build_notifiers
from alerting.notifiers.base import DeliveryResult, Page
from alerting.notifiers.snapshots import resolve_snapshot
from alerting.routing import (
    camera_channels,
    channels_for,
    escalation_due,
    fallback_targets,
    job_id,
    must_wait_for,
    parse_job_id,
)
from alerting.store import AlertStore, Job
from alerting.transitions import OUTAGE_OPENERS, IncidentFacts, Verdict, check_camera_transition, check_transition
from spillwatch.events import AlertState, CameraAlert, CameraAlertState, DeadLetter, EventError, SpillAlert, utcnow
from spillwatch.logs import get_logger
from spillwatch.metrics import DEAD_LETTERS, PAGE_LATENCY, PAGES, start_metrics_server
from spillwatch.settings import Settings

log = get_logger("alerting.service")

SERVICE_NAME = "alerting"


def make_redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10)


class AlertingService:
    def __init__(
        self,
        settings: Settings,
        *,
        notifiers: dict[str, Notifier] | None = None,
        redis: Any = None,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.cfg = settings.alerting
        self.topics = settings.topics
        self.redis = redis if redis is not None else make_redis(settings.redis.url)
        self.store = AlertStore(
            self.redis, settings.redis.key_prefix, idempotency_ttl_s=self.cfg.idempotency_ttl_s, lease_s=self.cfg.inflight_lease_s
        )
        self.acks = AckStore(self.redis, settings.redis.key_prefix, self.cfg.ack_ttl_s, on_ack=self.store.cancel_escalation)
        if notifiers is None:
            notifiers = {} if self.cfg.dry_run else build_notifiers(self.cfg)
        self.notifiers = notifiers
        self.policy = RetryPolicy(
            max_tries=self.cfg.max_tries,
            initial_s=self.cfg.backoff_initial_s,
            max_s=self.cfg.backoff_max_s,
            max_age_s=self.cfg.max_age_s,
        )
        # like the aggregator: when cameras are configured, an alert must name one of them
        self.known_cameras = frozenset(c.id for c in settings.cameras if c.enabled)
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.group_id = settings.kafka.topic_prefix + self.cfg.group_id
        self._clock = clock
        self._rng = rng
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.assigned = threading.Event()  # set once the consumer owns partitions
        self._active: set[str] = set()
        self._active_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.cfg.delivery_workers, thread_name_prefix="alerting-page")
        self._threads: list[threading.Thread] = []
        self._producer: Any = None
        self.errors: list[str] = []  # fatal errors of the background threads (for health / CLI)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> AlertingService:
        from spillwatch.kafka import make_producer

        self.redis.ping()
        start_metrics_server(self.cfg.metrics_port)
        self._producer = make_producer(self.settings, client_id=f"alerting-{self.owner}")
        for name, target in (("alerting-consumer", self._consume_loop), ("alerting-dispatcher", self._dispatch_loop)):
            t = threading.Thread(target=self._guard(target), name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info(
            "alerting started",
            group=self.group_id,
            topics=[self.topics.spill_alerts, self.topics.camera_alerts],
            channels=self.cfg.channels,
            camera_channels=self.camera_channels,
            escalation=self.cfg.escalation_channels,
            fallback=self.cfg.fallback_channels,
            max_age_s=self.cfg.max_age_s,
            dry_run=self.cfg.dry_run,
        )
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Stop consuming, finish the pages in flight, commit, close. Queued retries stay in Redis."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for n in self.notifiers.values():
            try:
                n.close()
            except Exception:  # noqa: BLE001
                log.warning("notifier close failed", channel=n.name)
        if self._producer is not None:
            self._producer.flush(10)
            self._producer.close(5)
        log.info("alerting stopped")

    def wait(self) -> None:
        while not self._stop.wait(0.5):
            pass

    def __enter__(self) -> AlertingService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pages(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Pages delivered (or recorded in dry-run), oldest first: incident, channel, state, at, tries."""
        return self.store.recent_pages(limit)

    def health(self) -> dict[str, Any]:
        try:
            redis_ok = bool(self.redis.ping())
        except Exception:  # noqa: BLE001
            redis_ok = False
        alive = all(t.is_alive() for t in self._threads) and bool(self._threads)
        return {
            "status": "ok" if redis_ok and alive and not self.errors else "degraded",
            "redis": redis_ok,
            "consumer_assigned": self.assigned.is_set(),
            "threads_alive": alive,
            "errors": self.errors[-5:],
            "queued_pages": self.redis.zcard(self.store.queue_key) if redis_ok else None,
        }

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - recorded; health turns degraded
                self.errors.append(f"{fn.__name__}: {type(exc).__name__}: {exc}")
                log.exception("alerting thread died", thread=fn.__name__)

        return run

    # ------------------------------------------------------------------ consuming
    def _consume_loop(self) -> None:
        """Run the consumer; if it fails (broker away at start, unexpected error), start it again."""
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self._consume()
                return
            except Exception as exc:  # noqa: BLE001 - uncommitted records are consumed again
                log.warning("consumer failed; restarting", error=f"{type(exc).__name__}: {exc}", retry_in_s=backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _consume(self) -> None:
        from spillwatch.kafka import make_consumer

        consumer = make_consumer(
            self.settings,
            [self.topics.spill_alerts, self.topics.camera_alerts],
            self.group_id,
            enable_auto_commit=False,
            client_id=f"alerting-{self.owner}",
            max_poll_records=200,
        )
        backoff = 0.5
        try:
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=300)
                if consumer.assignment():
                    self.assigned.set()
                if not batch:
                    continue
                failed = False
                for tp, records in batch.items():
                    for rec in records:
                        try:
                            self.handle_record(rec.topic, rec.key, rec.value)
                        except Exception as exc:  # noqa: BLE001 - Redis/Kafka trouble: rewind and retry
                            log.warning("alert not queued; will retry", error=f"{type(exc).__name__}: {exc}", offset=rec.offset)
                            consumer.seek(tp, rec.offset)
                            failed = True
                            break
                try:
                    consumer.commit()
                except Exception as exc:  # noqa: BLE001 - e.g. rebalance: records come again, handled idempotently
                    log.warning("offset commit failed", error=f"{type(exc).__name__}: {exc}")
                if failed:
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                else:
                    backoff = 0.5
        finally:
            try:
                consumer.close(autocommit=False)
            except Exception:  # noqa: BLE001
                pass

    def handle_record(self, topic: str, key: bytes | None, value: bytes | None) -> str:
        """Validate and queue one record; malformed ones and transitions that make no sense for
        the incident are dead-lettered with the reason. Raises on Redis/Kafka errors."""
        camera = topic == self.topics.camera_alerts
        try:
            if value is None:
                raise EventError("empty record (tombstone)")
            alert: Alert = CameraAlert.from_bytes(value) if camera else SpillAlert.from_bytes(value)
        except (EventError, UnicodeDecodeError, ValueError) as exc:
            self._dead_letter_record(topic, key, value, str(exc))
            return "dead-lettered"
        check = (check_camera_transition if camera else check_transition)(
            alert.state, alert.camera_id, IncidentFacts.from_record(self.store.incident(alert.incident_id)),  # type: ignore[arg-type]
            cameras=self.known_cameras,
        )
        if check.verdict == Verdict.REJECT:
            self._dead_letter_record(topic, key, value, f"rejected {alert.state.value} alert for incident "
                                     f"{alert.incident_id}: {check.reason}", kind="rejected")
            return "dead-lettered"
        self.ingest(alert, duplicate=check.verdict == Verdict.DUPLICATE)
        return "duplicate" if check.verdict == Verdict.DUPLICATE else "queued"

    def ingest(self, alert: Alert, *, duplicate: bool = False) -> list[str]:
        """Record the alert and durably queue its pages. Returns the job ids queued now.

        ``duplicate``: the incident went through this transition already (``transitions``); its
        pages are queued again, idempotently (nothing is paged twice; a crash between recording
        the alert and queueing its pages loses nothing), and the record is left as it is."""
        now = self._clock()
        inc = alert.incident_id
        if not duplicate:
            self.store.record_alert(alert)
        incident = self.store.incident(inc)
        if isinstance(alert, CameraAlert):
            if duplicate:  # re-queue the outage's own opening page (a stalled after an offline is not a second one)
                alert = self._recorded_camera_alert(incident, alert)
            queued = self._enqueue(alert, self.camera_channels, now)
            log.info("camera alert received", incident=inc, camera=alert.camera_id, state=alert.state.value,
                     queued=queued, duplicate=duplicate)
            return queued
        if alert.state in (AlertState.CLEARED, AlertState.ESCALATED):
            self.store.cancel_escalation(inc)
        if alert.state == AlertState.ESCALATED and incident.get("state") == AlertState.CLEARED.value:
            log.info("escalation of a cleared incident ignored", incident=inc)
            return []
        chans = channels_for(
            alert.state,
            self.cfg.channels,
            self.cfg.escalation_channels,
            acknowledged=self.acks.is_acked(inc),
            escalated=incident.get("escalated") == "1",
        )
        queued = self._enqueue(alert, chans, now)
        log.info("alert received", incident=inc, camera=alert.camera_id, state=alert.state.value, queued=queued,
                 duplicate=duplicate)
        return queued

    @staticmethod
    def _recorded_camera_alert(incident: dict[str, str], alert: CameraAlert) -> CameraAlert:
        """The alert recorded for ``alert``'s transition (the outage opens once, as offline or stalled)."""
        states = (alert.state.value,) if alert.state == CameraAlertState.RECOVERED else tuple(OUTAGE_OPENERS)
        for st in states:
            raw = incident.get(f"alert:{st}")
            if raw:
                return CameraAlert.from_bytes(raw)  # type: ignore[no-any-return]
        return alert

    def _enqueue(self, alert: Alert, chans: list[str], now: float) -> list[str]:
        queued = []
        raw = alert.model_dump_json()
        for ch in chans:
            jid = job_id(alert.incident_id, alert.state, ch)
            if self.store.enqueue(Job(jid, ch, raw, 0, now, kind=kind_of(alert)), due=now):
                queued.append(jid)
        if queued:
            self._wake.set()
        return queued

    def _send_dead_letter(self, topic: str, dl: DeadLetter, key: str | None) -> None:
        fut = self._producer.send(topic, key=key.encode() if key else None, value=dl.to_bytes())
        fut.get(timeout=15)

    def _dead_letter_record(
        self, topic: str, key: bytes | None, value: bytes | None, reason: str, kind: str = "malformed"
    ) -> None:
        dlq = self.topics.dead_letter(topic)
        dl = DeadLetter.wrap(source_topic=topic, key=key, payload=value, reason=reason, service=SERVICE_NAME)
        self._send_dead_letter(dlq, dl, dl.key)
        DEAD_LETTERS.labels(topic=dlq, reason=kind).inc()
        log.warning(f"{kind} alert dead-lettered", topic=dlq, reason=reason)

    # ------------------------------------------------------------------ dispatching
    def _dispatch_loop(self) -> None:
        workers = self.cfg.delivery_workers
        while not self._stop.is_set():
            now = self._clock()
            try:
                self._run_escalations(now)
                with self._active_lock:
                    free = workers - len(self._active)
                    active = set(self._active)
                for jid in self.store.due_jobs(now, free + len(active)):
                    if free <= 0:
                        break
                    if jid in active:
                        continue
                    if self._dispatch(jid, now):
                        free -= 1
                nxt = self.store.next_due()
                wait = 0.5 if nxt is None else min(0.5, max(0.02, nxt - self._clock()))
            except Exception as exc:  # noqa: BLE001 - Redis away: keep trying
                log.warning("dispatcher error", error=f"{type(exc).__name__}: {exc}")
                wait = 1.0
            if self._wake.wait(wait):
                self._wake.clear()

    def _dispatch(self, jid: str, now: float) -> bool:
        """Claim one due job and hand it to the pool (True when it was). A job that cannot even be
        read is dead-lettered here, so it cannot hold the queue; Redis errors propagate."""
        try:
            if self.store.any_pending(must_wait_for(jid)):
                self.store.postpone(jid, now + 0.5)  # "cleared" waits for its first page
                return False
            if self.store.claim(jid, self.owner, now) != "claimed":
                return False
            job = self.store.load_job(jid)
        except Exception as exc:  # noqa: BLE001
            if _transient(exc):
                raise
            self._poison(Job(jid, parse_job_id(jid)[2], self.store.raw_job(jid) or ""), f"unreadable page job: {exc}")
            return False
        if job is None:
            return False
        with self._active_lock:
            self._active.add(jid)
        self._pool.submit(self._deliver, job)
        return True

    def _deliver(self, job: Job) -> None:
        try:
            self._deliver_once(job)
        except Exception as exc:  # noqa: BLE001 - see below
            if _transient(exc):
                # Redis/Kafka trouble: give the job back, a later pass retries it
                log.warning("delivery bookkeeping failed; retrying", job=job.job_id, error=f"{type(exc).__name__}: {exc}")
                try:
                    self.store.release(job, self.owner, self._clock() + 5.0)
                except Exception:  # noqa: BLE001 - the in-flight lease expires and another try follows
                    pass
            else:
                # the job itself is bad (unreadable alert, a bug it triggers): retrying cannot help
                log.exception("page job cannot be handled; dead-lettering it", job=job.job_id)
                self._poison(job, f"page job cannot be handled: {type(exc).__name__}: {exc}")
        finally:
            with self._active_lock:
                self._active.discard(job.job_id)
            self._wake.set()

    def _poison(self, job: Job, reason: str, *, requeue: bool = True) -> None:
        """Dead-letter a job that cannot be delivered or even read (``pages.dlq``, with the reason)."""
        incident, state, channel = parse_job_id(job.job_id)
        now = self._clock()
        dl = DeadLetter.wrap(
            source_topic=self._source_topic(job.kind), key=incident, payload=job.alert_json.encode(), reason=reason,
            service=SERVICE_NAME, channel=channel, incident_id=incident, state=state, tries=job.tries, retryable=False,
        )
        try:
            self._send_dead_letter(self.topics.pages_dead_letter, dl, incident)
            self.store.complete_dead(job, now, tries=job.tries, reason=reason)
        except Exception as exc:  # noqa: BLE001 - keep it queued (leased): a later pass dead-letters it
            log.warning("poison job not dead-lettered yet", job=job.job_id, error=f"{type(exc).__name__}: {exc}")
            if requeue:
                try:
                    self.store.release(job, self.owner, now + 5.0)
                except Exception:  # noqa: BLE001
                    pass
            return
        PAGES.labels(channel=channel, outcome="dead", kind=job.kind).inc()
        DEAD_LETTERS.labels(topic=self.topics.pages_dead_letter, reason="poison_job").inc()
        log.error("page job dead-lettered", job=job.job_id, reason=reason)

    @property
    def camera_channels(self) -> list[str]:
        return camera_channels(self.cfg.channels, self.cfg.camera_channels)

    def _source_topic(self, kind: str) -> str:
        return self.topics.camera_alerts if kind == "camera" else self.topics.spill_alerts

    def _attempt(self, job: Job, alert: Alert, tries: int) -> DeliveryResult:
        if self.cfg.dry_run:
            return DeliveryResult.sent("dry run: recorded, no channel called")
        notifier = self.notifiers.get(job.channel)
        if notifier is None:
            return DeliveryResult.permanent(f"channel {job.channel!r} is not configured")
        snapshot = resolve_snapshot(alert.evidence.snapshot_ref, self.cfg.evidence_dir) if isinstance(alert, SpillAlert) else None
        page = Page(alert, job.channel, tries, snapshot)
        try:
            return notifier.send(page)
        except Exception as exc:  # noqa: BLE001 - a notifier bug must not kill the page: retry, then DLQ
            return DeliveryResult.retry(f"notifier error: {type(exc).__name__}: {exc}")

    def _deliver_once(self, job: Job) -> None:
        alert = job.alert
        tries = job.tries + 1
        result = self._attempt(job, alert, tries)
        now = self._clock()
        age = max(0.0, now - job.enqueued_at)
        decision = self.policy.decide(result, tries, age)
        ch, inc = job.channel, alert.incident_id
        if decision == Decision.SENT:
            self.store.complete_sent(job, self.owner, now, tries=tries, reason=result.reason, dry_run=self.cfg.dry_run)
            if not self.cfg.dry_run:
                self.store.channel_ok(ch)
            PAGES.labels(channel=ch, outcome="sent", kind=job.kind).inc()
            if isinstance(alert, SpillAlert) and alert.state == AlertState.CONFIRMED:
                PAGE_LATENCY.observe(max(0.0, now - alert.confirmed_at.timestamp()))
                if self.cfg.escalation_channels and not self.acks.is_acked(inc):
                    self.store.schedule_escalation(inc, now + self.cfg.escalate_after_s)
            log.info("page sent", incident=inc, state=alert.state.value, channel=ch, tries=tries, late_s=round(age, 1),
                     dry_run=self.cfg.dry_run)
            return
        if result.retryable:
            self._maybe_fall_back(job, alert, now)
        if decision == Decision.RETRY:
            delay = self.policy.delay(tries, self._rng(), age)
            self.store.schedule_retry(job, self.owner, now + delay, tries=tries, reason=result.reason)
            PAGES.labels(channel=ch, outcome="retried", kind=job.kind).inc()
            log.warning("page failed; retrying", incident=inc, channel=ch, tries=tries, reason=result.reason,
                        retry_in_s=round(delay, 2), age_s=round(age, 1))
            return
        why = f"after {tries} tries" + (f", {age:.0f} s" if result.retryable else "")
        reason = f"{ch}: {result.reason} ({why})"
        dl = DeadLetter.wrap(
            source_topic=self._source_topic(job.kind),
            key=alert.camera_id,
            payload=job.alert_json.encode(),
            reason=reason,
            service=SERVICE_NAME,
            channel=ch,
            incident_id=inc,
            state=alert.state.value,
            tries=tries,
            retryable=result.retryable,
        )
        try:
            self._send_dead_letter(self.topics.pages_dead_letter, dl, alert.camera_id)
        except Exception as exc:  # noqa: BLE001 - keep the job; dead-letter it on a later pass
            log.warning("dead letter not written; keeping the page queued", error=str(exc))
            self.store.release(job, self.owner, now + 5.0)
            return
        self.store.complete_dead(job, now, tries=tries, reason=reason)
        PAGES.labels(channel=ch, outcome="dead", kind=job.kind).inc()
        DEAD_LETTERS.labels(topic=self.topics.pages_dead_letter, reason="page_failed").inc()
        log.error("page dead-lettered", incident=inc, channel=ch, tries=tries, reason=result.reason)
        if (isinstance(alert, SpillAlert) and alert.state == AlertState.CONFIRMED and self.cfg.escalation_channels
                and ch not in self.cfg.escalation_channels):
            # A primary channel is gone for good: do not wait for the ack timer.
            self.store.schedule_escalation(inc, now)
            self._wake.set()

    def _maybe_fall_back(self, job: Job, alert: Alert, now: float) -> None:
        """The try failed on ``job.channel``: note the channel's outage, and once it has lasted
        ``fallback_after_s`` queue the same page on the fallback channels (idempotent job ids)."""
        if not self.cfg.fallback_channels or job.channel in self.cfg.fallback_channels:
            return
        down_since = self.store.channel_failed(job.channel, now)
        targets = fallback_targets(
            job.channel, now=now, down_since=down_since, fallback_after_s=self.cfg.fallback_after_s,
            fallback_channels=self.cfg.fallback_channels,
        )
        if targets:
            queued = self._enqueue(alert, targets, now)
            if queued:
                log.warning("channel failing: page sent to the fallback channels too", incident=alert.incident_id,
                            channel=job.channel, down_s=round(now - down_since, 1), queued=queued)

    # ------------------------------------------------------------------ escalation
    def _run_escalations(self, now: float) -> None:
        for inc in self.store.take_due_escalations(now):
            try:
                self._escalate(inc, now)
            except Exception as exc:  # noqa: BLE001
                if _transient(exc):
                    raise  # the escalation stays leased and is taken again after the lease
                log.exception("escalation cannot be handled; dead-lettering it", incident=inc)
                raw = self.store.incident(inc).get(f"alert:{AlertState.CONFIRMED.value}") or ""
                self._poison(Job(job_id(inc, AlertState.ESCALATED, "*"), "*", raw),
                             f"escalation cannot be handled: {type(exc).__name__}: {exc}", requeue=False)
            self.store.finish_escalation(inc)

    def _escalate(self, inc: str, now: float) -> None:
        incident = self.store.incident(inc)
        raw = incident.get(f"alert:{AlertState.CONFIRMED.value}")
        due = raw is not None and escalation_due(
            now=now,
            due_at=now,
            acknowledged=self.acks.is_acked(inc),
            cleared=incident.get("state") == AlertState.CLEARED.value,
            has_escalation_channels=bool(self.cfg.escalation_channels),
        )
        if due and raw is not None:
            base = SpillAlert.from_bytes(raw)
            esc = base.model_copy(update={"state": AlertState.ESCALATED, "event_time": utcnow()})
            self.store.record_alert(esc)
            queued = self._enqueue(esc, list(self.cfg.escalation_channels), now)
            log.warning("incident not acknowledged: escalating", incident=inc, queued=queued)


def _transient(exc: BaseException) -> bool:
    """Trouble with Redis or Kafka (retry later), as opposed to a job that can never be handled."""
    import redis

    try:
        from kafka.errors import KafkaError
    except ImportError:  # pragma: no cover
        KafkaError = ()  # type: ignore[assignment,misc]  # noqa: N806
    return isinstance(exc, (redis.RedisError, KafkaError, ConnectionError, TimeoutError))


