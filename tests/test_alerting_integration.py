"""Alerting against the real local broker and Redis: pages, redelivery, retries, dead letters,
escalation and acknowledgement, SMTP with the evidence JPEG."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerting.receiver import WebhookReceiver
from alerting.service import AlertingService
from spillwatch.events import AlertState, DeadLetter, SpillAlert
from spillwatch.settings import REPO_ROOT, AlertingSettings, Settings
from devstack.stack import free_port
from spillwatch.supervisor import ServiceGroup
from tests.helpers import consume_all, run_cli, wait_until
from tests.test_notifiers import make_alert

pytestmark = pytest.mark.integration

SECRET = "it-secret"


def configure(settings: Settings, **alerting: Any) -> Settings:
    base = {"ack_port": free_port(), "backoff_initial_s": 0.2, "backoff_max_s": 1.0, "request_timeout_s": 2.0}
    return settings.model_copy(update={"alerting": AlertingSettings(**(base | alerting))})


def publish(settings: Settings, *values: bytes, key: bytes = b"dock-1") -> None:
    from spillwatch.kafka import make_producer

    p = make_producer(settings)
    try:
        for v in values:
            p.send(settings.topics.spill_alerts, key=key, value=v)
        p.flush(10)
    finally:
        p.close(5)


@contextmanager
def running(settings: Settings) -> Iterator[AlertingService]:
    svc = AlertingService(settings).start()
    try:
        yield svc
    finally:
        svc.stop()


def page_status(svc: AlertingService, incident: str, key: str) -> str | None:
    return (svc.store.incident_pages(incident).get(key) or {}).get("status")


def _hist_count(hist: Any) -> float:
    return next(s.value for m in hist.collect() for s in m.samples if s.name.endswith("_count"))


def webhook_keys(recv: WebhookReceiver) -> list[str]:
    return [p["idempotency_key"] for p in recv.snapshot()]


@pytest.mark.timeout(90)
def test_one_page_per_channel_despite_redelivery_and_restart(stack_settings: Settings, capsys: Any) -> None:
    with WebhookReceiver(secret=SECRET) as recv:
        s = configure(stack_settings, channels=["webhook", "console"], webhook_url=recv.url, webhook_secret=SECRET)
        from prometheus_client import REGISTRY

        from spillwatch.metrics import PAGE_LATENCY

        def sent() -> float:
            return REGISTRY.get_sample_value("spillwatch_pages_total", {"channel": "webhook", "outcome": "sent"}) or 0.0

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
        # restart in the same group, then a fresh group that re-reads everything (offsets lost)
        publish(s, alert)
        with running(s) as svc:
            wait_until(lambda: svc.store.r.zcard(svc.store.queue_key) == 0 and svc.assigned.is_set(), 20)
            time.sleep(1.0)
        s2 = s.model_copy(update={"alerting": s.alerting.model_copy(update={"group_id": "another-group", "ack_port": free_port()})})
        with running(s2) as svc:
            wait_until(svc.assigned.is_set, 20)
            time.sleep(2.0)
        assert sorted(webhook_keys(recv)) == ["inc-A:confirmed", "inc-B:confirmed"]
        assert sent() - sent_before == 2
        assert _hist_count(PAGE_LATENCY) - latency_before == 4  # 2 incidents x 2 channels
        assert all(p["verified"] for p in recv.snapshot())
        body = recv.snapshot()[0]["payload"]
        assert body["camera_id"] == "dock-1" and body["alert"]["evidence"]["peak_prob"] == 0.95
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("PAGE ")]
    assert sum("incident=inc-A" in ln for ln in lines) == 1
    assert sum("incident=inc-B" in ln for ln in lines) == 1


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
            time.sleep(2.5)  # no late duplicate
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
    dead_pages = [DeadLetter.from_bytes(r.value) for r in consume_all(s, s.topics.pages_dead_letter, 10, 1)]
    assert len(dead_pages) == 1
    dp = dead_pages[0]
    assert "HTTP 500" in dp.reason and "after 3 tries" in dp.reason
    assert dp.extra["incident_id"] == "inc-D" and dp.extra["channel"] == "webhook"
    assert SpillAlert.from_bytes(dp.payload()).incident_id == "inc-D"
    bad = [DeadLetter.from_bytes(r.value) for r in consume_all(s, s.topics.dead_letter(s.topics.spill_alerts), 10, 2)]
    assert len(bad) == 2
    assert bad[0].payload() == b"\xff\x00not json" and bad[0].service == "alerting"
    assert "v" in bad[1].reason  # unknown schema version named in the reason


@pytest.mark.timeout(90)
def test_escalation_once_when_unacknowledged_and_ack_stops_it(stack_settings: Settings, tmp_path: Path) -> None:
    with WebhookReceiver(secret=SECRET) as recv:
        s = configure(
            stack_settings, channels=["console"], escalation_channels=["webhook"], escalate_after_s=3.0,
            webhook_url=recv.url, webhook_secret=SECRET,
        )
        with running(s) as svc:
            wait_until(svc.assigned.is_set, 20)
            publish(s, *(make_alert(incident=i).to_bytes() for i in ("inc-E", "inc-H", "inc-C")))
            for inc in ("inc-E", "inc-H", "inc-C"):
                wait_until(lambda inc=inc: page_status(svc, inc, "confirmed:console") == "sent", 15)
            api = svc.api.url
            r = httpx.post(f"{api}/incidents/inc-H/ack", json={"by": "maria", "note": "on it", "label": "true"}, timeout=5)
            assert r.status_code == 200 and r.json()["by"] == "maria"
            cli = run_cli(s, ["ack", "inc-C", "--by", "jo", "--note", "false alarm", "--false"], tmp_path)
            assert cli.returncode == 0, cli.stderr
            assert httpx.post(f"{api}/incidents/nope/ack", json={"by": "x"}, timeout=5).status_code == 404
            assert httpx.post(f"{api}/incidents/inc-H/ack", json={"label": "maybe"}, timeout=5).status_code == 400
            wait_until(lambda: "inc-E:escalated" in webhook_keys(recv), 15)
            # the aggregator escalates the same incident too: same page, not a second one
            publish(s, make_alert(AlertState.ESCALATED, incident="inc-E").to_bytes())
            time.sleep(4.0)  # past every escalation deadline
            view = httpx.get(f"{api}/incidents/inc-C", timeout=5).json()
            health = httpx.get(f"{api}/healthz", timeout=5)
        assert webhook_keys(recv) == ["inc-E:escalated"]
        assert recv.snapshot()[0]["payload"]["state"] == "escalated"
        assert view["ack"]["by"] == "jo" and view["ack"]["label"] == "false" and view["ack"]["note"] == "false alarm"
        assert view["pages"]["confirmed:console"]["status"] == "sent"
        assert health.status_code == 200 and health.json()["consumer_assigned"] is True


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
            time.sleep(1.0)
            assert page_status(svc, "inc-M", "confirmed:email") == "sent"
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
            time.sleep(1.5)
            assert page_status(svc, "inc-K", "confirmed:webhook") == "sent"
        assert webhook_keys(recv) == ["inc-K:confirmed"]
    r.close()
