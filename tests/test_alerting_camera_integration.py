"""Camera-outage pages through the real alerting service, broker and Redis: their own channels,
one page per outage and one recovery notice despite duplicates, the same retries as spill pages,
hostile records dead-lettered."""

from __future__ import annotations

import json
from typing import Any

import pytest

from alerting.receiver import WebhookReceiver
from spillwatch.events import CameraAlertState, DeadLetter
from spillwatch.settings import Settings
from tests.helpers import read_to_end, wait_until
from tests.helpers.alerts import SECRET, configure, make_alert, make_camera_alert, page_status, publish, running

pytestmark = pytest.mark.integration
OFF, STALLED, REC = CameraAlertState.OFFLINE, CameraAlertState.STALLED, CameraAlertState.RECOVERED


@pytest.mark.timeout(90)
def test_one_page_per_outage_and_one_recovery_on_the_camera_channels(stack_settings: Settings, capsys: Any) -> None:
    # the webhook fails for the first 3 s: the camera page is retried like a spill page, and the
    # recovery notice (published right behind it) never overtakes it
    recv = WebhookReceiver(secret=SECRET, fail_for_s=3.0)  # bound now, failing from start() on
    try:
        s = configure(stack_settings, channels=["console"], camera_channels=["webhook"], webhook_url=recv.url,
                      webhook_secret=SECRET)
        cam = s.topics.camera_alerts
        off, rec = make_camera_alert(OFF, "outage-A").to_bytes(), make_camera_alert(REC, "outage-A").to_bytes()
        with running(s) as svc:
            wait_until(svc.assigned.is_set, 30)
            recv.start()
            publish(s, off, off, make_camera_alert(STALLED, "outage-A").to_bytes(), rec, rec, topic=cam)
            wait_until(lambda: page_status(svc, "outage-A", "recovered:webhook") == "sent", 30)
            # a spill incident behind them goes to the spill channels as before (the sentinel: all read)
            publish(s, make_alert(incident="inc-S").to_bytes())
            wait_until(lambda: page_status(svc, "inc-S", "confirmed:console") == "sent", 20)
            wait_until(lambda: svc.store.r.zcard(svc.store.queue_key) == 0, 10)
            pages = svc.pages()
            incident = svc.store.incident("outage-A")
        assert [p["idempotency_key"] for p in recv.snapshot()] == ["outage-A:offline", "outage-A:recovered"]
        assert recv.rejected and all(p["verified"] for p in recv.snapshot())
        first = recv.snapshot()[0]["payload"]
        assert first["event"] == "camera.offline" and first["alert"]["reason"] == "offline: rtsp timeout"
    finally:
        recv.stop()
    assert [(p["kind"], p["incident_id"], p["state"], p["channel"]) for p in pages] == [
        ("camera", "outage-A", "offline", "webhook"), ("camera", "outage-A", "recovered", "webhook"),
        ("spill", "inc-S", "confirmed", "console"),
    ]
    assert incident["kind"] == "camera" and incident["state"] == "recovered"
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("PAGE ")]
    assert len(lines) == 1 and "incident=inc-S" in lines[0]  # the console channel got the spill page only


@pytest.mark.timeout(90)
def test_hostile_camera_alerts_are_dead_lettered_and_page_nothing(stack_settings: Settings) -> None:
    with WebhookReceiver(secret=SECRET) as recv:
        s = configure(stack_settings, channels=["webhook"], webhook_url=recv.url, webhook_secret=SECRET)
        s = s.model_copy(update={"cameras": Settings(cameras=[{"id": "dock-1", "source": "x.mp4"}]).cameras})
        cam = s.topics.camera_alerts
        bad_time = make_camera_alert(incident="outage-T").model_dump(mode="json") | {"since": "9999-01-01T00:00:00Z"}
        control = make_camera_alert(incident="outage-C").model_dump(mode="json") | {"reason": "ok\r\nBcc: x@evil"}
        with running(s) as svc:
            publish(s, make_alert(incident="inc-1").to_bytes())  # a spill incident ...
            wait_until(lambda: page_status(svc, "inc-1", "confirmed:webhook") == "sent", 30)
            publish(s, b"\xff not json", json.dumps(bad_time).encode(), json.dumps(control).encode(),
                    make_camera_alert(REC, "outage-never").to_bytes(),  # recovered, never opened
                    make_camera_alert(OFF, "inc-1").to_bytes(),  # ... whose id a camera alert reuses
                    make_camera_alert(OFF, "outage-G", camera="ghost").to_bytes(),  # not a configured camera
                    make_camera_alert(OFF, "outage-ok").to_bytes(), topic=cam)
            wait_until(lambda: page_status(svc, "outage-ok", "offline:webhook") == "sent", 30)
            wait_until(lambda: len(read_to_end(s, s.topics.dead_letter(cam))) >= 6, 10)
        assert sorted(p["idempotency_key"] for p in recv.snapshot()) == ["inc-1:confirmed", "outage-ok:offline"]
    dead = [DeadLetter.from_bytes(r.value) for r in read_to_end(s, s.topics.dead_letter(cam))]
    reasons = [d.reason for d in dead]
    assert len(dead) == 6, reasons
    assert dead[0].payload() == b"\xff not json"
    assert "since" in reasons[1] and "reason" in reasons[2]
    assert "never opened" in reasons[3] and "spill incident" in reasons[4] and "unknown camera" in reasons[5]
