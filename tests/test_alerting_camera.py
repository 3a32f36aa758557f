"""Camera-outage pages in alerting, the pure parts: transition rules, routing, the words and
payloads of every channel, queued jobs of both kinds. (Against the broker and Redis:
tests/test_alerting_camera_integration.py.)"""

from __future__ import annotations

import io
import json
import time
from email import message_from_bytes

import pytest

from alerting.formatting import one_line, subject, summary
from alerting.kinds import kind_of, parse_alert
from alerting.notifiers import build_notifiers
from alerting.notifiers.base import Page
from alerting.notifiers.console import ConsoleNotifier
from alerting.notifiers.email import build_message
from alerting.notifiers.pagerduty import build_event
from alerting.notifiers.slack import build_payload as slack_payload
from alerting.notifiers.webhook import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, build_headers, build_payload, encode, verify
from alerting.routing import camera_channels, job_id, must_wait_for
from alerting.store import Job
from alerting.transitions import IncidentFacts, Verdict, check_camera_transition, check_transition
from spillwatch.events import AlertState, CameraAlertState, EventError
from spillwatch.settings import AlertingSettings
from tests.helpers.alerts import make_alert, make_camera_alert

OFF, STALLED, REC = CameraAlertState.OFFLINE, CameraAlertState.STALLED, CameraAlertState.RECOVERED
URL = "http://ops.example:8088/"


def facts(state: str | None = None, seen: tuple[str, ...] = (), camera: str | None = "dock-1",
          kind: str | None = "camera") -> IncidentFacts:
    return IncidentFacts(state=state, camera_id=camera if state else None, seen=frozenset(seen), kind=kind if state else None)


@pytest.mark.parametrize(("state", "known", "verdict", "why"), [
    (OFF, facts(), Verdict.PAGE, ""),
    (STALLED, facts(), Verdict.PAGE, ""),
    (OFF, facts("offline", ("offline",)), Verdict.DUPLICATE, "already opened"),
    (STALLED, facts("offline", ("offline",)), Verdict.DUPLICATE, "already opened"),  # one page per outage
    (REC, facts("offline", ("offline",)), Verdict.PAGE, ""),
    (REC, facts("recovered", ("stalled", "recovered")), Verdict.DUPLICATE, "already recovered"),
    (REC, facts(), Verdict.REJECT, "never opened"),
    (OFF, facts("recovered", ("recovered",)), Verdict.REJECT, "after recovered"),
    (OFF, facts("confirmed", ("confirmed",), kind="spill"), Verdict.REJECT, "spill incident"),
    (OFF, facts("offline", ("offline",), camera="dock-9"), Verdict.REJECT, "belongs to camera"),
    ("exploded", facts(), Verdict.REJECT, "unknown state"),
])
def test_camera_transitions(state: object, known: IncidentFacts, verdict: Verdict, why: str) -> None:
    check = check_camera_transition(state, "dock-1", known)  # type: ignore[arg-type]
    assert check.verdict == verdict and why in check.reason


def test_unknown_cameras_and_cross_kind_ids_are_rejected() -> None:
    assert check_camera_transition(OFF, "ghost", facts(), cameras={"dock-1"}).verdict == Verdict.REJECT
    # a spill alert reusing a camera outage's id: refused (and the other way round, above)
    spill = check_transition(AlertState.CONFIRMED, "dock-1", facts("offline", ("offline",)))
    assert spill.verdict == Verdict.REJECT and "camera incident" in spill.reason
    # an incident hash written before kinds existed is a spill incident
    assert IncidentFacts.from_record({"state": "confirmed", "camera_id": "dock-1", "alert:confirmed": "{}"}).kind == "spill"
    assert IncidentFacts.from_record({}).kind is None


def test_camera_routing_defaults_to_the_spill_channels_and_recovery_waits_for_the_page() -> None:
    assert camera_channels(["webhook", "console"], None) == ["webhook", "console"]
    assert camera_channels(["webhook"], ["email", "email", "slack"]) == ["email", "slack"]
    assert camera_channels(["webhook"], []) == []  # outages page nobody (the console still shows them)
    assert job_id("outage-x", OFF, "email") == "outage-x|offline|email"
    assert must_wait_for("outage-x|recovered|email") == ["outage-x|offline|email", "outage-x|stalled|email"]
    assert must_wait_for("outage-x|offline|email") == []
    assert must_wait_for("inc|cleared|email") == ["inc|confirmed|email", "inc|escalated|email"]


def test_camera_channels_are_built_with_the_others() -> None:
    cfg = AlertingSettings(channels=["console"], camera_channels=["webhook"], webhook_url="http://x/hook",
                           webhook_secret="s")
    assert set(build_notifiers(cfg)) == {"console", "webhook"}


def test_jobs_carry_their_kind_and_old_jobs_are_spill_jobs() -> None:
    cam = make_camera_alert()
    job = Job("outage-dock-1-1|offline|webhook", "webhook", cam.model_dump_json(), kind=kind_of(cam))
    again = Job.from_json(job.to_json())
    assert again.kind == "camera" and again.alert == cam
    spill = make_alert()
    old = json.loads(Job("inc-42|confirmed|console", "console", spill.model_dump_json()).to_json())
    del old["kind"]
    assert Job.from_json(json.dumps(old)).alert == spill
    with pytest.raises(EventError):
        parse_alert(make_alert().model_dump_json(), "camera")
    with pytest.raises(ValueError):
        parse_alert("{}", "weather")


# --------------------------------------------------------------------------- the words on the page


def test_camera_words() -> None:
    off, rec = make_camera_alert(), make_camera_alert(REC)
    assert subject(off) == "[SpillWatch] Camera offline: camera dock-1 (outage outage-dock-1-1)"
    assert summary(off) == ("Camera dock-1 offline since 2026-11-29T01:00:00.000Z, no spill detection there: "
                            "offline: rtsp timeout (outage outage-dock-1-1)")
    assert summary(rec).startswith("Camera dock-1 recovered: frames flowing since 2026-11-29T01:05:00.000Z after 5 min 0 s without")
    line = one_line(off)
    assert "CAMERA OFFLINE" in line and "camera=dock-1" in line and "outage=outage-dock-1-1" in line and "down_s=60" in line
    out = io.StringIO()
    assert ConsoleNotifier(out).send(Page(rec, "console")).ok
    assert out.getvalue().startswith("PAGE ") and "camera recovered" in out.getvalue()


def test_camera_webhook_payload_is_signed_like_any_page() -> None:
    page = Page(make_camera_alert(STALLED), "webhook")
    payload = build_payload(page, public_base_url=URL)
    assert payload["event"] == "camera.stalled" and payload["idempotency_key"] == "outage-dock-1-1:stalled"
    assert payload["alert"]["since"] == "2026-11-29T01:00:00Z" and payload["camera_url"] == URL + "cameras#camera-dock-1"
    assert "ack_url" not in payload  # nothing to acknowledge
    body, ts = encode(payload), str(int(time.time()))
    headers = build_headers(page, body, b"k", ts)
    assert verify(b"k", ts, headers[IDEMPOTENCY_HEADER], body, headers[SIGNATURE_HEADER])


def test_camera_slack_pagerduty_and_email() -> None:
    off, rec = Page(make_camera_alert(), "slack"), Page(make_camera_alert(REC), "slack")
    s = slack_payload(off, URL)
    assert s["blocks"][0]["text"]["text"] == "CAMERA OFFLINE: dock-1" and ":no_entry:" in s["text"]
    fields = " ".join(f["text"] for f in s["blocks"][1]["fields"])
    assert "rtsp timeout" in fields and "2026-11-29T01:00:00+00:00" in fields
    assert "cameras#camera-dock-1" in s["blocks"][2]["elements"][0]["text"] and "spillwatch ack" not in json.dumps(s)
    assert "Down for" in json.dumps(slack_payload(rec, URL))
    trig, res = build_event(off, "rk", URL), build_event(rec, "rk", URL)
    assert trig["event_action"] == "trigger" and trig["dedup_key"] == "outage-dock-1-1"
    assert trig["payload"]["class"] == "camera-outage" and trig["payload"]["severity"] == "error"
    assert build_event(Page(make_camera_alert(STALLED), "pagerduty"), "rk")["payload"]["severity"] == "warning"
    assert res == {"routing_key": "rk", "event_action": "resolve", "dedup_key": "outage-dock-1-1"}
    msg = message_from_bytes(bytes(build_message(Page(make_camera_alert(), "email"), sender="sw@x", recipients=["m@x"],
                                                 public_base_url=URL)))
    text = msg.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert msg["Subject"].startswith("[SpillWatch] Camera offline") and not msg.is_multipart()
    assert "Camera: " + URL + "cameras#camera-dock-1" in text and "Acknowledge" not in text
