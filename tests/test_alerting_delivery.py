"""Retry/backoff policy and routing (pure)."""

from __future__ import annotations

import pytest

from alerting.delivery import Decision, RetryPolicy
from alerting.notifiers.base import DeliveryResult, http_outcome
from alerting.routing import channels_for, escalation_due, job_id
from spillwatch.events import AlertState


def test_backoff_grows_exponentially_and_caps() -> None:
    p = RetryPolicy(max_tries=10, initial_s=0.5, max_s=4.0)
    assert [p.base_delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert p.base_delay(10_000) == 4.0  # no overflow on absurd try counts


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_jitter_stays_within_half_to_full_base(n: int) -> None:
    p = RetryPolicy(max_tries=10, initial_s=0.5, max_s=30.0)
    base = p.base_delay(n)
    assert p.delay(n, 0.0) == pytest.approx(base / 2)
    assert p.delay(n, 1.0) == pytest.approx(base)
    for _ in range(200):
        assert base / 2 <= p.delay(n) <= base


def test_decide_sent_retry_dead() -> None:
    p = RetryPolicy(max_tries=3)
    assert p.decide(DeliveryResult.sent(), 1) == Decision.SENT
    assert p.decide(DeliveryResult.retry("HTTP 503"), 1) == Decision.RETRY
    assert p.decide(DeliveryResult.retry("HTTP 503"), 2) == Decision.RETRY
    assert p.decide(DeliveryResult.retry("HTTP 503"), 3) == Decision.DEAD  # last try used
    assert p.decide(DeliveryResult.permanent("HTTP 404"), 1) == Decision.DEAD  # never retried


def test_worst_case_total_matches_schedule() -> None:
    p = RetryPolicy(max_tries=4, initial_s=1.0, max_s=3.0)
    assert p.worst_case_total_s() == 1.0 + 2.0 + 3.0


def test_invalid_policy_rejected() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_tries=0)
    with pytest.raises(ValueError):
        RetryPolicy(initial_s=0)
    with pytest.raises(ValueError):
        RetryPolicy().delay(0)


@pytest.mark.parametrize(
    ("status", "ok", "retryable"),
    [(200, True, False), (202, True, False), (204, True, False), (400, False, False), (401, False, False),
     (403, False, False), (404, False, False), (410, False, False), (408, False, True), (429, False, True),
     (500, False, True), (502, False, True), (503, False, True), (301, False, False)],
)
def test_http_status_classification(status: int, ok: bool, retryable: bool) -> None:
    r = http_outcome(status)
    assert (r.ok, r.retryable, r.status) == (ok, retryable, status)


def test_job_id_is_stable_per_incident_state_channel() -> None:
    assert job_id("inc-1", AlertState.CONFIRMED, "webhook") == job_id("inc-1", "confirmed", "webhook")
    ids = {job_id("inc-1", s, c) for s in AlertState for c in ("webhook", "console")}
    assert len(ids) == 6


def test_channels_for_states() -> None:
    prim, esc = ["console", "webhook"], ["pagerduty"]
    assert channels_for(AlertState.CONFIRMED, prim, esc) == prim
    assert channels_for(AlertState.ESCALATED, prim, esc) == esc
    assert channels_for(AlertState.ESCALATED, prim, []) == prim  # nowhere else to escalate to
    assert channels_for(AlertState.ESCALATED, prim, esc, acknowledged=True) == []
    assert channels_for(AlertState.CLEARED, prim, esc) == prim
    assert channels_for(AlertState.CLEARED, prim, esc, escalated=True) == prim + esc
    assert channels_for(AlertState.CONFIRMED, ["console", "console"], esc) == ["console"]


def test_escalation_due() -> None:
    kw = dict(acknowledged=False, cleared=False, has_escalation_channels=True)
    assert escalation_due(now=10, due_at=10, **kw)
    assert not escalation_due(now=9.9, due_at=10, **kw)
    assert not escalation_due(now=11, due_at=10, **{**kw, "acknowledged": True})
    assert not escalation_due(now=11, due_at=10, **{**kw, "cleared": True})
    assert not escalation_due(now=11, due_at=10, **{**kw, "has_escalation_channels": False})


def test_cleared_waits_for_the_first_page_of_the_same_channel() -> None:
    from alerting.routing import must_wait_for, parse_job_id

    cleared = job_id("inc|7", AlertState.CLEARED, "pagerduty")
    assert parse_job_id(cleared) == ("inc|7", "cleared", "pagerduty")
    assert must_wait_for(cleared) == [job_id("inc|7", "confirmed", "pagerduty"), job_id("inc|7", "escalated", "pagerduty")]
    assert must_wait_for(job_id("inc|7", AlertState.CONFIRMED, "pagerduty")) == []
