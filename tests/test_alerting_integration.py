"""Alerting against the real local broker and Redis: pages, redelivery, retries, dead letters,
escalation and acknowledgement (by the console's API and by the CLI), SMTP with the evidence JPEG."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerting.receiver import WebhookReceiver
from alerting.service import AlertingService
from devstack.stack import free_port
from spillwatch.events import AlertState, DeadLetter, SpillAlert
from spillwatch.settings import REPO_ROOT, Settings
from spillwatch.supervisor import ServiceGroup
from tests.helpers import read_to_end, run_cli, wait_until
from tests.helpers.alerts import SECRET, configure, make_alert, page_status, publish, running

pytestmark = pytest.mark.integration

def _hist_count(hist: Any) -> float:
    return next(s.value for m in hist.collect() for s in m.samples if s.name.endswith("_count"))


def webhook_keys(recv: WebhookReceiver) -> list[str]:
    return [p["idempotency_key"] for p in recv.snapshot()]


def queue_empty(svc: AlertingService) -> bool:
    """No page pending or in flight: a page being tried stays queued until it is sent or dead."""
    return svc.store.r.zcard(svc.store.queue_key) == 0


def paged_and_settled(svc: AlertingService, incident: str, channels: tuple[str, ...], timeout_s: float = 20) -> None:
    """The positive signal that nothing more will be paged from what was published before
    ``incident`` (a sentinel, on the one partition of the alerts topic, read in order): its pages
    are sent and the page queue is empty."""
    wait_until(
        lambda: all(page_status(svc, incident, f"confirmed:{ch}") == "sent" for ch in channels) and queue_empty(svc),
        timeout_s,
    )


@pytest.mark.timeout(90)
def test_one_page_per_channel_despite_redelivery_and_restart(stack_settings: Settings, capsys: Any) -> None:
    with WebhookReceiver(secret=SECRET) as recv:
        s = configure(stack_settings, channels=["webhook", "console"], webhook_url=recv.url, webhook_secret=SECRET)
        from prometheus_client import REGISTRY

        from spillwatch.metrics import PAGE_LATENCY

        def sent() -> float:
            return REGISTRY.get_sample_value("spillwatch_pages_total", {"channel": "webhook", "outcome": "sent", "kind": "spill"}) or 0.0

        sent_before = sent()
        latency_before = _hist_count(PAGE_LATENCY)
        alert = make_alert(incident="inc-A").to_bytes()
        publish(s, alert, alert)  # the same alert twice
        with running(s) as svc:
            wait_until(lambda: page_status(svc, "inc-A", "confirmed:console") == "sent", 30)
            wait_until(lambda: len(recv.pages) >= 1, 10)
            # a marker behind the duplicate proves the duplicate was consumed (one partition, in order)
            publish(s, alert, make_alert(incident="inc-B").to_bytes())
            wait_until(lambda: "inc-B:confirmed" in webhook_keys(recv), 15)
        # restart in the same group, then a fresh group that re-reads everything (offsets lost);
        # each time a sentinel incident behind the duplicates is paged: the duplicates were handled
        publish(s, alert, make_alert(incident="inc-S1").to_bytes())
        with running(s) as svc:
            paged_and_settled(svc, "inc-S1", ("webhook", "console"))
        s2 = s.model_copy(update={"alerting": s.alerting.model_copy(update={"group_id": "another-group"})})
        publish(s, make_alert(incident="inc-S2").to_bytes())
        with running(s2) as svc:
            paged_and_settled(svc, "inc-S2", ("webhook", "console"))
        assert sorted(webhook_keys(recv)) == ["inc-A:confirmed", "inc-B:confirmed", "inc-S1:confirmed", "inc-S2:confirmed"]
        assert sent() - sent_before == 4
        assert _hist_count(PAGE_LATENCY) - latency_before == 8  # 4 incidents x 2 channels
        assert all(p["verified"] for p in recv.snapshot())
        body = recv.snapshot()[0]["payload"]
        assert body["camera_id"] == "dock-1" and body["alert"]["evidence"]["peak_prob"] == 0.95
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("PAGE ")]
    for inc in ("inc-A", "inc-B", "inc-S1", "inc-S2"):
        assert sum(f"incident={inc} " in f"{ln} " for ln in lines) == 1, (inc, lines)


@pytest.mark.timeout(90)
def test_webhook_down_for_10s_page_arrives_once_and_does_not_delay_other_channels(stack_settings: Settings) -> None:
    with WebhookReceiver(secret=SECRET, fail_for_s=10.0) as recv:
        s = configure(
            stack_settings, channels=["webhook", "console"], webhook_url=recv.url, webhook_secret=SECRET,
            max_tries=30, backoff_initial_s=0.5, backoff_max_s=2.0,
        )
        with running(s) as svc:
            wait_until(svc.assigned.is_set, 20)
            t0 = time.monotonic()
            # the spill clears quickly: "cleared" must not overtake "confirmed" on the failing channel
            publish(s, make_alert(incident="inc-R").to_bytes(), make_alert(AlertState.CLEARED, incident="inc-R").to_bytes())
            wait_until(lambda: page_status(svc, "inc-R", "confirmed:console") == "sent", 10)
            console_s = time.monotonic() - t0
            wait_until(lambda: recv.pages, 30)
            webhook_s = time.monotonic() - t0
            wait_until(lambda: len(recv.pages) >= 2, 10)
            # both pages final (a sent page is never queued again) and nothing left to try: no late duplicate
            wait_until(lambda: page_status(svc, "inc-R", "cleared:webhook") == "sent" and queue_empty(svc), 10)
            rec = svc.store.incident_pages("inc-R")["confirmed:webhook"]
        assert console_s < 3.0, f"console page waited for the failing webhook ({console_s:.1f}s)"
        assert len(recv.rejected) >= 3 and all(r["status"] == 500 for r in recv.rejected)
        assert webhook_keys(recv) == ["inc-R:confirmed", "inc-R:cleared"]
        assert rec["status"] == "sent" and rec["tries"] == len(recv.rejected) + 1  # cleared never tried early
        # backoff capped at 2 s: delivered soon after the receiver recovers (it failed ~10 s from start)
        assert webhook_s < 10.0 + 2.0 + 2.0, webhook_s


@pytest.mark.timeout(90)
def test_last_try_dead_letters_the_page_and_malformed_records_too(stack_settings: Settings) -> None:
    with WebhookReceiver(secret=SECRET, fail_for_s=600) as recv:
        s = configure(
            stack_settings, channels=["webhook"], webhook_url=recv.url, webhook_secret=SECRET,
            max_tries=3, backoff_initial_s=0.1, backoff_max_s=0.2,
            escalation_channels=["console"], escalate_after_s=600,
        )
        bad_version = make_alert(incident="inc-V").model_dump(mode="json") | {"v": 2}
        with running(s) as svc:
            publish(s, b"\xff\x00not json", json.dumps(bad_version).encode(), make_alert(incident="inc-D").to_bytes())
            wait_until(lambda: page_status(svc, "inc-D", "confirmed:webhook") == "dead", 30)
            # the primary channel failed for good: escalate now, not after escalate_after_s
            wait_until(lambda: page_status(svc, "inc-D", "escalated:console") == "sent", 5)
            alive = svc.health()
        assert len(recv.rejected) == 3 and recv.pages == []
        assert alive["threads_alive"] and alive["redis"]
    dead_pages = [DeadLetter.from_bytes(r.value) for r in read_to_end(s, s.topics.pages_dead_letter)]
    assert len(dead_pages) == 1
    dp = dead_pages[0]
    assert "HTTP 500" in dp.reason and "after 3 tries" in dp.reason
    assert dp.extra["incident_id"] == "inc-D" and dp.extra["channel"] == "webhook"
    assert SpillAlert.from_bytes(dp.payload()).incident_id == "inc-D"
    bad = [DeadLetter.from_bytes(r.value) for r in read_to_end(s, s.topics.dead_letter(s.topics.spill_alerts))]
    assert len(bad) == 2
    assert bad[0].payload() == b"\xff\x00not json" and bad[0].service == "alerting"
    assert "v" in bad[1].reason  # unknown schema version named in the reason


@pytest.mark.timeout(90)
def test_escalation_once_when_unacknowledged_and_ack_stops_it(stack_settings: Settings, tmp_path: Path) -> None:
    from console.auth import Role
    from console.service import ConsoleService, stores

    with WebhookReceiver(secret=SECRET) as recv:
        s = configure(
            stack_settings, channels=["console"], escalation_channels=["webhook"], escalate_after_s=3.0,
            webhook_url=recv.url, webhook_secret=SECRET,
        )
        s = s.model_copy(update={"console": s.console.model_copy(update={"port": free_port(), "thumbnail_interval_s": 0.0})})
        with running(s) as svc, ConsoleService(s) as console:
            _, tokens = stores(s, console.redis)
            api = httpx.Client(base_url=console.url, headers={"Authorization": f"Bearer {tokens.create('maria', Role.RESPONDER)}"},
                               timeout=5)
            wait_until(svc.assigned.is_set, 20)
            publish(s, *(make_alert(incident=i).to_bytes() for i in ("inc-E", "inc-H", "inc-C")))
            for inc in ("inc-E", "inc-H", "inc-C"):
                wait_until(lambda inc=inc: page_status(svc, inc, "confirmed:console") == "sent", 15)
            wait_until(lambda: api.get("/api/incidents/inc-H").status_code == 200, 15)  # the console has read it
            r = api.post("/api/incidents/inc-H/ack", json={"note": "on it"})
            assert r.status_code == 200 and r.json()["by"] == "token:maria"
            cli = run_cli(s, ["ack", "inc-C", "--by", "jo", "--note", "false alarm", "--false"], tmp_path)
            assert cli.returncode == 0, cli.stderr
            assert api.post("/api/incidents/nope/ack", json={}).status_code == 404
            assert api.post("/api/incidents/inc-H/label", json={"label": "maybe"}).status_code == 422
            assert httpx.post(f"{console.url}/api/incidents/inc-E/ack", json={}, timeout=5).status_code == 401
            wait_until(lambda: "inc-E:escalated" in webhook_keys(recv), 15)
            # the aggregator escalates the same incident too: same page, not a second one; then a
            # sentinel incident, confirmed after the acks: its escalation comes after every deadline
            # of inc-H and inc-C (the schedule is taken in due order), and after the aggregator's
            # escalation of inc-E was read (one partition, in order)
            publish(s, make_alert(AlertState.ESCALATED, incident="inc-E").to_bytes(), make_alert(incident="inc-Z").to_bytes())
            wait_until(lambda: "inc-Z:escalated" in webhook_keys(recv), 20)
            wait_until(lambda: queue_empty(svc), 10)
            assert [svc.store.escalation_due_at(i) for i in ("inc-E", "inc-H", "inc-C", "inc-Z")] == [None] * 4
            view = api.get("/api/incidents/inc-C").json()
            escalated = api.get("/api/incidents/inc-E").json()
            health = httpx.get(f"{console.url}/healthz", timeout=5)
            alive = svc.health()
        assert webhook_keys(recv) == ["inc-E:escalated", "inc-Z:escalated"]
        assert recv.snapshot()[0]["payload"]["state"] == "escalated"
        assert view["ack"]["by"] == "jo" and view["ack"]["note"] == "false alarm"
        assert [(p["state"], p["channel"], p["status"]) for p in view["pages"]] == [("confirmed", "console", "sent")]
        assert [(p["channel"], p["status"]) for p in escalated["escalations"]] == [("webhook", "sent")]
        assert escalated["escalated"] is True and escalated["paged_at"] is not None
        assert health.status_code == 200 and alive["consumer_assigned"] is True


@pytest.mark.timeout(90)
def test_email_page_carries_the_evidence_jpeg(stack_settings: Settings, tmp_path: Path) -> None:
    import cv2
    import numpy as np
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received: list[Any] = []

    class Collect(Message):
        def handle_message(self, message: Any) -> None:
            received.append(message)

    port = free_port()
    smtp = Controller(Collect(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        evidence = tmp_path / "evidence"
        evidence.mkdir()
        img = np.zeros((48, 64, 3), np.uint8)
        cv2.rectangle(img, (10, 20), (40, 40), (0, 0, 255), 2)
        jpeg = cv2.imencode(".jpg", img)[1].tobytes()
        (evidence / "inc-M.jpg").write_bytes(jpeg)
        s = configure(
            stack_settings, channels=["email"], smtp_host="127.0.0.1", smtp_port=port,
            smtp_from="spillwatch@site.example", smtp_to=["ops@site.example"], evidence_dir=evidence,
        )
        with running(s) as svc:
            publish(s, make_alert(incident="inc-M", snapshot="inc-M.jpg").to_bytes())
            wait_until(lambda: received, 30)
            # the page is final (never queued again) and nothing is left to try: no second e-mail
            wait_until(lambda: page_status(svc, "inc-M", "confirmed:email") == "sent" and queue_empty(svc), 10)
    finally:
        smtp.stop()
    assert len(received) == 1
    msg = received[0]
    assert "inc-M" in msg["Subject"] and msg["To"] == "ops@site.example"
    atts = [p for p in msg.walk() if p.get_content_disposition() == "attachment"]
    assert [a.get_content_type() for a in atts] == ["image/jpeg"]
    assert atts[0].get_payload(decode=True) == jpeg


@pytest.mark.timeout(120)
def test_cli_service_dry_run_sigterm_and_alerts_tail(stack_settings: Settings, tmp_path: Path) -> None:
    with WebhookReceiver(secret=SECRET) as recv, ServiceGroup(None, tmp_path / "logs", cwd=REPO_ROOT) as group:
        s = configure(stack_settings, channels=["webhook"], webhook_url=recv.url, webhook_secret=SECRET)
        publish(s, make_alert(incident="inc-T").to_bytes())
        svc = group.start(["alerting", "--dry-run"], settings=s)
        try:
            tail = run_cli(s, ["alerts", "tail", "--json", "--from-beginning", "--limit", "1", "--timeout", "30"], tmp_path)
            assert tail.returncode == 0, tail.stderr
            assert json.loads(tail.stdout.splitlines()[0])["incident_id"] == "inc-T"
            human = run_cli(s, ["alerts", "tail", "--from-beginning", "--limit", "1", "--timeout", "30"], tmp_path)
            assert "SPILL CONFIRMED" in human.stdout and "incident=inc-T" in human.stdout

            from alerting.service import make_redis
            from alerting.store import AlertStore

            r = make_redis(s.redis.url)
            store = AlertStore(r, s.redis.key_prefix, idempotency_ttl_s=60, lease_s=1)
            wait_until(lambda: store.recent_pages(), 30)
            pages = store.recent_pages()
            r.close()
        finally:
            code = svc.stop(grace_s=30)
        out = svc.log_text()
        assert code == 0, out[-2000:]
        assert "alerting stopped" in out
        assert [(p["incident_id"], p["channel"], p["dry_run"]) for p in pages] == [("inc-T", "webhook", True)]
        assert recv.pages == [] and recv.rejected == []  # dry run: the channel was never called


@pytest.mark.timeout(120)
def test_sigkill_during_delivery_page_is_retried_after_restart(stack_settings: Settings, tmp_path: Path) -> None:
    import socket

    s = stack_settings
    port = free_port()
    hole = socket.socket()  # accepts the page but never answers: the service is killed mid-delivery
    hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hole.bind(("127.0.0.1", port))
    hole.listen(8)
    url = f"http://127.0.0.1:{port}/hook"
    killed = configure(s, channels=["webhook"], webhook_url=url, webhook_secret=SECRET, request_timeout_s=60.0,
                       inflight_lease_s=3.0)
    publish(s, make_alert(incident="inc-K").to_bytes())
    group = ServiceGroup(killed, tmp_path / "logs", cwd=REPO_ROOT)
    proc = group.start("alerting")
    from alerting.routing import job_id
    from alerting.service import make_redis
    from alerting.store import AlertStore

    r = make_redis(s.redis.url)
    store = AlertStore(r, s.redis.key_prefix, idempotency_ttl_s=60, lease_s=3)
    jid = job_id("inc-K", AlertState.CONFIRMED, "webhook")
    try:
        wait_until(lambda: (store.page_state(jid) or "").startswith("inflight:"), 45)
    finally:
        proc.signal(signal.SIGKILL)
        proc.wait(10)
        hole.close()
    with WebhookReceiver(port=port, secret=SECRET) as recv:
        cfg = configure(s, channels=["webhook"], webhook_url=url, webhook_secret=SECRET, inflight_lease_s=3)
        with running(cfg) as svc:
            wait_until(lambda: recv.pages, 30)
            # the page is final and nothing is left to try: the killed run's try cannot come back
            wait_until(lambda: page_status(svc, "inc-K", "confirmed:webhook") == "sent" and queue_empty(svc), 10)
        assert webhook_keys(recv) == ["inc-K:confirmed"]
    r.close()
