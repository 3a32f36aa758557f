"""Idempotency keys, in-flight leases, escalation schedule and acks on a real Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from alerting.acks import AckRequest, AckStore
from alerting.routing import job_id
from alerting.service import make_redis
from alerting.store import AlertStore, Job
from spillwatch.events import AlertState
from spillwatch.redis_keys import RedisKeys
from tests.helpers import wait_until
from tests.helpers.alerts import make_alert

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]  # real Redis (the session's local stack)


@pytest.fixture()
def store(local_stack: Any) -> Iterator[AlertStore]:
    r = make_redis(local_stack.redis_url)
    try:
        yield AlertStore(r, f"t:{uuid.uuid4().hex[:8]}", idempotency_ttl_s=3600, lease_s=0.5)
    finally:
        r.close()


def _job(channel: str = "webhook", state: AlertState = AlertState.CONFIRMED) -> Job:
    alert = make_alert(state)
    return Job(job_id(alert.incident_id, state, channel), channel, alert.model_dump_json(), 0, time.time())


def test_enqueue_is_idempotent_and_sent_is_final(store: AlertStore) -> None:
    job = _job()
    now = time.time()
    assert store.enqueue(job, now) is True
    assert store.enqueue(job, now) is False  # redelivered alert: same job, queued once
    assert store.due_jobs(now + 1, 10) == [job.job_id]
    assert store.claim(job.job_id, "A", now) == "claimed"
    assert store.claim(job.job_id, "B", now) == "busy"  # another run must not page in parallel
    store.complete_sent(job, "A", now, tries=1, reason="HTTP 200", dry_run=False)
    assert store.page_state(job.job_id).startswith("sent:")
    assert store.due_jobs(now + 3600, 10) == []
    assert store.enqueue(job, now) is False  # after success: never paged again
    pages = store.recent_pages()
    assert [(p["incident_id"], p["channel"], p["status"]) for p in pages] == [("inc-42", "webhook", "sent")]


def test_crash_in_flight_is_retried_after_the_lease(store: AlertStore) -> None:
    job = _job()
    now = time.time()
    store.enqueue(job, now)
    assert store.claim(job.job_id, "crashed-run", now) == "claimed"
    # the run dies without recording anything; nothing is due until the lease ends
    assert store.due_jobs(time.time(), 10) == []
    wait_until(lambda: store.page_state(job.job_id) is None, 10, 0.05)  # Redis let the lease expire
    later = max(time.time(), now + 0.5)
    assert store.due_jobs(later, 10) == [job.job_id]
    assert store.claim(job.job_id, "restarted-run", later) == "claimed"
    assert store.page_state(job.job_id) == "inflight:restarted-run"


def test_retry_releases_only_own_lease_and_keeps_tries(store: AlertStore) -> None:
    job = _job()
    now = time.time()
    store.enqueue(job, now)
    store.claim(job.job_id, "A", now)
    store.schedule_retry(job, "A", now + 0.2, tries=1, reason="HTTP 500")
    assert store.page_state(job.job_id) is None
    loaded = store.load_job(job.job_id)
    assert loaded is not None and loaded.tries == 1 and loaded.last_reason == "HTTP 500"
    assert store.due_jobs(now + 0.1, 10) == [] and store.due_jobs(now + 0.3, 10) == [job.job_id]


def test_dead_page_is_not_requeued(store: AlertStore) -> None:
    job = _job()
    now = time.time()
    store.enqueue(job, now)
    store.claim(job.job_id, "A", now)
    store.complete_dead(job, now, tries=8, reason="webhook: HTTP 500 (after 8 tries)")
    assert store.enqueue(job, now) is False
    assert store.incident_pages("inc-42")["confirmed:webhook"]["status"] == "dead"


def test_incident_state_only_moves_forward(store: AlertStore) -> None:
    store.record_alert(make_alert(AlertState.CONFIRMED))
    assert store.incident("inc-42")["state"] == "confirmed"
    store.record_alert(make_alert(AlertState.ESCALATED))
    assert store.incident("inc-42")["state"] == "escalated"
    store.record_alert(make_alert(AlertState.CLEARED))
    store.record_alert(make_alert(AlertState.CONFIRMED))  # redelivered late
    store.record_alert(make_alert(AlertState.ESCALATED))
    inc = store.incident("inc-42")
    assert inc["state"] == "cleared" and inc["escalated"] == "1"


def test_escalation_schedule_taken_once_and_never_postponed(store: AlertStore) -> None:
    now = time.time()
    store.schedule_escalation("inc-1", now + 10)
    store.schedule_escalation("inc-1", now + 20)  # a later page must not postpone it
    assert store.escalation_due_at("inc-1") == pytest.approx(now + 10)
    store.schedule_escalation("inc-1", now + 1)  # a dead-lettered primary page brings it forward
    assert store.take_due_escalations(now + 0.5) == []
    assert store.take_due_escalations(now + 2) == ["inc-1"]
    assert store.take_due_escalations(now + 2) == []  # handed to one caller only
    store.finish_escalation("inc-1")
    assert store.escalation_due_at("inc-1") is None


def test_ack_stored_with_label_and_cancels_escalation(store: AlertStore) -> None:
    acks = AckStore(store.r, store.key_prefix, 3600, on_ack=store.cancel_escalation)
    store.schedule_escalation("inc-9", time.time() + 5)
    a = acks.ack("inc-9", AckRequest(by="maria", note="mopped", label=True))
    assert a.label == "true"
    got = acks.get("inc-9")
    assert got is not None and (got.by, got.note, got.label) == ("maria", "mopped", "true")
    assert store.escalation_due_at("inc-9") is None
    # the layout other stages read (archive labels): <prefix>:ack:<incident>
    assert store.r.hget(RedisKeys(store.key_prefix).ack("inc-9"), "label") == "true"
    with pytest.raises(ValueError):
        AckRequest(by="x", label="maybe")
