"""Notifier payloads (pure) and the HTTP edge against a real local receiver."""

from __future__ import annotations

import io
import json
import socket
import time
from datetime import datetime, timedelta
from email import message_from_bytes
from pathlib import Path

import httpx
import pytest

from alerting.formatting import one_line
from alerting.notifiers import ConfigError, build_notifier
from alerting.notifiers.base import Page
from alerting.notifiers.console import ConsoleNotifier
from alerting.notifiers.email import build_message, smtp_outcome
from alerting.notifiers.pagerduty import build_event
from alerting.notifiers.slack import build_payload as slack_payload
from alerting.notifiers.snapshots import resolve_snapshot
from alerting.notifiers.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    WebhookNotifier,
    build_headers,
    build_payload,
    encode,
    sign,
    verify,
)
from alerting.receiver import WebhookReceiver
from spillwatch.events import AlertState
from spillwatch.settings import AlertingSettings
from tests.helpers.alerts import ALERT_T0 as T0
from tests.helpers.alerts import make_alert

SECRET = b"s3cret"


def test_webhook_payload_and_signature_verify() -> None:
    page = Page(make_alert(), "webhook", attempt=2, snapshot=None)
    payload = build_payload(page, public_base_url="http://ops.example:8088/")
    assert payload["idempotency_key"] == "inc-42:confirmed"
    assert payload["event"] == "spill.confirmed"
    assert payload["alert"]["camera_id"] == "dock-1"
    assert payload["alert"]["evidence"]["region"]["x0"] == 0.1
    assert payload["incident_url"] == "http://ops.example:8088/incidents/inc-42"  # the console's page
    assert payload["ack_url"] == "http://ops.example:8088/api/incidents/inc-42/ack"  # its token-protected API
    assert payload["snapshot"] == {"path": None, "url": None}
    body = encode(payload)
    ts = str(int(time.time()))
    headers = build_headers(page, body, SECRET, ts)
    key = headers[IDEMPOTENCY_HEADER]
    assert key == "inc-42:confirmed"
    assert headers["X-SpillWatch-Attempt"] == "2"
    assert verify(SECRET, ts, key, body, headers[SIGNATURE_HEADER])
    # tampered body, wrong secret, stale or missing timestamp: rejected
    assert not verify(SECRET, ts, key, body.replace(b"dock-1", b"dock-2"), headers[SIGNATURE_HEADER])
    assert not verify(b"other", ts, key, body, headers[SIGNATURE_HEADER])
    old = str(int(time.time()) - 3600)
    assert not verify(SECRET, old, key, body, sign(SECRET, old, key, body))
    assert not verify(SECRET, None, key, body, headers[SIGNATURE_HEADER])
    # the timestamp is inside the MAC: a captured signature does not fit a fresh timestamp
    assert not verify(SECRET, str(int(ts) + 1), key, body, headers[SIGNATURE_HEADER])


def test_unsigned_webhook_has_no_signature_header() -> None:
    page = Page(make_alert(), "webhook")
    assert SIGNATURE_HEADER not in build_headers(page, b"{}", None, "1")


def test_slack_payload_shape() -> None:
    p = slack_payload(Page(make_alert(), "slack"), public_base_url=None)
    assert "dock-1" in p["text"] and "inc-42" in p["text"]
    types = [b["type"] for b in p["blocks"]]
    assert types[0] == "header" and "section" in types and types[-1] == "context"
    assert "image" not in types  # no public URL: Slack could not fetch it
    assert len(p["blocks"][1]["fields"]) <= 10  # Slack's limit per section
    assert "spillwatch ack inc-42" in json.dumps(p)
    cleared = slack_payload(Page(make_alert(AlertState.CLEARED), "slack"))
    assert "cleared" in cleared["text"].lower() and "spillwatch ack" not in json.dumps(cleared)


def test_slack_links_the_console_incident_page_not_the_snapshot(tmp_path: Path) -> None:
    snap = tmp_path / "s.jpg"
    snap.write_bytes(b"\xff\xd8\xff\xd9")
    p = slack_payload(Page(make_alert(), "slack", snapshot=snap), public_base_url="https://ops.example")
    # the evidence is for signed-in users only: Slack gets a link to the page, no image it cannot fetch
    assert not [b for b in p["blocks"] if b["type"] == "image"]
    assert "<https://ops.example/incidents/inc-42|open the incident> to acknowledge" in json.dumps(p)
    assert "/ack" not in json.dumps(p)  # no POST-only link that a click would GET
    trig = build_event(Page(make_alert(), "pagerduty", snapshot=snap), "RKEY", public_base_url="https://ops.example")
    assert trig["links"][0]["href"] == "https://ops.example/incidents/inc-42" and "images" not in trig
    msg = build_message(Page(make_alert(), "email"), sender="sw@x", recipients=["a@x"], public_base_url="https://ops.example")
    assert "Incident: https://ops.example/incidents/inc-42" in msg.get_content()


def test_pagerduty_trigger_and_resolve() -> None:
    trig = build_event(Page(make_alert(), "pagerduty"), "RKEY")
    assert trig["routing_key"] == "RKEY"
    assert trig["event_action"] == "trigger"
    assert trig["dedup_key"] == "inc-42"
    pl = trig["payload"]
    assert pl["severity"] == "error" and pl["source"] == "dock-1" and pl["summary"]
    assert datetime.fromisoformat(pl["timestamp"]) == T0 + timedelta(seconds=2)
    assert pl["custom_details"]["peak_prob"] == 0.95
    esc = build_event(Page(make_alert(AlertState.ESCALATED), "pagerduty"), "RKEY")
    assert esc["event_action"] == "trigger" and esc["payload"]["severity"] == "critical" and esc["dedup_key"] == "inc-42"
    res = build_event(Page(make_alert(AlertState.CLEARED), "pagerduty"), "RKEY")
    assert res == {"routing_key": "RKEY", "event_action": "resolve", "dedup_key": "inc-42"}


def test_email_message_attaches_jpeg(tmp_path: Path) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"0" * 100 + b"\xff\xd9"
    snap = tmp_path / "inc-42.jpg"
    snap.write_bytes(jpeg)
    msg = build_message(Page(make_alert(), "email", snapshot=snap), sender="sw@x", recipients=["a@x", "b@x"], snapshot_bytes=jpeg)
    parsed = message_from_bytes(msg.as_bytes())
    assert "dock-1" in parsed["Subject"] and "inc-42" in parsed["Subject"]
    assert parsed["To"] == "a@x, b@x"
    atts = [p for p in parsed.walk() if p.get_content_disposition() == "attachment"]
    assert len(atts) == 1
    assert atts[0].get_content_type() == "image/jpeg"
    assert atts[0].get_payload(decode=True) == jpeg
    body = next(p for p in parsed.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
    assert "spillwatch ack inc-42" in body


def test_smtp_outcome_mapping() -> None:
    import smtplib

    assert smtp_outcome(smtplib.SMTPResponseException(451, b"try later")).retryable
    assert not smtp_outcome(smtplib.SMTPResponseException(550, b"no such user")).retryable
    assert smtp_outcome(ConnectionRefusedError()).retryable
    assert smtp_outcome(smtplib.SMTPServerDisconnected("bye")).retryable
    assert not smtp_outcome(smtplib.SMTPRecipientsRefused({"a@x": (550, b"no")})).retryable


def test_console_prints_one_line() -> None:
    buf = io.StringIO()
    res = ConsoleNotifier(buf).send(Page(make_alert(), "console"))
    assert res.ok
    out = buf.getvalue()
    assert out.count("\n") == 1
    assert "SPILL CONFIRMED" in out and "camera=dock-1" in out and "incident=inc-42" in out
    assert "region=(0.10,0.50)-(0.40,0.90)" in one_line(make_alert())


def test_snapshot_only_inside_evidence_dir(tmp_path: Path) -> None:
    ev = tmp_path / "evidence"
    ev.mkdir()
    (ev / "a.jpg").write_bytes(b"x")
    (tmp_path / "secret.jpg").write_bytes(b"x")
    (ev / "notes.txt").write_text("x")
    assert resolve_snapshot("a.jpg", ev) == (ev / "a.jpg").resolve()
    assert resolve_snapshot(str(ev / "a.jpg"), ev) == (ev / "a.jpg").resolve()
    assert resolve_snapshot("../secret.jpg", ev) is None
    assert resolve_snapshot(str(tmp_path / "secret.jpg"), ev) is None
    assert resolve_snapshot("notes.txt", ev) is None
    assert resolve_snapshot("missing.jpg", ev) is None
    assert resolve_snapshot("http://cdn/x.jpg", ev) is None
    assert resolve_snapshot(None, ev) is None


def test_build_notifier_requires_settings() -> None:
    with pytest.raises(ConfigError):
        build_notifier("webhook", AlertingSettings())
    with pytest.raises(ConfigError):
        build_notifier("email", AlertingSettings(smtp_host="localhost"))
    with pytest.raises(ConfigError):
        build_notifier("pagerduty", AlertingSettings())
    with pytest.raises(ConfigError):
        build_notifier("carrier-pigeon", AlertingSettings())
    n = build_notifier("webhook", AlertingSettings(webhook_url="http://127.0.0.1:1/x", webhook_secret="k"))
    n.close()


# ---------------------------------------------------------------- HTTP edge (real local server)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_webhook_delivery_verified_by_receiver(tmp_path: Path) -> None:
    out = tmp_path / "pages.jsonl"
    with WebhookReceiver(secret=SECRET, out=out) as recv:
        n = WebhookNotifier(recv.url, SECRET, timeout_s=2)
        try:
            res = n.send(Page(make_alert(), "webhook"))
            assert res.ok and res.status == 200
            wrong = WebhookNotifier(recv.url, b"wrong", timeout_s=2)
            bad = wrong.send(Page(make_alert(incident="inc-43"), "webhook"))
            wrong.close()
        finally:
            n.close()
    assert not bad.ok and not bad.retryable and bad.status == 401  # bad signature: permanent
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["idempotency_key"] for x in lines] == ["inc-42:confirmed"]
    assert lines[0]["payload"]["incident_id"] == "inc-42"


def test_receiver_fail_for_then_recovers() -> None:
    with WebhookReceiver(secret=SECRET, fail_for_s=0.6) as recv:
        n = WebhookNotifier(recv.url, SECRET, timeout_s=2)
        try:
            first = n.send(Page(make_alert(), "webhook"))
            time.sleep(0.7)
            second = n.send(Page(make_alert(), "webhook", attempt=2))
        finally:
            n.close()
        assert first.retryable and first.status == 500
        assert second.ok
        assert len(recv.pages) == 1 and len(recv.rejected) == 1


def test_connection_refused_and_timeout_are_retryable() -> None:
    port = _free_port()  # nothing listens here
    n = WebhookNotifier(f"http://127.0.0.1:{port}/hook", SECRET, timeout_s=1)
    try:
        r = n.send(Page(make_alert(), "webhook"))
        assert not r.ok and r.retryable and "connection" in r.reason
    finally:
        n.close()
    # a server that accepts but never answers -> timeout -> retry
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        n = WebhookNotifier(f"http://127.0.0.1:{srv.getsockname()[1]}/hook", SECRET, timeout_s=0.5)
        try:
            r = n.send(Page(make_alert(), "webhook"))
        finally:
            n.close()
    assert not r.ok and r.retryable and "timeout" in r.reason


def test_bad_url_is_permanent() -> None:
    n = WebhookNotifier("ftp://example/hook", SECRET, client=httpx.Client(timeout=1))
    try:
        r = n.send(Page(make_alert(), "webhook"))
    finally:
        n.close()
    assert not r.ok and not r.retryable



def test_slack_and_pagerduty_post_their_payloads() -> None:
    from alerting.notifiers.pagerduty import PagerDutyNotifier
    from alerting.notifiers.slack import SlackNotifier

    with WebhookReceiver(allow_unsigned=True) as recv:  # plain JSON endpoint standing in for Slack / PagerDuty
        slack = SlackNotifier(recv.url, timeout_s=2)
        pd = PagerDutyNotifier("RKEY", url=recv.url, timeout_s=2)
        try:
            assert slack.send(Page(make_alert(), "slack")).ok
            assert pd.send(Page(make_alert(AlertState.CLEARED), "pagerduty")).ok
        finally:
            slack.close()
            pd.close()
        got = [p["payload"] for p in recv.snapshot()]
    assert "blocks" in got[0] and "inc-42" in got[0]["text"]
    assert got[1] == {"routing_key": "RKEY", "event_action": "resolve", "dedup_key": "inc-42"}
