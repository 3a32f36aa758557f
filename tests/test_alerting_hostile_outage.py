"""A long webhook outage loses no page and pages nothing twice: the real alerting service (a child
process) against the local receiver while it is down, with the production retry shape scaled down;
fallback channels after N seconds of failure; a page whose answer was lost is de-duplicated by
the receiver on the signed key; a page older than max_age_s is dead-lettered with its reason."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from alerting.delivery import Decision, RetryPolicy
from alerting.notifiers.base import DeliveryResult
from alerting.receiver import WebhookReceiver
from alerting.routing import fallback_targets
from devstack.paging_faults import run_webhook_outage
from devstack.stack import free_port
from spillwatch.events import DeadLetter
from spillwatch.settings import Settings
from tests.helpers import consume_all, wait_until
from tests.helpers.alerts import SECRET, configure, make_alert, page_status, publish, running, settled_service

FAIL = DeliveryResult.retry("HTTP 503")


# ---------------------------------------------------------------- pure policy


def test_retries_last_until_max_age_not_a_try_count() -> None:
    p = RetryPolicy(initial_s=0.5, max_s=30.0, max_age_s=3600.0)
    assert p.decide(FAIL, tries_done=500, age_s=3599.0) == Decision.RETRY  # a long outage is outlasted
    assert p.decide(FAIL, tries_done=3, age_s=3600.0) == Decision.DEAD
    assert p.decide(FAIL, tries_done=1, age_s=float("nan")) == Decision.DEAD
    assert p.decide(DeliveryResult.permanent("HTTP 404"), 1, 0.0) == Decision.DEAD
    assert p.decide(DeliveryResult.sent(), 900, 3599.0) == Decision.SENT
    assert RetryPolicy(max_tries=3, max_age_s=3600).decide(FAIL, 3, 10.0) == Decision.DEAD  # optional cap
    # capped exponential backoff; the last wait ends exactly at max age
    assert [p.base_delay(n) for n in (1, 2, 3, 7, 8, 100)] == [0.5, 1.0, 2.0, 30.0, 30.0, 30.0]
    assert p.delay(100, rand=1.0, age_s=3590.0) == pytest.approx(10.0)
    assert p.delay(100, rand=1.0, age_s=3700.0) == 0.0
    assert p.worst_case_total_s() == 3600.0


def test_a_90_s_outage_fits_the_default_budget_with_room_to_spare() -> None:
    """The old defaults (8 tries, 0.5..30 s) gave up after 31-62 s: shorter than a 90 s outage."""
    p = RetryPolicy(max_tries=None, initial_s=0.5, max_s=30.0, max_age_s=3600.0)
    t, n = 0.0, 1
    while t < 90.0:
        assert p.decide(FAIL, n, t) == Decision.RETRY
        t += p.delay(n, rand=0.0, age_s=t)  # the shortest waits: most tries
        n += 1
    assert n < 20  # not hammering the receiver either


def test_fallback_targets() -> None:
    kw: dict[str, Any] = dict(fallback_after_s=60.0, fallback_channels=["slack", "email"])
    assert fallback_targets("webhook", now=100.0, down_since=50.0, **kw) == []
    assert fallback_targets("webhook", now=110.0, down_since=50.0, **kw) == ["slack", "email"]
    assert fallback_targets("webhook", now=110.0, down_since=None, **kw) == []
    assert fallback_targets("slack", now=500.0, down_since=0.0, **kw) == []  # a fallback never falls back
    assert fallback_targets("webhook", now=500.0, down_since=0.0, fallback_after_s=1.0,
                            fallback_channels=["console", "console"]) == ["console"]


# ---------------------------------------------------------------- the real service


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_webhook_down_90_s_at_x6_every_page_delivered_late_once(local_stack: Any, tmp_path: Path) -> None:
    """'webhook down 90 s', scaled by 6 (15 s outage, backoff 0.08..5 s, max age 10 min): the 12
    confirmed incidents of the outage are all paged, once, soon after the receiver is back."""
    row = run_webhook_outage(90.0, 6.0, tmp_path, stack=local_stack)
    print(row)
    assert row["scenario"] == "webhook down 90 s (x6)"
    assert row["confirmed"] == 12
    assert row["pages_delivered"] == 12 and row["lost"] == 0
    assert row["duplicate"] == 0
    assert row["stalled_s"] is not None and row["stalled_s"] <= 30.0 + 12.0  # one capped backoff (+ slack)


def _closed_port() -> int:
    port = free_port()
    with socket.socket() as s:  # nothing listens: connection refused, as for a receiver that is down
        assert s.connect_ex(("127.0.0.1", port)) != 0
    return port


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_failing_primary_pages_the_fallback_after_n_seconds_then_delivers_late_once(stack_settings: Settings) -> None:
    port = _closed_port()
    url = f"http://127.0.0.1:{port}/hook"
    with WebhookReceiver(allow_unsigned=True) as fallback:  # stands in for Slack
        s = configure(
            stack_settings, channels=["webhook"], webhook_url=url, webhook_secret=SECRET,
            fallback_channels=["slack"], slack_webhook_url=fallback.url, fallback_after_s=2.0,
            backoff_initial_s=0.1, backoff_max_s=0.5, max_age_s=120.0,
        )
        with running(s) as svc:
            wait_until(svc.assigned.is_set, 20)
            t0 = time.monotonic()
            publish(s, *(make_alert(incident=f"inc-F{i}").to_bytes() for i in range(3)))
            wait_until(lambda: len(fallback.pages) >= 3, 20)
            fell_back_after = time.monotonic() - t0
            down_since = svc.store.channel_down_since("webhook")
            assert down_since is not None
            assert all(page_status(svc, f"inc-F{i}", "confirmed:webhook") is None for i in range(3))  # still retrying
            with WebhookReceiver(port=port, secret=SECRET) as primary:
                wait_until(lambda: len(primary.pages) >= 3, 20)
                settled_service(svc, s)
                late = sorted(p["idempotency_key"] for p in primary.pages)
                attempts = [int(p["attempt"]) for p in primary.pages]
            assert svc.store.channel_down_since("webhook") is None  # the outage is over
            records = {i: svc.store.incident_pages(f"inc-F{i}") for i in range(3)}
        fb = sorted(p["payload"]["text"].split("incident ")[-1].rstrip(")") for p in fallback.snapshot())
    assert fell_back_after >= 2.0
    assert fb == ["inc-F0", "inc-F1", "inc-F2"]  # one fallback page per incident
    assert late == ["inc-F0:confirmed", "inc-F1:confirmed", "inc-F2:confirmed"]  # late, once each
    assert min(attempts) > 1 and not primary.duplicates
    assert all(r["confirmed:webhook"]["status"] == "sent" and r["confirmed:slack"]["status"] == "sent" for r in records.values())


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_a_page_whose_answer_is_lost_is_retried_and_shown_once(stack_settings: Settings, tmp_path: Path) -> None:
    """The receiver accepts the page but answers after the sender's timeout: the sender retries
    (it cannot know), the receiver recognises the signed key and answers 'duplicate'."""
    with WebhookReceiver(secret=SECRET, answer_delay_s=2.5, out=tmp_path / "pages.jsonl") as recv:
        s = configure(stack_settings, channels=["webhook"], webhook_url=recv.url, webhook_secret=SECRET,
                      request_timeout_s=1.0, backoff_initial_s=0.1, backoff_max_s=0.5)
        with running(s) as svc:
            publish(s, make_alert(incident="inc-L").to_bytes())
            wait_until(lambda: page_status(svc, "inc-L", "confirmed:webhook") == "sent", 30)
            rec = svc.store.incident_pages("inc-L")["confirmed:webhook"]
    assert [p["idempotency_key"] for p in recv.pages] == ["inc-L:confirmed"]
    assert len(recv.duplicates) >= 1 and rec["tries"] == 1 + len(recv.duplicates)
    assert len((tmp_path / "pages.jsonl").read_text().splitlines()) == 1


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_a_page_is_dead_lettered_at_max_age_with_its_reason(stack_settings: Settings) -> None:
    port = _closed_port()
    s = configure(stack_settings, channels=["webhook"], webhook_url=f"http://127.0.0.1:{port}/hook", webhook_secret=SECRET,
                  backoff_initial_s=0.2, backoff_max_s=0.5, max_age_s=3.0)
    with running(s) as svc:
        wait_until(svc.assigned.is_set, 20)
        t0 = time.monotonic()
        publish(s, make_alert(incident="inc-A").to_bytes())
        wait_until(lambda: page_status(svc, "inc-A", "confirmed:webhook") == "dead", 30)
        gave_up_after = time.monotonic() - t0
    assert 3.0 <= gave_up_after < 3.0 + 5.0
    dead = [DeadLetter.from_bytes(r.value) for r in consume_all(s, s.topics.pages_dead_letter, 10, 1)]
    assert len(dead) == 1 and dead[0].extra["incident_id"] == "inc-A"
    assert "connection error" in dead[0].reason and " s)" in dead[0].reason and dead[0].extra["tries"] >= 5
