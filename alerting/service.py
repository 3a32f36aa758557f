"""The alerting service: a Kafka consumer group on ``spill-alerts`` feeding a durable Redis page
queue, and a dispatcher that delivers pages on a thread pool.

Flow and guarantees:

1. The consumer thread validates each record (malformed -> dead letter ``spill-alerts.dlq``),
   records the incident and queues one job per (incident, state, channel) in Redis. Offsets are
   committed only after every record of the batch is handled or durably queued; if Redis fails,
   the partition is rewound to the failed record and retried, so a crash never drops an alert.
2. The dispatcher claims due jobs (an in-flight lease in Redis: a crash mid-delivery retries the
   page after the lease instead of skipping it), delivers them on a pool, and records ``sent``
   only after a success. Failed tries are re-queued with backoff (``delivery.RetryPolicy``) instead
   of sleeping, so a down channel never holds up another channel or incident. After the last try
   the page goes to ``pages.dlq`` with the reason.
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
from alerting.notifiers import Notifier, build_notifiers
from alerting.notifiers.base import DeliveryResult, Page
from alerting.notifiers.snapshots import resolve_snapshot
from alerting.routing import channels_for, escalation_due, job_id, must_wait_for
from alerting.store import AlertStore, Job
from spillwatch.events import AlertState, DeadLetter, EventError, SpillAlert, utcnow
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
        self.policy = RetryPolicy(self.cfg.max_tries, self.cfg.backoff_initial_s, self.cfg.backoff_max_s)
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
    def start(self) -> "AlertingService":
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
            topic=self.topics.spill_alerts,
            channels=self.cfg.channels,
            escalation=self.cfg.escalation_channels,
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

    def __enter__(self) -> "AlertingService":
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
            [self.topics.spill_alerts],
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
        """Validate and queue one record; malformed ones are dead-lettered. Raises on Redis/Kafka errors."""
        try:
            if value is None:
                raise EventError("empty record (tombstone)")
            alert = SpillAlert.from_bytes(value)
        except (EventError, UnicodeDecodeError, ValueError) as exc:
            self._dead_letter_record(topic, key, value, str(exc))
            return "dead-lettered"
        self.ingest(alert)
        return "queued"

    def ingest(self, alert: SpillAlert) -> list[str]:
        """Record the alert and durably queue its pages. Returns the job ids queued now."""
        now = self._clock()
        inc = alert.incident_id
        self.store.record_alert(alert)
        incident = self.store.incident(inc)
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
        log.info("alert received", incident=inc, camera=alert.camera_id, state=alert.state.value, queued=queued)
        return queued

    def _enqueue(self, alert: SpillAlert, chans: list[str], now: float) -> list[str]:
        queued = []
        raw = alert.model_dump_json()
        for ch in chans:
            jid = job_id(alert.incident_id, alert.state, ch)
            if self.store.enqueue(Job(jid, ch, raw, 0, now), due=now):
                queued.append(jid)
        if queued:
            self._wake.set()
        return queued

    def _send_dead_letter(self, topic: str, dl: DeadLetter, key: str | None) -> None:
        fut = self._producer.send(topic, key=key.encode() if key else None, value=dl.to_bytes())
        fut.get(timeout=15)

    def _dead_letter_record(self, topic: str, key: bytes | None, value: bytes | None, reason: str) -> None:
        dlq = self.topics.dead_letter(topic)
        dl = DeadLetter.wrap(source_topic=topic, key=key, payload=value, reason=reason, service=SERVICE_NAME)
        self._send_dead_letter(dlq, dl, dl.key)
        DEAD_LETTERS.labels(topic=dlq, reason="malformed").inc()
        log.warning("malformed alert dead-lettered", topic=dlq, reason=reason)

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
                    if self.store.any_pending(must_wait_for(jid)):
                        self.store.postpone(jid, now + 0.5)  # "cleared" waits for its first page
                        continue
                    if self.store.claim(jid, self.owner, now) != "claimed":
                        continue
                    job = self.store.load_job(jid)
                    if job is None:
                        continue
                    with self._active_lock:
                        self._active.add(jid)
                    free -= 1
                    self._pool.submit(self._deliver, job)
                nxt = self.store.next_due()
                wait = 0.5 if nxt is None else min(0.5, max(0.02, nxt - self._clock()))
            except Exception as exc:  # noqa: BLE001 - Redis away: keep trying
                log.warning("dispatcher error", error=f"{type(exc).__name__}: {exc}")
                wait = 1.0
            if self._wake.wait(wait):
                self._wake.clear()

    def _deliver(self, job: Job) -> None:
        try:
            self._deliver_once(job)
        except Exception as exc:  # noqa: BLE001 - the in-flight lease expires and another try follows
            log.exception("delivery bookkeeping failed", job=job.job_id, error=str(exc))
            try:
                self.store.release(job, self.owner, self._clock() + 5.0)
            except Exception:  # noqa: BLE001
                pass
        finally:
            with self._active_lock:
                self._active.discard(job.job_id)
            self._wake.set()

    def _attempt(self, job: Job, alert: SpillAlert, tries: int) -> DeliveryResult:
        if self.cfg.dry_run:
            return DeliveryResult.sent("dry run: recorded, no channel called")
        notifier = self.notifiers.get(job.channel)
        if notifier is None:
            return DeliveryResult.permanent(f"channel {job.channel!r} is not configured")
        page = Page(alert, job.channel, tries, resolve_snapshot(alert.evidence.snapshot_ref, self.cfg.evidence_dir))
        try:
            return notifier.send(page)
        except Exception as exc:  # noqa: BLE001 - a notifier bug must not kill the page: retry, then DLQ
            return DeliveryResult.retry(f"notifier error: {type(exc).__name__}: {exc}")

    def _deliver_once(self, job: Job) -> None:
        alert = job.alert
        tries = job.tries + 1
        result = self._attempt(job, alert, tries)
        decision = self.policy.decide(result, tries)
        now = self._clock()
        ch, inc = job.channel, alert.incident_id
        if decision == Decision.SENT:
            self.store.complete_sent(job, self.owner, now, tries=tries, reason=result.reason, dry_run=self.cfg.dry_run)
            PAGES.labels(channel=ch, outcome="sent").inc()
            if alert.state == AlertState.CONFIRMED:
                PAGE_LATENCY.observe(max(0.0, now - alert.confirmed_at.timestamp()))
                if self.cfg.escalation_channels and not self.acks.is_acked(inc):
                    self.store.schedule_escalation(inc, now + self.cfg.escalate_after_s)
            log.info("page sent", incident=inc, state=alert.state.value, channel=ch, tries=tries, dry_run=self.cfg.dry_run)
        elif decision == Decision.RETRY:
            delay = self.policy.delay(tries, self._rng())
            self.store.schedule_retry(job, self.owner, now + delay, tries=tries, reason=result.reason)
            PAGES.labels(channel=ch, outcome="retried").inc()
            log.warning("page failed; retrying", incident=inc, channel=ch, tries=tries, reason=result.reason, retry_in_s=round(delay, 2))
        else:
            reason = f"{ch}: {result.reason} (after {tries} tries)"
            dl = DeadLetter.wrap(
                source_topic=self.topics.spill_alerts,
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
            PAGES.labels(channel=ch, outcome="dead").inc()
            DEAD_LETTERS.labels(topic=self.topics.pages_dead_letter, reason="page_failed").inc()
            log.error("page dead-lettered", incident=inc, channel=ch, tries=tries, reason=result.reason)
            if alert.state == AlertState.CONFIRMED and self.cfg.escalation_channels and ch not in self.cfg.escalation_channels:
                # A primary channel is gone for good: do not wait for the ack timer.
                self.store.schedule_escalation(inc, now)
                self._wake.set()

    # ------------------------------------------------------------------ escalation
    def _run_escalations(self, now: float) -> None:
        for inc in self.store.take_due_escalations(now):
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
            self.store.finish_escalation(inc)
